"""dispatch_due's bounded pipeline: claims committed before hand-over, one view read per pass.

The dispatcher hands one batch over on a worker thread while it records the
previous one and claims the next; these properties hold for any broadcast size,
batch size, set of rejected addresses and failing hand-over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import pytest
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
from broadcast_domain.domain.events import Bounced, Deferred, Sent, Succeeded
from broadcast_domain.ports import OutgoingMessage, TransportReply
from broadcast_domain.testing.clock import FakeClock

OPERATOR = Actor("op", inbox_roles={"support": InboxRole.OPERATOR})
KEY = b"pipeline-signing-key-0123456789ab"


def open_service(clock: FakeClock) -> BroadcastService:
    return BroadcastService.open(
        "memory://", return_path="bounces@mail.example.com", signing_key=KEY, clock=clock
    )


def create(svc: BroadcastService, clock: FakeClock, n: int) -> UUID:
    bid: UUID = svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="pipeline",
        text_body="body",
        source=AddressBookSource("book-1"),
        recipients=[Contact(f"u{i}@example.com") for i in range(n)],
        scheduled_at=clock(),
        actor=OPERATOR,
    )
    return bid


class CheckingTransport:
    """Checks, at hand-over, that every message's claim is in the event log already."""

    def __init__(
        self, svc: BroadcastService, replies: dict[str, int], fail_at: int | None = None
    ) -> None:
        self.svc = svc
        self.replies = replies
        self.fail_at = fail_at
        self.calls = 0
        self.handed: list[str] = []
        self.unclaimed: list[str] = []

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("hand-over failed")
        out = []
        for m in messages:
            claims = [
                e
                for e in self.svc.events.get(UUID(hex=m.key))
                if isinstance(e, Sent) and e.message_id == m.message_id
            ]
            if not claims:
                self.unclaimed.append(m.recipient)
            self.handed.append(m.recipient)
            code = self.replies.get(m.recipient, 250)
            out.append(TransportReply(m.key, code, "reply"))
        return out

    def close(self) -> None:
        return None


def outcomes(svc: BroadcastService, bid: UUID, address: str) -> list[type]:
    return [
        type(e) for e in svc.history(bid, address) if isinstance(e, Succeeded | Bounced | Deferred)
    ]


@given(
    n=st.integers(1, 40),
    batch=st.integers(1, 7),
    codes=st.lists(st.sampled_from([250, 550, 451]), min_size=40, max_size=40),
    fail_at=st.none() | st.integers(1, 8),
)
def test_claims_commit_before_hand_over_and_every_reply_is_recorded(
    n: int, batch: int, codes: list[int], fail_at: int | None
) -> None:
    """Whatever fails, nothing is handed over unclaimed, and every reply that came back
    is recorded once: a recipient handed over has its outcome, one never handed over
    has none; the report counts what happened; the views replay equal."""
    clock = FakeClock()
    with open_service(clock) as svc:
        bid = create(svc, clock, n)
        svc.dispatcher.batch_size = batch
        replies = {f"u{i}@example.com": codes[i] for i in range(n)}
        transport = CheckingTransport(svc, replies, fail_at)
        report: Any = None
        try:
            report = svc.dispatch_due(transport)
        except RuntimeError:
            assert fail_at is not None and fail_at <= -(-n // batch)
        assert transport.unclaimed == []
        assert len(set(transport.handed)) == len(transport.handed)
        for i in range(n):
            address = f"u{i}@example.com"
            recorded = outcomes(svc, bid, address)
            assert len(recorded) == (1 if address in transport.handed else 0)
        if report is not None:
            assert report.sent == n == len(transport.handed)
            assert report.succeeded == sum(1 for c in replies.values() if c == 250)
            assert report.errors == sum(1 for c in replies.values() if c == 550)
            assert report.retried == sum(1 for c in replies.values() if c == 451)
            complete = all(c != 451 for c in replies.values())
            assert (report.completed == (bid,)) == complete
            status = svc.summary(bid).status
            assert status is (BroadcastStatus.SENT if complete else BroadcastStatus.SENDING)
        assert svc.verify_projections() == []


def counting(target: Any, name: str, calls: list[str]) -> None:
    real: Callable[..., Any] = getattr(target, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return real(*args, **kwargs)

    setattr(target, name, wrapper)


@given(n=st.integers(1, 60), batch=st.integers(1, 9))
def test_one_pass_reads_each_due_row_once_a_batch_at_a_time_and_projects_nothing(
    n: int, batch: int
) -> None:
    """A pass asks the views for due recipients once per batch (the first batch alone,
    so hand-over starts at once, then each next batch from the last position it holds,
    one row past it to tell whether more follow), so no row is read twice but that
    one; nothing is projected during the call."""
    clock = FakeClock()
    with open_service(clock) as svc:
        bid = create(svc, clock, n)
        svc.catch_up()
        svc.dispatcher.batch_size = batch
        calls: list[str] = []
        counting(svc.views, "due_recipients", calls)
        rows: list[int] = []
        views: Any = svc.views
        read = views.due_recipients

        def due_recipients(*args: Any, **kwargs: Any) -> Any:
            found = read(*args, **kwargs)
            rows.append(len(found))
            return found

        views.due_recipients = due_recipients
        counting(svc.views, "apply", calls)
        transport = CheckingTransport(svc, {})
        report = svc.dispatch_due(transport)
        assert report.sent == n and report.completed == (bid,)
        assert calls == ["due_recipients"] * -(-n // batch)
        assert sum(rows) <= n + len(rows)
        assert transport.handed == [f"u{i}@example.com" for i in range(n)]
        assert svc.summary(bid).succeeded == n


@pytest.mark.parametrize("limit", [None, 3, 7])
def test_a_pass_larger_than_its_view_read_reads_again(limit: int | None) -> None:
    """With more due than one pass holds, the dispatcher catches up and reads again,
    and the monthly limit still holds across passes."""
    clock = FakeClock()
    with open_service(clock) as svc:
        svc.configure_account("acme", monthly_limit=limit)
        bid = create(svc, clock, 10)
        svc.dispatcher.pass_size = 4
        svc.dispatcher.batch_size = 3
        report = svc.dispatch_due(CheckingTransport(svc, {}))
        expected = 10 if limit is None else limit
        assert report.sent == expected
        statuses = [r.status for r in svc.recipients(bid, per_page=50).items]
        assert statuses.count(DeliveryStatus.SUCCEEDED) == expected
        assert (report.paused == (bid,)) == (expected < 10)
        assert (report.completed == (bid,)) == (expected == 10)
