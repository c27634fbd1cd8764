"""The loops the worker commands run: dispatch, follow the projections, ingest bounces.

Each loop runs until its ``stop`` event is set. :func:`stop_on_signals` sets it
on the first SIGTERM or SIGINT (Ctrl-C), so the work in hand (the messages of
the current ``dispatch_due`` batch, the bounce messages of the current pass)
is finished and recorded before the loop returns; a second signal interrupts
at once. Everything is logged through :mod:`logging`, one line per event, so a
host's log configuration applies.

The loops take what they need (a service, a transport, a bounce source
factory) as arguments: they know no concrete adapter, and the command line
composes them.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import attrs

from broadcast_adapters.metrics import Metrics
from broadcast_domain import BroadcastService, DispatchReport
from broadcast_domain.application.follower import follow_projections
from broadcast_domain.ports import BounceSource, MailTransport

__all__ = [
    "DispatchTotals",
    "follow",
    "run_dispatcher",
    "run_ingester",
    "stop_on_signals",
]

log = logging.getLogger("broadcast_adapters.workers")


@contextmanager
def stop_on_signals(stop: threading.Event | None = None) -> Iterator[threading.Event]:
    """An event set by the first SIGTERM or SIGINT; a second one interrupts at once.

    Only the main thread can install signal handlers; elsewhere the event is
    returned as is (set it yourself). The previous handlers come back on exit.
    """
    event = stop or threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        log.info(
            "received %s: finishing the work in hand, then stopping (again to stop now)",
            signal.Signals(signum).name,
        )
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@attrs.define
class DispatchTotals:
    """What a dispatcher did over its whole run."""

    passes: int = 0
    sent: int = 0
    succeeded: int = 0
    errors: int = 0
    retried: int = 0
    paused: set[Any] = attrs.field(factory=set)

    def add(self, report: DispatchReport) -> None:
        self.passes += 1
        self.sent += report.sent
        self.succeeded += report.succeeded
        self.errors += report.errors
        self.retried += report.retried
        self.paused.update(report.paused)


def run_dispatcher(
    svc: BroadcastService,
    transport: MailTransport,
    *,
    stop: threading.Event,
    once: bool = False,
    batch: int = 500,
    idle_seconds: float = 2.0,
    metrics: Metrics | None = None,
) -> DispatchTotals:
    """Call ``dispatch_due`` in batches of ``batch`` until ``stop`` is set.

    When nothing is due it waits ``idle_seconds`` (or returns, with ``once``:
    one pass sends everything due now, retries whose backoff has passed
    included). A stop request takes effect between batches, so the batch in
    hand is always handed over and recorded.
    """
    totals = DispatchTotals()
    log.info("dispatcher started (batch %d, %s)", batch, "one pass" if once else "looping")
    while not stop.is_set():
        report = svc.dispatch_due(transport, max_messages=batch)
        totals.add(report)
        if metrics is not None:
            metrics.observe_dispatch(report)
        if report.sent:
            log.info(
                "handed over %d: %d accepted, %d refused, %d deferred",
                report.sent,
                report.succeeded,
                report.errors,
                report.retried,
            )
        for bid in report.paused:
            log.warning("broadcast %s paused: the monthly limit is reached", bid)
        if report.sent:
            continue
        if once:
            break
        stop.wait(idle_seconds)
    log.info(
        "dispatcher stopped: %d handed over in all (%d accepted, %d refused, %d deferred)",
        totals.sent,
        totals.succeeded,
        totals.errors,
        totals.retried,
    )
    return totals


def follow(url: str, *, stop: threading.Event, poll_interval: float = 0.5) -> int:
    """Keep the projections of the store at ``url`` current until ``stop``; return the events."""
    log.info("projection follower started on %s", _safe_url(url))

    def applied(position: int) -> None:
        log.info("projections applied up to position %d", position)

    total = follow_projections(url, stop=stop, poll_interval=poll_interval, on_applied=applied)
    log.info("projection follower stopped after applying %d events", total)
    return total


def run_ingester(
    svc: BroadcastService,
    source: Callable[[], BounceSource],
    *,
    stop: threading.Event,
    watch: bool = False,
    interval: float = 2.0,
    metrics: Metrics | None = None,
) -> dict[str, int]:
    """Ingest what ``source()`` yields; with ``watch``, again every ``interval`` until ``stop``.

    Each pass takes the messages present when it starts; a message is marked
    done by the source only after its events are committed, so a stop (or a
    crash) in the middle loses nothing.
    """
    totals: dict[str, int] = {}
    while True:
        counts = svc.ingest(source())
        for kind, count in counts.items():
            totals[kind] = totals.get(kind, 0) + count
        if metrics is not None:
            metrics.observe_counts(counts)
        if counts.get("messages"):
            shown = ", ".join(
                f"{k} {v}" for k, v in sorted(counts.items()) if v and k != "messages"
            )
            log.info("ingested %d bounce messages: %s", counts["messages"], shown or "nothing")
        if not watch or stop.wait(interval):
            break
    return totals


def _safe_url(url: str) -> str:
    # A PostgreSQL URL may carry a password: keep it out of the logs.
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
