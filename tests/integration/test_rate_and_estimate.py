"""The per-account send rate and the estimated completion time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

from broadcast_domain import Actor, AddressBookSource, BroadcastService, Contact, InboxRole
from broadcast_domain.ports import OutgoingMessage, TransportReply
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.machine import ScriptedTransport

OPERATOR = Actor("op", inbox_roles={"support": InboxRole.OPERATOR})


def create(svc: BroadcastService, clock: FakeClock, n: int) -> UUID:
    return svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="rate",
        text_body="body",
        source=AddressBookSource("book-1"),
        recipients=[Contact(f"u{i}@example.com") for i in range(n)],
        scheduled_at=clock(),
        actor=OPERATOR,
    )


class CountingTransport(ScriptedTransport):
    """Records the size of every batch handed over."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        self.batches.append(len(messages))
        return super().send(messages)


def test_send_rate_paces_batches_of_about_one_second(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """With 10 msg/s, batches hold at most 10 messages and the dispatcher waits after each."""
    svc.configure_account("acme", send_rate=10)
    create(svc, clock, 25)
    waits: list[float] = []
    svc.sleep = waits.append
    transport = CountingTransport()
    report = svc.dispatch_due(transport)
    assert report.sent == 25
    assert transport.batches == [10, 10, 5]
    # An instant transport finishes early, so every batch is followed by a wait.
    assert len(waits) == 3
    assert all(0 < w <= n / 10 for w, n in zip(waits, transport.batches, strict=True))


def test_without_a_rate_nothing_waits(svc: BroadcastService, clock: FakeClock) -> None:
    """No send rate: one batch, no waiting."""
    create(svc, clock, 25)
    waits: list[float] = []
    svc.sleep = waits.append
    transport = CountingTransport()
    svc.dispatch_due(transport)
    assert transport.batches == [25]
    assert waits == []


def test_estimated_completion_comes_from_the_measured_rate(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """8 outcomes in 10 s leave 2: the estimate is 2.5 s after the last outcome; None when done."""
    bid = create(svc, clock, 10)
    assert svc.summary(bid).estimated_completion_at is None  # scheduled
    start = clock()
    svc.dispatch_due(ScriptedTransport(), max_messages=4)
    assert svc.summary(bid).estimated_completion_at is None  # no elapsed time measured yet
    clock.advance(seconds=10)
    svc.dispatch_due(ScriptedTransport(), max_messages=4)
    assert svc.summary(bid).estimated_completion_at == start + timedelta(seconds=12.5)
    svc.dispatch_due(ScriptedTransport())
    assert svc.summary(bid).estimated_completion_at is None  # sent
