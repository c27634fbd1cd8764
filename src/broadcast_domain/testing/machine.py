"""The rule-based state machine that checks SPEC section 2 against a service.

It interleaves broadcast creation, dispatches (with 250 / 451 / 550 / dropped
replies), bounce reports (duplicated, out of order, inside and outside the
bounce window), acknowledgements, cancellations and limit changes, and after
every step checks these invariants:

1. counts are never negative; ``delivered == succeeded + errors`` and
   ``scheduled + sending + delivered == recipients`` == the recipients created;
2. the summary's counts equal a tally of the recipients' states folded from
   ``history()``, and so does the unacknowledged error count;
3. a recipient once in ``ERROR`` never turns back;
4. the recipient list shows each recipient's folded status, acknowledgement and
   reason (one of REASONS for an ``ERROR``, None otherwise); the errors by
   reason sum to the errors, equal a tally of the folded reasons, and the
   reason filter finds exactly those recipients;
5. ``verify_projections()`` finds no difference between the live projections
   and a replay of the log;
6. the monthly counts, summed over months, equal the delivered recipients
   (each counted once);

and, inside the rules: a dispatch's ``sent == succeeded + errors + retried``
and never more than ``max_messages``; under a monthly limit new claims never
take the month's count plus in-flight past it; a report about an unsent
recipient is ``unmatched``; a report recorded again is a ``duplicate`` (or
``late``/``ignored`` as the first time); acknowledging all errors as of a
page leaves none; only an ``ERROR`` can be acknowledged, and only once;
only a ``SCHEDULED`` broadcast can be cancelled.

Hosts run it against their own store in one of two ways::

    # a helper: one call in a test function
    def test_my_store_keeps_the_rules(tmp_path):
        run_machine(lambda clock: BroadcastService.open(my_url(tmp_path), ..., clock=clock))

    # or by subclassing, for pytest to collect
    class MyStoreMachine(BroadcastMachine):
        def make_service(self, clock):
            return BroadcastService.open(MY_URL, ..., clock=clock)

    TestMyStore = MyStoreMachine.TestCase

The service must use the given clock (the machine moves it) and start empty.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from broadcast_domain import (
    Actor,
    AddressBookSource,
    BounceReport,
    BroadcastService,
    BroadcastStatus,
    Contact,
    DeliveryStatus,
    InboxRole,
    InvalidTransition,
)
from broadcast_domain.domain.reasons import REASONS
from broadcast_domain.domain.recipient import Recipient, recipient_id
from broadcast_domain.ports import OutgoingMessage, TransportReply
from broadcast_domain.testing.bounces import build_arf, build_auto_reply, build_dsn
from broadcast_domain.testing.clock import FakeClock

__all__ = ["BroadcastMachine", "ScriptedTransport", "run_machine"]

ACTOR = Actor("operator-1", inbox_roles={"inbox": InboxRole.OPERATOR})
SIGNING_KEY = b"machine-signing-key-0123456789ab"


class ScriptedTransport:
    """A MailTransport whose reply per address is set by the test (250 by default)."""

    def __init__(self) -> None:
        self.replies: dict[str, tuple[int, str]] = {}
        self.sent: list[OutgoingMessage] = []

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        out = []
        for m in messages:
            self.sent.append(m)
            code, text = self.replies.get(m.recipient, (250, "2.0.0 OK"))
            out.append(TransportReply(m.key, code, text))
        return out

    def close(self) -> None:
        return None


class BroadcastMachine(RuleBasedStateMachine):
    """Random interleavings of everything that can happen to broadcasts.

    The invariants it checks are listed in the module docstring. Override
    :meth:`make_service` to run it on another store and :meth:`make_transport`
    for another scripted transport (it must honour ``replies``, as
    :class:`ScriptedTransport` does).
    """

    broadcasts = Bundle("broadcasts")

    def make_service(self, clock: FakeClock) -> BroadcastService:
        """The service under test; override to use another store."""
        return BroadcastService.open(
            "memory://",
            return_path="bounces@mail.example.com",
            signing_key=SIGNING_KEY,
            clock=clock,
        )

    def make_transport(self) -> ScriptedTransport:
        """The transport under test; override to use another one."""
        return ScriptedTransport()

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.svc = self.make_service(self.clock)
        self.transport = self.make_transport()
        self.addresses: dict[UUID, list[str]] = {}
        self.reports: list[tuple[BounceReport, Any, str]] = []
        self.seen_error: set[UUID] = set()
        self.limit: int | None = None
        self.forged: set[bytes] = set()

    def teardown(self) -> None:
        self.svc.close()

    # --- rules ---------------------------------------------------------------------------

    @rule(
        target=broadcasts,
        n=st.integers(min_value=1, max_value=6),
        delay=st.sampled_from([0, 0, 30]),
    )
    def create(self, n: int, delay: int) -> UUID:
        serial = len(self.addresses)
        addresses = [f"user{serial}-{i}@example.com" for i in range(n)]
        bid = self.svc.create_broadcast(
            account_id="acme",
            inbox_id="inbox",
            sender="news@example.com",
            subject="お知らせ",
            text_body="本文",
            source=AddressBookSource("book-1"),
            recipients=[
                Contact(a, last_name="山田", first_name=str(i)) for i, a in enumerate(addresses)
            ],
            scheduled_at=self.clock() + timedelta(minutes=delay),
            actor=ACTOR,
        )
        self.addresses[bid] = addresses
        return bid

    @rule(
        replies=st.lists(st.sampled_from([250, 250, 451, 550, 0]), min_size=1, max_size=6),
        budget=st.none() | st.integers(min_value=0, max_value=5),
    )
    def dispatch(self, replies: list[int], budget: int | None) -> None:
        everyone = [a for addrs in self.addresses.values() for a in addrs]
        for i, address in enumerate(everyone):
            code = replies[i % len(replies)]
            self.transport.replies[address] = (code, "dropped" if code == 0 else f"{code} reply")
        before = self._usage()
        report = self.svc.dispatch_due(self.transport, max_messages=budget)
        assert report.sent == report.succeeded + report.errors + report.retried
        if budget is not None:
            assert report.sent <= budget
        after = self._usage()
        if self.limit is not None:
            # New claims only while count + in-flight stays within the limit.
            assert after <= max(self.limit, before)

    @rule(minutes=st.sampled_from([1, 6, 11, 60, 23 * 60, 25 * 60]))
    def advance(self, minutes: int) -> None:
        self.clock.advance(minutes=minutes)

    @rule(
        bid=broadcasts,
        data=st.data(),
        permanent=st.booleans(),
        action=st.sampled_from(["failed", "failed", "failed", "delayed", "autoreply", "complaint"]),
        by_token=st.booleans(),
        received_offset=st.sampled_from([0, 60, 23 * 3600, 25 * 3600]),
    )
    def bounce(
        self,
        bid: UUID,
        data: st.DataObject,
        permanent: bool,
        action: str,
        by_token: bool,
        received_offset: int,
    ) -> None:
        address = data.draw(st.sampled_from(self.addresses[bid]))
        state = Recipient.fold(self.svc.history(bid, address))  # type: ignore[arg-type]
        assert state is not None
        token = self.svc.verp.token(state.id) if by_token else None
        report = BounceReport(
            recipient=address,
            status="5.1.1" if permanent else "4.2.2",
            diagnostic="user unknown" if permanent else "mailbox full",
            permanent=permanent,
            reported_at=self.clock(),
            verp_token=token,
            message_id=None if by_token else state.message_id,
            action=action,
        )
        received = self.clock() + timedelta(seconds=received_offset)
        outcome = self.svc.record_bounce(report, received_at=received)
        if state.message_id is None:
            assert outcome.kind == "unmatched"
        self.reports.append((report, received, outcome.kind))

    @precondition(lambda self: bool(self.reports))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        report, received, first = data.draw(st.sampled_from(self.reports))
        outcome = self.svc.record_bounce(report, received_at=received)
        if first in ("applied", "duplicate"):
            assert outcome.kind == "duplicate"
        elif first in ("late", "ignored"):
            assert outcome.kind == first

    @precondition(lambda self: bool(self.transport.sent))
    @rule(
        data=st.data(),
        how=st.sampled_from(["verp", "message_id", "forged", "arf", "autoreply", "delayed"]),
        received_offset=st.sampled_from([0, 60, 25 * 3600]),
    )
    def raw_bounce(self, data: st.DataObject, how: str, received_offset: int) -> None:
        m = data.draw(st.sampled_from(self.transport.sent))
        if how == "arf":
            raw = build_arf(m)
        elif how == "autoreply":
            raw = build_auto_reply(m)
        else:
            raw = build_dsn(
                m,
                verp=how != "message_id",
                action="delayed" if how == "delayed" else "failed",
                status="4.4.1" if how == "delayed" else "5.1.1",
            )
        if how == "forged":
            # Another delivery's MAC under this token, and an unknown Message-ID.
            token = m.envelope_from.partition("+")[2].partition("@")[0]
            raw = raw.replace(token.encode(), token[:26].encode() + b"a" * (len(token) - 26))
            raw = raw.replace(m.message_id.encode(), b"<forged@attacker.example>")
        received = self.clock() + timedelta(seconds=received_offset)
        outcomes = self.svc.record_bounce_message(raw, received_at=received)
        assert len(outcomes) == 1
        kind = outcomes[0].kind
        if how == "forged":
            assert kind == "unmatched"
            self.forged.add(raw)
        elif how in ("autoreply", "delayed"):
            assert kind == "ignored"
        else:
            assert kind in ("applied", "duplicate", "late")
            assert outcomes[0].address == m.recipient

    @precondition(lambda self: bool(self.forged))
    @rule()
    def retry_unmatched(self) -> None:
        assert {o.kind for o in self.svc.retry_unmatched()} == {"unmatched"}

    @invariant()
    def forged_reports_and_only_those_are_kept(self) -> None:
        assert self.svc.unmatched_reports(per_page=1000).total == len(self.forged)

    @rule(bid=broadcasts)
    def acknowledge(self, bid: UUID) -> None:
        page = self.svc.unacknowledged_errors(bid)
        n = self.svc.acknowledge_errors(bid, actor=ACTOR, as_of=page.as_of)
        assert n == page.total
        assert self.svc.summary(bid).unacknowledged_errors == 0

    @rule(bid=broadcasts, data=st.data())
    def acknowledge_one(self, bid: UUID, data: st.DataObject) -> None:
        address = data.draw(st.sampled_from(self.addresses[bid]))
        state = Recipient.fold(self.svc.history(bid, address))  # type: ignore[arg-type]
        assert state is not None
        if state.status is DeliveryStatus.ERROR:
            assert self.svc.acknowledge_error(bid, address, actor=ACTOR) == (
                state.acknowledged_at is None
            )
        else:
            try:
                self.svc.acknowledge_error(bid, address, actor=ACTOR)
            except InvalidTransition:
                pass
            else:  # pragma: no cover - a failure of the rule under test
                raise AssertionError("acknowledging a non-error must raise InvalidTransition")

    @rule(bid=broadcasts)
    def cancel(self, bid: UUID) -> None:
        status = self.svc.summary(bid).status
        try:
            self.svc.cancel_broadcast(bid, actor=ACTOR)
        except InvalidTransition:
            assert status not in (BroadcastStatus.SCHEDULED, BroadcastStatus.CANCELLED)
        else:
            assert self.svc.summary(bid).status is BroadcastStatus.CANCELLED

    @rule(limit=st.none() | st.integers(min_value=0, max_value=12))
    def set_limit(self, limit: int | None) -> None:
        self.limit = limit
        self.svc.configure_account("acme", monthly_limit=limit, timezone="Asia/Tokyo")

    # --- invariants ----------------------------------------------------------------------

    def _usage(self) -> int:
        now = self.clock().astimezone()
        from broadcast_domain.projections.views import month_of

        year, month = month_of(self.clock(), "Asia/Tokyo")
        count = self.svc.monthly_usage("acme", year=year, month=month).count
        del now
        return count + sum(self.svc.summary(b).sending for b in self.addresses)

    @invariant()
    def counts_add_up_and_match_a_fold_over_history(self) -> None:
        for bid, addresses in self.addresses.items():
            s = self.svc.summary(bid)
            for n in (s.scheduled, s.sending, s.succeeded, s.errors, s.unacknowledged_errors):
                assert n >= 0
            assert s.delivered == s.succeeded + s.errors
            assert s.scheduled + s.sending + s.delivered == s.recipients == len(addresses)
            states = [Recipient.fold(self.svc.history(bid, a)) for a in addresses]  # type: ignore[arg-type]
            tally = dict.fromkeys(DeliveryStatus, 0)
            unack = 0
            for state in states:
                assert state is not None
                tally[state.status] += 1
                unack += state.unacknowledged_error
                if state.id in self.seen_error:
                    assert state.status is DeliveryStatus.ERROR, "ERROR turned back"
                if state.status is DeliveryStatus.ERROR:
                    self.seen_error.add(state.id)
            assert (s.scheduled, s.sending, s.succeeded, s.errors) == (
                tally[DeliveryStatus.SCHEDULED],
                tally[DeliveryStatus.SENDING],
                tally[DeliveryStatus.SUCCEEDED],
                tally[DeliveryStatus.ERROR],
            )
            assert s.unacknowledged_errors == unack
            page = self.svc.recipients(bid, per_page=50)
            by_address = {item.address: item for item in page.items}
            reasons: dict[str, int] = {}
            for state in states:
                assert state is not None
                item = by_address[state.address]
                assert item.status is state.status
                assert item.acknowledged_at == state.acknowledged_at
                assert recipient_id(bid, state.address) == state.id
                if state.status is DeliveryStatus.ERROR:
                    assert item.reason in REASONS
                    assert item.reason == (state.error_reason or "undefined")
                    reasons[item.reason] = reasons.get(item.reason, 0) + 1
                else:
                    assert item.reason is None
            assert dict(s.errors_by_reason) == reasons
            assert sum(s.errors_by_reason.values()) == s.errors
            for reason, n in reasons.items():
                assert self.svc.recipients(bid, reason=reason, per_page=50).total == n

    @invariant()
    def projections_equal_a_replay(self) -> None:
        assert self.svc.verify_projections() == []

    @invariant()
    def monthly_count_counts_each_delivered_recipient_once(self) -> None:
        delivered = sum(self.svc.summary(b).delivered for b in self.addresses)
        total = 0
        for year, month in {(2026, 11), (2026, 12), (2027, 1)}:
            total += self.svc.monthly_usage("acme", year=year, month=month).count
        assert total == delivered


def checksum(text: str) -> int:
    """A stable small hash, for scripted choices."""
    return zlib.crc32(text.encode())


def run_machine(
    factory: Callable[[FakeClock], BroadcastService],
    *,
    settings: Settings | None = None,
) -> None:
    """Run :class:`BroadcastMachine` against services built by ``factory(clock)``.

    ``factory`` is called once per run with the machine's clock and must return
    a service on an empty store that uses that clock; the machine closes it.
    ``settings`` (hypothesis) bounds the runs, e.g.
    ``settings(max_examples=25, stateful_step_count=25)``; by default the active
    profile's. Raises the first invariant violation found, with its steps.
    """

    class _Machine(BroadcastMachine):
        def make_service(self, clock: FakeClock) -> BroadcastService:
            return factory(clock)

    _Machine.__name__ = _Machine.__qualname__ = "BroadcastMachine"
    run_state_machine_as_test(_Machine, settings=settings)
