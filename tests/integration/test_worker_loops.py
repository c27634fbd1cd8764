"""The worker loops in process: what they hand over, record, count and log, and how they stop."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from broadcast_adapters.metrics import Metrics
from broadcast_adapters.workers import follow, run_dispatcher, run_ingester, stop_on_signals
from broadcast_domain import (
    Actor,
    BounceReport,
    BroadcastService,
    Contact,
    CsvSource,
    DeliveryStatus,
    InboxRole,
)
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.fakes import FakeBounceSource, FakeTransport
from broadcast_domain.testing.reports import report_on

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
ADMIN = Actor("op", inbox_roles={"support": InboxRole.ADMIN})


def _service(url: str = "memory://", recipients: int = 25) -> tuple[BroadcastService, UUID]:
    svc = BroadcastService.open(
        url, return_path="bounces@mail.example.com", signing_key=b"k" * 32, clock=FakeClock(T0)
    )
    bid = svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="お知らせ",
        text_body="本文",
        source=CsvSource("members.csv"),
        recipients=[Contact(f"u{i:03d}@example.jp") for i in range(recipients)],
        scheduled_at=T0,
        actor=ADMIN,
    )
    return svc, bid


def test_one_pass_sends_everything_due_in_batches_and_counts_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """--once: batches until nothing is due; every reply recorded, counted and logged."""
    svc, bid = _service()
    transport = FakeTransport(reject=["u003@example.jp"], defer={"u004@example.jp": 1})
    metrics = Metrics()
    caplog.set_level(logging.INFO, logger="broadcast_adapters.workers")
    totals = run_dispatcher(
        svc, transport, stop=threading.Event(), once=True, batch=7, metrics=metrics
    )
    s = svc.summary(bid)
    assert (totals.sent, totals.succeeded, totals.errors, totals.retried) == (25, 23, 1, 1)
    assert (s.succeeded, s.errors, s.sending, s.scheduled) == (23, 1, 1, 0)
    assert totals.passes >= 4  # 25 messages in batches of 7
    text = metrics.exposition().decode()
    assert "broadcast_messages_handed_over_total 25.0" in text
    assert "broadcast_messages_refused_total 1.0" in text
    assert "broadcast_messages_deferred_total 1.0" in text
    assert any("handed over 7" in r.getMessage() for r in caplog.records)
    svc.close()


def test_a_stop_request_is_honoured_between_batches() -> None:
    """With stop set while a batch is in hand, that batch is recorded and no other starts."""
    svc, bid = _service(recipients=30)
    stop = threading.Event()

    class StoppingTransport(FakeTransport):
        def send(self, messages):  # type: ignore[no-untyped-def]
            stop.set()  # the signal arrives while this batch is being handed over
            return super().send(messages)

    totals = run_dispatcher(svc, StoppingTransport(), stop=stop, batch=10)
    s = svc.summary(bid)
    assert totals.sent == s.succeeded == 10
    assert s.sending == 0
    assert s.scheduled == 20
    svc.close()


def test_the_loop_waits_when_idle_until_stopped() -> None:
    """Nothing due: the loop waits (no busy spinning) and returns once stopped."""
    svc, _ = _service(recipients=1)
    stop = threading.Event()
    transport = FakeTransport()
    worker = threading.Thread(
        target=run_dispatcher, args=(svc, transport), kwargs={"stop": stop, "idle_seconds": 0.05}
    )
    worker.start()
    while len(transport.sent) < 1:
        worker.join(0.01)
    stop.set()
    worker.join(30)
    assert not worker.is_alive()
    assert len(transport.sent) == 1
    svc.close()


def test_the_ingester_records_each_pass_and_counts_outcomes() -> None:
    """Every message of the source is recorded once; outcomes reach the metrics."""
    svc, bid = _service(recipients=3)
    transport = FakeTransport()
    svc.dispatch_due(transport)
    message = transport.accepted[0]
    raw = report_on(
        message,
        BounceReport(
            recipient=message.recipient,
            status="5.1.1",
            diagnostic="User unknown",
            permanent=True,
            reported_at=T0,
        ),
        reply_code="550",
    )
    source = FakeBounceSource([raw])
    metrics = Metrics()
    totals = run_ingester(svc, lambda: source, stop=threading.Event(), metrics=metrics)
    assert totals["messages"] == 1
    assert totals["applied"] == 1
    assert 'broadcast_reports_total{outcome="applied"} 1.0' in metrics.exposition().decode()
    errors = svc.recipients(bid, status=DeliveryStatus.ERROR).items
    assert [e.address for e in errors] == [message.recipient]
    svc.close()


def _bounce(svc: BroadcastService, transport: FakeTransport) -> None:
    message = transport.accepted[0]
    svc.record_bounce(
        BounceReport(
            recipient=message.recipient,
            status="5.1.1",
            diagnostic="550 5.1.1 User unknown",
            permanent=True,
            reported_at=T0,
            verp_token=message.envelope_from.split("@")[0].split("+", 1)[1],
        )
    )


def test_the_follower_applies_what_others_record(tmp_path: Path) -> None:
    """A follower thread brings the views up to date without any read, then stops."""
    url = f"sqlite:///{tmp_path / 'follow.db'}"
    svc, _ = _service(url, recipients=4)
    transport = FakeTransport()
    svc.dispatch_due(transport)
    _bounce(svc, transport)  # recorded, and not projected until someone reads
    assert svc.projection_lag() > 0
    stop = threading.Event()
    applied: list[int] = []
    worker = threading.Thread(
        target=lambda: applied.append(follow(url, stop=stop, poll_interval=0.02))
    )
    worker.start()
    while svc.projection_lag() != 0:
        worker.join(0.02)
    stop.set()
    worker.join(30)
    assert not worker.is_alive()
    assert applied
    assert applied[0] > 0
    svc.close()


def test_signals_set_the_stop_event_and_handlers_come_back() -> None:
    """stop_on_signals installs handlers for the run and restores the previous ones."""
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        assert signal.getsignal(signal.SIGTERM) is not before
        signal.raise_signal(signal.SIGTERM)
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)  # a second one interrupts at once
    assert signal.getsignal(signal.SIGTERM) is before
