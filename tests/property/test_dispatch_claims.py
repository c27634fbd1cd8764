"""dispatch_due's claims decided from view rows: the same state as the log's, and a
row behind the log never sends a recipient twice.

A recipient the views show untouched since it was scheduled is claimed on the
state its row describes, without reading the event log; the claim names the
recipient's next version, so a row that is behind the log (another dispatcher
claimed it after the views were read) makes the write conflict, and the batch
is decided again on the log's states.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from broadcast_domain import (
    Actor,
    AddressBookSource,
    BroadcastService,
    BroadcastStatus,
    Contact,
    DeliveryStatus,
    InboxRole,
)
from broadcast_domain.application.dispatching import scheduled_state
from broadcast_domain.domain.allowance import SendsReserved, allowance_id
from broadcast_domain.domain.events import DomainEvent, RecipientEvent, Sent, Succeeded
from broadcast_domain.domain.messages import make_message_id
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.recipient import Recipient, recipient_id
from broadcast_domain.ports import OutgoingMessage, TransportReply
from broadcast_domain.projections.rows import RecipientRow, advance
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.strategies import aware_datetimes, histories

OPERATOR = Actor("op", inbox_roles={"support": InboxRole.OPERATOR})
KEY = b"claims-signing-key-0123456789abcd"


@given(history=histories())
def test_a_row_gives_a_state_only_when_it_is_the_aggregate_state(
    history: list[tuple[int, DomainEvent]],
) -> None:
    """After every event of a recipient, the state read from its row is None or exactly
    the aggregate the log folds to: the row of a recipient with only its Scheduled
    event gives that state, and any later event makes the row give none."""
    seen: dict[UUID, tuple[RecipientRow, Recipient]] = {}
    for position, event in history:
        if not isinstance(event, RecipientEvent):
            continue
        before = seen.get(event.originator_id)
        row = advance(before[0] if before else None, event, position)
        state = event.apply(before[1] if before else None)
        seen[event.originator_id] = (row, state)
        from_row = scheduled_state(row)
        assert from_row is None or from_row == state
        assert (from_row is not None) == (state.version == 1)


@given(
    history=histories(),
    now=aware_datetimes(),
    code=st.integers(200, 299),
    text=st.text(max_size=30),
)
def test_the_rules_the_dispatcher_encodes_without_the_aggregate(
    history: list[tuple[int, DomainEvent]], now: Any, code: int, text: str
) -> None:
    """What the dispatcher writes without building the aggregate is what it decides:
    a recipient with only its Scheduled event is claimed with its first attempt, and a
    2xx reply to a claimed (SENDING) recipient is one Succeeded event."""
    policy = DeliveryPolicy()
    states: dict[UUID, Recipient] = {}
    for _, event in history:
        if isinstance(event, RecipientEvent):
            states[event.originator_id] = event.apply(states.get(event.originator_id))
    for state in states.values():
        if state.version == 1:
            mid = make_message_id("mail.example.com", "fresh")
            assert state.start_attempt(now=now, message_id=mid, policy=policy) == [
                Sent(
                    originator_id=state.id,
                    originator_version=2,
                    timestamp=now,
                    attempt=1,
                    message_id=mid,
                    lease_until=now + policy.lease,
                )
            ]
        if state.status is DeliveryStatus.SENDING:
            assert state.record_reply(code=code, text=text, now=now, policy=policy) == [
                Succeeded(
                    originator_id=state.id,
                    originator_version=state.version + 1,
                    timestamp=now,
                    attempt=state.attempts,
                    reply_code=code,
                    reply_text=text,
                )
            ]


def open_service(clock: FakeClock) -> BroadcastService:
    return BroadcastService.open(
        "memory://", return_path="bounces@mail.example.com", signing_key=KEY, clock=clock
    )


def create(svc: BroadcastService, clock: FakeClock, n: int) -> UUID:
    bid: UUID = svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="claims",
        text_body="body",
        source=AddressBookSource("book-1"),
        recipients=[Contact(f"u{i}@example.com") for i in range(n)],
        scheduled_at=clock(),
        actor=OPERATOR,
    )
    return bid


class Recording:
    """Accepts everything and remembers who was handed over, and with which Message-ID."""

    def __init__(self) -> None:
        self.handed: list[str] = []
        self.message_ids: dict[str, str] = {}

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        for m in messages:
            self.handed.append(m.recipient)
            self.message_ids[m.recipient] = m.message_id
        return [TransportReply(m.key, 250, "2.0.0 OK") for m in messages]

    def close(self) -> None:
        return None


def claim_behind_the_views(
    svc: BroadcastService, clock: FakeClock, bid: UUID, taken: set[int], *, limited: bool = False
) -> None:
    """Make the first due read return rows, then let another dispatcher claim ``taken``:
    the rows this dispatcher holds are behind the log for those recipients."""
    views: Any = svc.views
    real = views.due_recipients
    done: list[bool] = []

    def due_then_claimed(*args: Any, **kwargs: Any) -> Any:
        rows = real(*args, **kwargs)
        if not done:
            done.append(True)
            ids = [recipient_id(bid, f"u{i}@example.com") for i in sorted(taken)]
            states = svc.gateway.recipients(ids)
            events: list[DomainEvent] = [
                e
                for i, rid in enumerate(ids)
                for e in states[rid].start_attempt(
                    now=clock(),
                    message_id=make_message_id("other.example.com", f"other{i}"),
                    policy=svc.policy,
                )
            ]
            if ids and limited:
                # As a dispatcher does under a monthly limit: reserve in the same write.
                year, month = clock().year, clock().month
                aid = allowance_id("acme", year, month)
                events.append(
                    SendsReserved(
                        originator_id=aid,
                        originator_version=svc.events.last_version(aid) + 1,
                        timestamp=clock(),
                        account_id="acme",
                        year=year,
                        month=month,
                        count=len(ids),
                    )
                )
            svc.gateway.put(events)
        return rows

    views.due_recipients = due_then_claimed


@given(
    n=st.integers(1, 30),
    batch=st.integers(1, 8),
    taken=st.sets(st.integers(0, 29), max_size=12),
)
def test_a_recipient_claimed_behind_the_views_is_not_sent_again(
    n: int, batch: int, taken: set[int]
) -> None:
    """Recipients another dispatcher claimed after the views were read are not handed
    over again; every other recipient is handed over once, in the same call, and the
    broadcast is not complete while the others' outcomes are missing."""
    taken = {i for i in taken if i < n}
    clock = FakeClock()
    with open_service(clock) as svc:
        bid = create(svc, clock, n)
        svc.catch_up()
        svc.dispatcher.batch_size = batch
        claim_behind_the_views(svc, clock, bid, taken)
        transport = Recording()
        report = svc.dispatch_due(transport)
        others = [f"u{i}@example.com" for i in range(n) if i not in taken]
        assert transport.handed == others
        assert report.sent == report.succeeded == len(others)
        assert (report.completed == (bid,)) == (not taken)
        for i in taken:
            sent = [e for e in svc.history(bid, f"u{i}@example.com") if isinstance(e, Sent)]
            assert len(sent) == 1 and sent[0].message_id.startswith("<other")
        assert svc.summary(bid).status is (
            BroadcastStatus.SENDING if taken else BroadcastStatus.SENT
        )
        assert svc.verify_projections() == []


@given(
    n=st.integers(1, 20),
    batch=st.integers(1, 6),
    limit=st.integers(0, 25),
    taken=st.sets(st.integers(0, 19), max_size=8),
)
def test_a_stale_row_under_a_monthly_limit_spends_no_more_than_the_limit(
    n: int, batch: int, limit: int, taken: set[int]
) -> None:
    """With a monthly limit, claims behind the views make the pass read again rather
    than reuse an allowance another dispatcher may have spent: nobody is sent twice,
    and what is handed over plus what the other dispatcher holds stays within it."""
    taken = {i for i in taken if i < n}
    clock = FakeClock()
    with open_service(clock) as svc:
        svc.configure_account("acme", monthly_limit=limit)
        bid = create(svc, clock, n)
        svc.catch_up()
        svc.dispatcher.batch_size = batch
        claim_behind_the_views(svc, clock, bid, taken, limited=True)
        transport = Recording()
        svc.dispatch_due(transport)
        assert len(set(transport.handed)) == len(transport.handed)
        assert not {f"u{i}@example.com" for i in taken} & set(transport.handed)
        assert len(transport.handed) <= max(0, limit - len(taken))
        assert svc.verify_projections() == []


@given(n=st.integers(1, 40), batch=st.integers(1, 9), budget=st.integers(0, 45))
def test_a_budget_takes_the_first_recipients_in_order_across_both_reads(
    n: int, batch: int, budget: int
) -> None:
    """max_messages hands over exactly the first recipients by position, once each, however
    the pass is split between its first batch and the rest read after it."""
    clock = FakeClock()
    with open_service(clock) as svc:
        create(svc, clock, n)
        svc.catch_up()
        svc.dispatcher.batch_size = batch
        transport = Recording()
        report = svc.dispatch_due(transport, max_messages=budget)
        expected = [f"u{i}@example.com" for i in range(min(n, budget))]
        assert transport.handed == expected
        assert report.sent == len(expected)
        # A call that spent its whole budget leaves completing to the next call.
        assert (report.completed != ()) == (budget > n)
