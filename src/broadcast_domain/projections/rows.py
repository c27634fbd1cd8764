"""Recipient rows: what the recipient list shows and filters on, as plain columns.

A :class:`RecipientRow` is the recipient view a store keeps (one table row,
one column per field), not the aggregate: it holds what is shown (names,
address, status, its time, the detail message, the acknowledgement, the
reason), what queries filter and sort on (position, search text, due time,
where the error was recorded) and the two facts the fold needs to compute the
next row from the next event (when the first outcome was, and the rank of the
error shown). :func:`advance` is that step; :func:`row_of` says what the row
of an aggregate is, which is how the step is tested against the domain.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast
from uuid import UUID

from broadcast_domain.domain.events import (
    Bounced,
    Complained,
    Deferred,
    ErrorAcknowledged,
    RecipientEvent,
    Scheduled,
    Sent,
    Succeeded,
)
from broadcast_domain.domain.recipient import Recipient
from broadcast_domain.domain.values import DeliveryStatus, search_key

__all__ = [
    "RESULT_FIELDS",
    "ROW_FIELDS",
    "RecipientRow",
    "ResultCells",
    "advance",
    "cells_of",
    "error_rank",
    "recipient_search_text",
    "row_from_values",
    "row_of",
]


class RecipientRow(NamedTuple):
    """One recipient as the views hold it: shown, filtered and sorted columns.

    An immutable tuple rather than a frozen attrs class: a rebuild makes a row
    per event it folds (about a million), and a tuple is built in C from its
    values where a frozen class sets each of its twenty fields by a call.
    """

    id: UUID
    broadcast_id: UUID
    account_id: str
    position: int
    address: str
    last_name: str
    first_name: str
    company: str
    contact_id: str | None
    # What keyword search looks in (recipient_search_text).
    search: str
    status: DeliveryStatus
    status_updated_at: datetime | None
    detail_message: str
    acknowledged_at: datetime | None
    # For an ERROR, one of REASONS ("undefined" when none was given); None otherwise.
    reason: str | None
    # SENDING only: when the claim lapses or the retry is due (a dispatcher may claim it then).
    due_at: datetime | None
    # The log position of the event that made it an ERROR (the error worklist's as_of).
    error_position: int | None
    # Fold state, not shown: the first outcome (counted once in the monthly usage) and
    # the rank of the error shown (a report of smaller rank replaces it).
    first_outcome_at: datetime | None
    error_rank: str | None
    # The aggregate's version this row reflects: a write decided from the row (acknowledging
    # a page of errors) names the next version, so a stale row loses on the event store.
    version: int

    @property
    def unacknowledged_error(self) -> bool:
        """An error nobody has checked yet."""
        return self.status is DeliveryStatus.ERROR and self.acknowledged_at is None

    def is_due(self, now: datetime) -> bool:
        """May a dispatcher start an attempt now? (what ``Recipient.is_due`` says)."""
        if self.status is DeliveryStatus.SCHEDULED:
            return True
        return (
            self.status is DeliveryStatus.SENDING and self.due_at is not None and self.due_at <= now
        )


ROW_FIELDS: tuple[str, ...] = RecipientRow._fields
"""The row's fields in declaration order: the column order of a store's table."""

ResultCells = tuple[DeliveryStatus, datetime | None, str, str, str, str, str, datetime | None]
"""A result CSV line's values, in its column order: status, acknowledged at, last
name, first name, address, company, detail message, status time."""

RESULT_FIELDS: tuple[str, ...] = (
    "status",
    "acknowledged_at",
    "last_name",
    "first_name",
    "address",
    "company",
    "detail_message",
    "status_updated_at",
)
"""The row fields a result CSV line shows, in its column order (ResultCells)."""


def cells_of(row: RecipientRow) -> ResultCells:
    """The result CSV values of a row."""
    return (
        row.status,
        row.acknowledged_at,
        row.last_name,
        row.first_name,
        row.address,
        row.company,
        row.detail_message,
        row.status_updated_at,
    )


_INDEX = {name: i for i, name in enumerate(ROW_FIELDS)}

row_from_values = cast(
    Callable[[Sequence[Any]], RecipientRow], functools.partial(tuple.__new__, RecipientRow)
)
"""A row from its values in ``ROW_FIELDS`` order (a store's table row, converted),
built in C: ``tuple.__new__`` with the class bound."""


def _evolve(row: RecipientRow, **changes: Any) -> RecipientRow:
    # A named tuple's own replace goes through Python code for every field; a rebuild
    # folds millions of events, so copy the values in C and build the new tuple from them.
    values = list(row)
    index = _INDEX
    for name, value in changes.items():
        values[index[name]] = value
    return row_from_values(values)


def error_rank(permanent: bool, reported_at: datetime, report_id: str) -> str:
    """The rank of a reported error as one string; the smallest rank is the error shown.

    The same order as the aggregate's ``(not permanent, reported_at ISO text,
    report id)`` tuple: the separator sorts below every character of an ISO
    time, so a time that is a prefix of another still sorts first.
    """
    return f"{0 if permanent else 1}{reported_at.isoformat()}\x01{report_id}"


@functools.lru_cache(maxsize=8192)
def _name_key(part: str) -> str:
    # Family names, given names and companies repeat across an address book: each
    # distinct one is normalised once (a rebuild makes a search text per recipient).
    return search_key(part)


def recipient_search_text(last_name: str, first_name: str, address: str, company: str) -> str:
    """What keyword search looks in: 姓名 and 名姓 (spaces removed), address, company.

    ``search_key(a, b) == search_key(a) + search_key(b)``: the space that joins
    the parts composes with nothing under NFKC, case folding is per character,
    and the spaces go. So each part is normalised once, not once per order.
    """
    last, first = _name_key(last_name), _name_key(first_name)
    return "\x1f".join((last + first, first + last, search_key(address), _name_key(company)))


def _started(e: Scheduled, position: int) -> RecipientRow:
    return RecipientRow(
        id=e.originator_id,
        broadcast_id=e.broadcast_id,
        account_id=e.account_id,
        position=e.position,
        address=e.address,
        last_name=e.last_name,
        first_name=e.first_name,
        company=e.company,
        contact_id=e.contact_id,
        search=recipient_search_text(e.last_name, e.first_name, e.address, e.company),
        status=DeliveryStatus.SCHEDULED,
        status_updated_at=e.timestamp,
        detail_message="",
        acknowledged_at=None,
        reason=None,
        due_at=None,
        error_position=None,
        first_outcome_at=None,
        error_rank=None,
        version=e.originator_version,
    )


def _sent(row: RecipientRow, e: Sent, position: int) -> RecipientRow:
    return _evolve(
        row,
        version=e.originator_version,
        status=DeliveryStatus.SENDING,
        due_at=e.lease_until,
        status_updated_at=e.timestamp,
    )


def _succeeded(row: RecipientRow, e: Succeeded, position: int) -> RecipientRow:
    return _evolve(
        row,
        version=e.originator_version,
        status=DeliveryStatus.SUCCEEDED,
        due_at=None,
        detail_message=f"{e.reply_code} {e.reply_text}".strip(),
        first_outcome_at=row.first_outcome_at or e.timestamp,
        status_updated_at=e.timestamp,
    )


def _deferred(row: RecipientRow, e: Deferred, position: int) -> RecipientRow:
    reply = f"{e.reply_code} {e.reply_text}".strip() if e.reply_code else e.reply_text
    return _evolve(
        row,
        version=e.originator_version,
        due_at=e.retry_at,
        detail_message=reply,
        status_updated_at=e.timestamp,
    )


def _bounced(row: RecipientRow, e: Bounced, position: int) -> RecipientRow:
    rank = error_rank(e.permanent, e.reported_at, e.report_id)
    was_error = row.status is DeliveryStatus.ERROR
    first = row.first_outcome_at or e.timestamp
    position_of_error = row.error_position if was_error else position
    if row.error_rank is not None and rank >= row.error_rank:
        # A report that does not outrank the error shown changes nothing shown.
        return _evolve(
            row,
            version=e.originator_version,
            status=DeliveryStatus.ERROR,
            due_at=None,
            first_outcome_at=first,
            error_position=position_of_error,
            reason=row.reason or "undefined",
        )
    return _evolve(
        row,
        version=e.originator_version,
        status=DeliveryStatus.ERROR,
        due_at=None,
        first_outcome_at=first,
        error_position=position_of_error,
        status_updated_at=e.reported_at,
        detail_message=e.diagnostic or "",
        reason=e.reason or "undefined",
        error_rank=rank,
    )


def _acknowledged(row: RecipientRow, e: ErrorAcknowledged, position: int) -> RecipientRow:
    return _evolve(row, version=e.originator_version, acknowledged_at=e.timestamp)


def _complained(row: RecipientRow, e: Complained, position: int) -> RecipientRow:
    # A complaint is kept in the log (and dedupes reports there); nothing shown changes.
    return _evolve(row, version=e.originator_version)


_STEPS: dict[type[RecipientEvent], Callable[[RecipientRow, Any, int], RecipientRow]] = {
    Sent: _sent,
    Succeeded: _succeeded,
    Deferred: _deferred,
    Bounced: _bounced,
    ErrorAcknowledged: _acknowledged,
    Complained: _complained,
}


def advance(row: RecipientRow | None, event: RecipientEvent, position: int) -> RecipientRow:
    """The row after ``event``, recorded at ``position`` (a Scheduled event starts it)."""
    if row is None:
        if not isinstance(event, Scheduled):
            raise ValueError(
                f"{type(event).__name__} for recipient {event.originator_id} "
                "before its Scheduled event"
            )
        return _started(event, position)
    step = _STEPS.get(type(event))
    if step is None:
        raise ValueError(f"no recipient row step for {type(event).__name__}")
    return step(row, event, position)


def row_of(recipient: Recipient, error_position: int | None) -> RecipientRow:
    """The row of an aggregate state (the fold of its events gives the same row)."""
    rank = recipient.error_rank
    is_error = recipient.status is DeliveryStatus.ERROR
    return RecipientRow(
        id=recipient.id,
        broadcast_id=recipient.broadcast_id,
        account_id=recipient.account_id,
        position=recipient.position,
        address=recipient.address,
        last_name=recipient.last_name,
        first_name=recipient.first_name,
        company=recipient.company,
        contact_id=recipient.contact_id,
        search=recipient_search_text(
            recipient.last_name, recipient.first_name, recipient.address, recipient.company
        ),
        status=recipient.status,
        status_updated_at=recipient.status_updated_at,
        detail_message=recipient.detail_message,
        acknowledged_at=recipient.acknowledged_at,
        reason=(recipient.error_reason or "undefined") if is_error else None,
        due_at=(
            (recipient.retry_at if recipient.retry_at is not None else recipient.lease_until)
            if recipient.status is DeliveryStatus.SENDING
            else None
        ),
        error_position=error_position if is_error else None,
        first_outcome_at=recipient.first_outcome_at,
        error_rank=None if rank is None else f"{0 if not rank[0] else 1}{rank[1]}\x01{rank[2]}",
        version=recipient.version,
    )
