"""The plain values the facade returns: summaries, pages, outcomes, reports."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

import attrs

from broadcast_domain.domain.recipient import ReportOutcome
from broadcast_domain.domain.values import BounceReport, BroadcastStatus, Contact, DeliveryStatus

__all__ = [
    "BounceOutcome",
    "BroadcastItem",
    "DispatchReport",
    "ErrorPage",
    "ExportRecord",
    "HistoryEntry",
    "ImportProblem",
    "ImportedRecipients",
    "MonthlyUsage",
    "Page",
    "RecipientItem",
    "Summary",
]

T = TypeVar("T")


@attrs.frozen
class Summary:
    """The status bar of a broadcast."""

    broadcast_id: UUID
    status: BroadcastStatus
    recipients: int
    scheduled: int
    sending: int
    succeeded: int
    errors: int
    delivered: int
    unacknowledged_errors: int
    estimated_completion_at: datetime | None
    paused_reason: str | None = None
    # Errors by reason, only reasons with errors, in REASONS' order; sums to ``errors``.
    errors_by_reason: Mapping[str, int] = attrs.field(factory=dict)


@attrs.frozen
class Page(Generic[T]):
    """One page of a list, with the total and the number of pages."""

    items: Sequence[T]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages the list has (at least 1)."""
        return max(1, math.ceil(self.total / self.per_page))


@attrs.frozen
class ErrorPage(Page[T]):
    """A page of unacknowledged errors plus ``as_of``: the moment it was read."""

    as_of: int = 0


@attrs.frozen
class RecipientItem:
    """One row of the recipient list (and of the result CSV)."""

    address: str
    last_name: str
    first_name: str
    company: str
    status: DeliveryStatus
    detail_message: str
    acknowledged_at: datetime | None
    status_updated_at: datetime | None
    contact_id: str | None = None
    # For an ERROR, one of REASONS; None otherwise.
    reason: str | None = None


@attrs.frozen
class BroadcastItem:
    """One row of a broadcast list."""

    broadcast_id: UUID
    inbox_id: str
    subject: str
    status: BroadcastStatus
    created_at: datetime
    scheduled_at: datetime
    recipients: int
    delivered: int
    errors: int


@attrs.frozen
class MonthlyUsage:
    """An account's send count for a month against its limit."""

    account_id: str
    year: int
    month: int
    count: int
    limit: int | None

    @property
    def remaining(self) -> int | None:
        """What the limit still admits (None when unlimited)."""
        return None if self.limit is None else max(0, self.limit - self.count)


@attrs.frozen
class BounceOutcome:
    """What one report did: applied, duplicate, late, unmatched or ignored (OUTCOME_KINDS)."""

    kind: ReportOutcome
    report: BounceReport
    report_id: str
    broadcast_id: UUID | None = None
    address: str | None = None
    detail: str = ""


@attrs.frozen
class DispatchReport:
    """What one ``dispatch_due`` call did."""

    sent: int = 0
    succeeded: int = 0
    errors: int = 0
    retried: int = 0
    paused: tuple[UUID, ...] = ()
    completed: tuple[UUID, ...] = ()


@attrs.frozen
class ImportProblem:
    """A bad row of an imported recipient file: its line (the header is line 1) and why."""

    line: int
    reason: str


@attrs.frozen
class ImportedRecipients:
    """What ``parse_recipient_csv`` found: the good contacts and every problem.

    ``problems`` holds one entry per row left out (bad rows and duplicates), in
    file order; ``duplicates`` counts the rows left out because their address
    was already on an earlier line; ``ignored_columns`` names header cells that
    matched no known field.
    """

    contacts: tuple[Contact, ...]
    problems: tuple[ImportProblem, ...]
    duplicates: int = 0
    ignored_columns: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        """Data rows read (blank lines excluded): kept contacts plus rows left out."""
        return len(self.contacts) + len(self.problems)


@attrs.frozen
class HistoryEntry:
    """One event of a recipient's delivery, described for people.

    ``status`` is the recipient's delivery status after the event; ``detail`` is
    the cause as recorded (the server's reply, the report's diagnostic); ``actor``
    is who acted (who acknowledged), when a person did.
    """

    at: datetime
    event: str
    status: DeliveryStatus
    description: str
    detail: str = ""
    actor: str | None = None


@attrs.frozen
class ExportRecord:
    """One download of a broadcast's results (``kind="results"``) or errors (``"errors"``).

    ``as_of`` is the projection position the export read from; ``rows`` the data
    rows written.
    """

    at: datetime
    exported_by: str
    kind: str
    as_of: int
    rows: int
