"""Transport faults over real SMTP: the dispatcher carries on, retries as specified, loses nothing.

Each fault is the SmtpSink's, per address: the connection dropped mid-DATA,
421 and close, a stall past the client's timeout, a 451 deferral, a 550
refusal, and a server that refuses STARTTLS. The recipient's detail message
says what happened; 4xx and no-reply faults leave it SENDING with backoff and
become ERROR when the attempts are used up.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from reliability_support import OPERATOR, assert_spec_invariants

from broadcast_adapters.smtp import SmtpTransport
from broadcast_domain import (
    AddressBookSource,
    BroadcastService,
    BroadcastStatus,
    Contact,
    DeliveryPolicy,
    DeliveryStatus,
)
from broadcast_domain.domain.events import Sent
from broadcast_domain.ports import OutgoingMessage, TransportReply
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.smtp_server import SmtpSink

POLICY = DeliveryPolicy(max_attempts=3, backoff=timedelta(minutes=1))
TIMEOUT = 0.5
GOOD = [f"ok{i}@example.com" for i in range(6)]
DROP = "drop@example.com"
CLOSE = "close@example.com"
STALL = "stall@example.com"
DEFER = "defer@example.com"
REJECT = "reject@example.com"
ALL = [*GOOD[:3], DROP, CLOSE, STALL, DEFER, REJECT, *GOOD[3:]]


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    """A sink with one fault per fault address."""
    with SmtpSink() as s:
        s.drop(DROP, at="DATA")
        s.close_with_421(CLOSE)
        s.stall(STALL, 10 * TIMEOUT)
        s.defer(DEFER, times=2)
        s.reject(REJECT)
        yield s


def broadcast(svc: BroadcastService, clock: FakeClock, addresses: list[str]) -> Any:
    return svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="faults",
        text_body="body",
        source=AddressBookSource("book-1"),
        recipients=[Contact(a) for a in addresses],
        scheduled_at=clock(),
        actor=OPERATOR,
    )


def details(svc: BroadcastService, bid: Any) -> dict[str, tuple[DeliveryStatus, str]]:
    page = svc.recipients(bid, per_page=100)
    return {i.address: (i.status, i.detail_message) for i in page.items}


def attempts(svc: BroadcastService, bid: Any, address: str) -> int:
    return sum(isinstance(e, Sent) for e in svc.history(bid, address))


def test_each_fault_leaves_its_recipient_pending_or_failed_with_a_detail_saying_why(
    open_service: Any, clock: FakeClock, sink: SmtpSink
) -> None:
    """One batch meets every fault; the rest are delivered once; each detail names its fault."""
    svc = open_service(policy=POLICY)
    bid = broadcast(svc, clock, ALL)
    with SmtpTransport("127.0.0.1", sink.port, connections=2, timeout=TIMEOUT) as transport:
        report = svc.dispatch_due(transport)
    assert (report.sent, report.succeeded, report.errors, report.retried) == (11, 6, 1, 4)
    got = details(svc, bid)
    for a in GOOD:
        assert got[a][0] is DeliveryStatus.SUCCEEDED
        assert len(sink.received_for(a)) == 1
    assert got[DROP][0] is DeliveryStatus.SENDING
    assert "connection dropped during DATA" in got[DROP][1]
    assert got[CLOSE][0] is DeliveryStatus.SENDING
    assert got[CLOSE][1].startswith("421 4.3.2")
    assert got[STALL][0] is DeliveryStatus.SENDING
    assert f"timed out after {TIMEOUT:g} s waiting for the RCPT TO reply" in got[STALL][1]
    assert got[DEFER][0] is DeliveryStatus.SENDING
    assert got[DEFER][1].startswith("451 4.3.0")
    assert got[REJECT] == (
        DeliveryStatus.ERROR,
        "550 5.1.1 Recipient address rejected: User unknown",
    )
    for a in (DROP, CLOSE, STALL, DEFER, REJECT):
        assert sink.received_for(a) == []
    assert_spec_invariants(svc, bid, ALL)


def test_faults_are_retried_after_backoff_and_become_errors_when_attempts_run_out(
    open_service: Any, clock: FakeClock, sink: SmtpSink
) -> None:
    """Nothing is retried before its backoff; deferrals then succeed, lasting faults fail."""
    svc = open_service(policy=POLICY)
    bid = broadcast(svc, clock, ALL)
    faulty = (DROP, CLOSE, STALL, DEFER)
    with SmtpTransport("127.0.0.1", sink.port, connections=2, timeout=TIMEOUT) as transport:
        svc.dispatch_due(transport)
        clock.advance(POLICY.retry_delay(1) - timedelta(seconds=1))
        assert svc.dispatch_due(transport).sent == 0
        assert {a: sink.attempts(a) for a in faulty} == dict.fromkeys(faulty, 1)
        clock.advance(seconds=1)
        assert svc.dispatch_due(transport).sent == 4
        clock.advance(POLICY.retry_delay(2))
        third = svc.dispatch_due(transport)
        assert (third.sent, third.succeeded, third.errors) == (4, 1, 3)
        clock.advance(hours=1)
        assert svc.dispatch_due(transport).sent == 0
    got = details(svc, bid)
    assert got[DEFER][0] is DeliveryStatus.SUCCEEDED
    assert len(sink.received_for(DEFER)) == 1
    expected = {
        DROP: "connection dropped during DATA",
        CLOSE: "421 4.3.2",
        STALL: "timed out after",
    }
    for a, reason in expected.items():
        status, detail = got[a]
        assert status is DeliveryStatus.ERROR
        assert detail.startswith("gave up after 3 attempts; last reply:")
        assert reason in detail
        assert attempts(svc, bid, a) == 3
        assert sink.received_for(a) == []
    for a in (DROP, CLOSE, DEFER):
        assert sink.attempts(a) == 3
    s = svc.summary(bid)
    assert (s.status, s.succeeded, s.errors) == (BroadcastStatus.SENT, 7, 4)
    assert_spec_invariants(svc, bid, ALL)


def test_refused_starttls_sends_nothing_in_plain_text_and_ends_in_errors(
    open_service: Any, clock: FakeClock
) -> None:
    """Refused STARTTLS: no address reaches it; each recipient retries, then fails."""
    svc = open_service(policy=POLICY)
    addresses = GOOD[:3]
    bid = broadcast(svc, clock, addresses)
    with (
        SmtpSink(refuse_starttls=True) as sink,
        SmtpTransport("127.0.0.1", sink.port, connections=2, timeout=5, starttls=True) as transport,
    ):
        first = svc.dispatch_due(transport)
        assert (first.sent, first.retried) == (3, 3)
        for status, detail in details(svc, bid).values():
            assert status is DeliveryStatus.SENDING
            assert "STARTTLS refused" in detail
            assert "not sending in plain text" in detail
        for delay in (POLICY.retry_delay(1), POLICY.retry_delay(2)):
            clock.advance(delay)
            svc.dispatch_due(transport)
        assert sink.messages == []
        assert all(sink.attempts(a) == 0 for a in addresses)
    for status, detail in details(svc, bid).values():
        assert status is DeliveryStatus.ERROR
        assert "STARTTLS refused" in detail
    assert svc.summary(bid).status is BroadcastStatus.SENT
    assert_spec_invariants(svc, bid, addresses)


class LostReplyTransport:
    """SMTP to the sink, but the reply to the end of DATA is lost for some addresses
    (the server took the message; the connection broke before its 250 arrived)."""

    def __init__(self, inner: SmtpTransport, lose: set[str]) -> None:
        self.inner = inner
        self.lose = lose

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        replies = self.inner.send(messages)
        by_key = {m.key: m.recipient for m in messages}
        return [
            TransportReply(r.key, 0, "connection dropped during DATA: reply lost")
            if by_key[r.key] in self.lose
            else r
            for r in replies
        ]

    def close(self) -> None:
        self.inner.close()


def test_a_retry_after_a_lost_reply_carries_the_same_message_id(
    open_service: Any, clock: FakeClock
) -> None:
    """When the server took a message but its reply was lost, the retry is the same message
    (same Message-ID), so the two copies are recognisably one message."""
    svc = open_service(policy=POLICY)
    bid = broadcast(svc, clock, GOOD[:2])
    with SmtpSink() as sink, SmtpTransport("127.0.0.1", sink.port) as smtp:
        transport = LostReplyTransport(smtp, {GOOD[0]})
        svc.dispatch_due(transport)
        assert details(svc, bid)[GOOD[0]][0] is DeliveryStatus.SENDING
        transport.lose.clear()
        clock.advance(POLICY.retry_delay(1))
        svc.dispatch_due(transport)
        copies = sink.received_for(GOOD[0])
    assert len(copies) == 2
    assert copies[0].message_id == copies[1].message_id
    sent = [e.message_id for e in svc.history(bid, GOOD[0]) if isinstance(e, Sent)]
    assert sent == [copies[0].message_id] * 2
    assert details(svc, bid)[GOOD[0]][0] is DeliveryStatus.SUCCEEDED
    assert_spec_invariants(svc, bid, GOOD[:2])


class ExplodingTransport:
    """A host transport with a bug: its first send raises; later sends go to the sink."""

    def __init__(self, inner: SmtpTransport) -> None:
        self.inner = inner
        self.exploded = False

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        if not self.exploded:
            self.exploded = True
            raise RuntimeError("transport bug")
        return self.inner.send(messages)

    def close(self) -> None:
        self.inner.close()


def test_a_transport_that_raises_leaves_its_batch_claimed_until_the_lease_then_resends(
    open_service: Any, clock: FakeClock
) -> None:
    """The host transport's exception reaches the caller; the claimed recipients stay SENDING,
    are left alone within the lease and sent once, with their Message-IDs, after it."""
    svc = open_service(policy=POLICY)
    bid = broadcast(svc, clock, GOOD)
    with SmtpSink() as sink, SmtpTransport("127.0.0.1", sink.port) as smtp:
        transport = ExplodingTransport(smtp)
        with pytest.raises(RuntimeError, match="transport bug"):
            svc.dispatch_due(transport)
        assert svc.summary(bid).sending == len(GOOD)
        claimed = {
            a: [e.message_id for e in svc.history(bid, a) if isinstance(e, Sent)] for a in GOOD
        }
        assert svc.dispatch_due(transport).sent == 0
        clock.advance(POLICY.lease)
        assert svc.dispatch_due(transport).succeeded == len(GOOD)
        for a in GOOD:
            (copy,) = sink.received_for(a)
            assert [copy.message_id] == claimed[a]
    assert_spec_invariants(svc, bid, GOOD)
