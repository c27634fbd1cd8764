"""The plain values the facade returns: summaries, pages, outcomes, reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

import attrs

from broadcast_domain.domain.values import BounceReport, BroadcastStatus, DeliveryStatus

__all__ = [
    "BounceOutcome",
    "BroadcastItem",
    "DispatchReport",
    "ErrorPage",
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
    """What one report did: applied, duplicate, late, unmatched or ignored."""

    kind: str
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
