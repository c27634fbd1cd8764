"""Projections as pure folds: counts, broadcast lists, monthly usage, recipient rows.

:func:`project` applies one event (with its position in the application's
sequence) to a :class:`Views` working set; :func:`fold` replays a whole
history. Storing the result in tables, with a tracking position, is a thin
separate step done by a view store; the fold is the same code either way and
the oracle that ``verify_projections`` compares a store against.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import attrs

from broadcast_domain.domain.account import Account
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import (
    AccountConfigured,
    BroadcastEvent,
    DomainEvent,
    RecipientEvent,
    Sent,
)
from broadcast_domain.domain.recipient import Recipient
from broadcast_domain.domain.unmatched import BounceUnmatched, UnmatchedMessage, UnmatchedResolved
from broadcast_domain.domain.values import DeliveryStatus, search_key

__all__ = [
    "Counts",
    "MonthKey",
    "Views",
    "estimated_completion",
    "fold",
    "keyword_key",
    "month_of",
    "project",
    "recipient_reason",
    "recipient_search_text",
    "unmatched_order",
]

MonthKey = tuple[str, int, int]
"""(account id, year, month) in the account's time zone."""


@attrs.define
class Counts:
    """A broadcast's recipient counts and send-rate figures."""

    scheduled: int = 0
    sending: int = 0
    succeeded: int = 0
    errors: int = 0
    unacknowledged: int = 0
    first_attempt_at: datetime | None = None
    last_outcome_at: datetime | None = None
    # The span of log positions holding this broadcast's recipient events, so a
    # replay of one broadcast (a past status bar) reads only that stretch of the log.
    # 0 in rows written before these fields existed: replay from the start then.
    first_position: int = 0
    last_position: int = 0
    # Errors by reason (only reasons with errors): sums to ``errors``.
    errors_by_reason: dict[str, int] = attrs.field(factory=dict)

    @property
    def delivered(self) -> int:
        """Succeeded + errors."""
        return self.succeeded + self.errors

    @property
    def recipients(self) -> int:
        """Scheduled + sending + delivered."""
        return self.scheduled + self.sending + self.delivered

    def bump(self, status: DeliveryStatus, delta: int) -> None:
        """Add ``delta`` to the count of ``status``."""
        if status is DeliveryStatus.SCHEDULED:
            self.scheduled += delta
        elif status is DeliveryStatus.SENDING:
            self.sending += delta
        elif status is DeliveryStatus.SUCCEEDED:
            self.succeeded += delta
        else:
            self.errors += delta

    def bump_reason(self, reason: str | None, delta: int) -> None:
        """Add ``delta`` to the errors of ``reason`` (a reason at zero leaves the map)."""
        key = reason or "undefined"
        left = self.errors_by_reason.get(key, 0) + delta
        if left:
            self.errors_by_reason[key] = left
        else:
            self.errors_by_reason.pop(key, None)


def month_of(moment: datetime, timezone: str) -> tuple[int, int]:
    """The calendar (year, month) of a moment in a time zone."""
    local = moment.astimezone(ZoneInfo(timezone))
    return local.year, local.month


@attrs.define
class Views:
    """A working set of every view, keyed for the fold; dirty sets tell a store what to write."""

    recipients: dict[UUID, Recipient] = attrs.field(factory=dict)
    error_positions: dict[UUID, int] = attrs.field(factory=dict)
    broadcasts: dict[UUID, Broadcast] = attrs.field(factory=dict)
    counts: dict[UUID, Counts] = attrs.field(factory=dict)
    accounts: dict[str, Account] = attrs.field(factory=dict)
    monthly: dict[MonthKey, int] = attrs.field(factory=dict)
    message_ids: dict[str, UUID] = attrs.field(factory=dict)
    unmatched: dict[UUID, UnmatchedMessage] = attrs.field(factory=dict)
    dirty_unmatched: set[UUID] = attrs.field(factory=set)
    dirty_recipients: set[UUID] = attrs.field(factory=set)
    dirty_broadcasts: set[UUID] = attrs.field(factory=set)
    dirty_counts: set[UUID] = attrs.field(factory=set)
    dirty_accounts: set[str] = attrs.field(factory=set)
    position: int = 0

    def counts_for(self, broadcast_id: UUID) -> Counts:
        """The counts of a broadcast, created empty on first use."""
        counts = self.counts.get(broadcast_id)
        if counts is None:
            counts = self.counts[broadcast_id] = Counts()
        return counts

    def timezone_of(self, account_id: str) -> str:
        """The account's time zone (UTC when it was never configured)."""
        account = self.accounts.get(account_id)
        return account.timezone if account else "UTC"

    def clear_dirty(self) -> None:
        """Forget what was written."""
        self.dirty_recipients.clear()
        self.dirty_broadcasts.clear()
        self.dirty_counts.clear()
        self.dirty_accounts.clear()
        self.dirty_unmatched.clear()


def _project_recipient(views: Views, event: RecipientEvent, position: int) -> None:
    rid = event.originator_id
    before = views.recipients.get(rid)
    after = event.apply(before)
    views.recipients[rid] = after
    views.dirty_recipients.add(rid)
    bid = after.broadcast_id
    counts = views.counts_for(bid)
    views.dirty_counts.add(bid)
    if counts.first_position == 0:
        counts.first_position = position
    counts.last_position = max(counts.last_position, position)
    if before is None:
        counts.bump(after.status, +1)
    elif before.status is not after.status:
        counts.bump(before.status, -1)
        counts.bump(after.status, +1)
    was_error = before is not None and before.status is DeliveryStatus.ERROR
    is_error = after.status is DeliveryStatus.ERROR
    if was_error or is_error:
        old_reason = before.error_reason if was_error and before is not None else None
        if not (was_error and is_error and old_reason == after.error_reason):
            if was_error:
                counts.bump_reason(old_reason, -1)
            if is_error:
                counts.bump_reason(after.error_reason, +1)
    was_unack = before is not None and before.unacknowledged_error
    if after.unacknowledged_error != was_unack:
        counts.unacknowledged += 1 if after.unacknowledged_error else -1
    if after.status is DeliveryStatus.ERROR and (
        before is None or before.status is not DeliveryStatus.ERROR
    ):
        views.error_positions[rid] = position
    if isinstance(event, Sent):
        views.message_ids[event.message_id] = rid
        if counts.first_attempt_at is None:
            counts.first_attempt_at = event.timestamp
    if after.first_outcome_at is not None and (before is None or before.first_outcome_at is None):
        counts.last_outcome_at = event.timestamp
        year, month = month_of(after.first_outcome_at, views.timezone_of(after.account_id))
        key = (after.account_id, year, month)
        views.monthly[key] = views.monthly.get(key, 0) + 1
    elif before is not None and before.status is not after.status and after.status.is_delivered:
        counts.last_outcome_at = event.timestamp


def _project_unmatched(views: Views, event: BounceUnmatched | UnmatchedResolved) -> None:
    # The list holds unresolved messages only: a resolved one leaves it (a store deletes its row).
    uid = event.originator_id
    kept = event.apply(views.unmatched.get(uid))
    if kept is None:
        views.unmatched.pop(uid, None)
    else:
        views.unmatched[uid] = kept
    views.dirty_unmatched.add(uid)


def unmatched_order(message: UnmatchedMessage) -> tuple[datetime, str]:
    """The unmatched list's order: oldest received first, then by id."""
    return (message.received_at, message.id.hex)


def project(views: Views, event: DomainEvent, position: int) -> None:
    """Apply one event, recorded at ``position``, to the views."""
    if isinstance(event, RecipientEvent):
        _project_recipient(views, event, position)
    elif isinstance(event, BroadcastEvent):
        bid = event.originator_id
        views.broadcasts[bid] = event.apply(views.broadcasts.get(bid))
        views.dirty_broadcasts.add(bid)
    elif isinstance(event, AccountConfigured):
        views.accounts[event.account_id] = event.apply(views.accounts.get(event.account_id))
        views.dirty_accounts.add(event.account_id)
    elif isinstance(event, BounceUnmatched | UnmatchedResolved):
        _project_unmatched(views, event)
    views.position = max(views.position, position)


def fold(history: Iterable[tuple[int, DomainEvent]]) -> Views:
    """Replay (position, event) pairs from the start into fresh views."""
    views = Views()
    for position, event in history:
        project(views, event, position)
    views.clear_dirty()
    return views


def estimated_completion(counts: Counts, now: datetime) -> datetime | None:
    """When sending should end, from the measured rate and what remains (None if unknown)."""
    remaining = counts.scheduled + counts.sending
    if remaining == 0 or counts.first_attempt_at is None or counts.last_outcome_at is None:
        return None
    elapsed = (counts.last_outcome_at - counts.first_attempt_at).total_seconds()
    done = counts.delivered
    if done == 0 or elapsed <= 0:
        return None
    per_second = done / elapsed
    return max(now, counts.last_outcome_at) + timedelta(seconds=remaining / per_second)


def recipient_reason(recipient: Recipient) -> str | None:
    """The reason shown and filtered on: an ERROR's reason, None for any other status."""
    if recipient.status is not DeliveryStatus.ERROR:
        return None
    return recipient.error_reason or "undefined"


def recipient_search_text(recipient: Recipient) -> str:
    """What keyword search looks in: 姓名 and 名姓 (spaces removed), address, company."""
    return "\x1f".join(
        (
            search_key(recipient.last_name, recipient.first_name),
            search_key(recipient.first_name, recipient.last_name),
            search_key(recipient.address),
            search_key(recipient.company),
        )
    )


def keyword_key(keyword: str) -> str:
    """A keyword normalised the way search texts are (NFKC, case-folded, no spaces)."""
    return "".join(ch for ch in search_key(keyword) if ch.isprintable())
