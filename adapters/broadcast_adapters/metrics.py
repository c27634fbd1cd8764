"""Prometheus metrics of one process: dispatching, bounce reports, projection lag.

Each process (the web app, a dispatch worker) owns one :class:`Metrics` with
its own ``CollectorRegistry``, never the global one, so two apps in one
process (or a test suite building many) do not collide, and a host's own
registry stays its own. Prometheus scrapes every process; sums across
processes are the query's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from broadcast_domain import BounceOutcome, DispatchReport

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The outcome kinds of SPEC 4; ``svc.ingest`` tallies other things beside them.
OUTCOMES = ("applied", "duplicate", "late", "unmatched", "ignored")


class Metrics:
    """The counters and gauges of one process, in a registry of its own."""

    def __init__(self, *, projection_lag: Callable[[], float] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.handed_over = Counter(
            "broadcast_messages_handed_over",
            "Messages handed over to the mail transport (delivery attempts).",
            registry=self.registry,
        )
        self.accepted = Counter(
            "broadcast_messages_accepted",
            "Messages the receiving server accepted (2xx).",
            registry=self.registry,
        )
        self.refused = Counter(
            "broadcast_messages_refused",
            "Messages refused for good (5xx, or retries used up).",
            registry=self.registry,
        )
        self.deferred = Counter(
            "broadcast_messages_deferred",
            "Messages deferred (4xx or a dropped connection) and left for a retry.",
            registry=self.registry,
        )
        self.reports = Counter(
            "broadcast_reports",
            "Bounce reports taken in, by outcome (applied, duplicate, late, unmatched, ignored).",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_requests = Counter(
            "broadcast_webhook_requests",
            "Provider webhook requests, by provider and HTTP status answered.",
            ["provider", "status"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "broadcast_projection_lag_events",
            "Events recorded but not yet applied to the projections (read at scrape time).",
            registry=self.registry,
        )
        if projection_lag is not None:
            self.lag.set_function(projection_lag)

    def observe_dispatch(self, report: DispatchReport) -> None:
        """Add one ``dispatch_due`` report to the message counters."""
        self.handed_over.inc(report.sent)
        self.accepted.inc(report.succeeded)
        self.refused.inc(report.errors)
        self.deferred.inc(report.retried)

    def observe_outcomes(self, outcomes: Iterable[BounceOutcome]) -> None:
        """Count each report outcome by its kind."""
        for outcome in outcomes:
            self.reports.labels(outcome=outcome.kind).inc()

    def observe_counts(self, counts: dict[str, int]) -> None:
        """Count the outcome tallies ``svc.ingest`` returns (its other tallies are skipped)."""
        for kind, count in counts.items():
            if kind in OUTCOMES and count:
                self.reports.labels(outcome=kind).inc(count)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
