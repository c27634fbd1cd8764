"""Projections as pure folds: counts, broadcast lists, monthly usage, recipient rows.

:func:`project` applies one event (with its position in the application's
sequence) to a :class:`Views` working set; :func:`fold` replays a whole
history. Storing the result in tables, with a tracking position, is a thin
separate step done by a view store; the fold is the same code either way and
the oracle that ``verify_projections`` compares a store against.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID
from zoneinfo import ZoneInfo

import attrs

from broadcast_domain.domain.account import Account
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import (
    AccountConfigured,
    Bounced,
    BroadcastEvent,
    BroadcastScheduled,
    DomainEvent,
    ErrorAcknowledged,
    RecipientEvent,
    Scheduled,
    Sent,
    Succeeded,
)
from broadcast_domain.domain.unmatched import BounceUnmatched, UnmatchedMessage, UnmatchedResolved
from broadcast_domain.domain.values import DeliveryStatus, search_key
from broadcast_domain.projections.rows import RecipientRow, advance, recipient_search_text

__all__ = [
    "DELIVERED_AGAIN",
    "FIRST_OUTCOME",
    "AcknowledgedRows",
    "Acknowledging",
    "BulkAcknowledgement",
    "Counts",
    "MonthKey",
    "Needs",
    "RecipientRow",
    "Views",
    "acknowledgeable",
    "estimated_completion",
    "fold",
    "keyword_key",
    "month_key",
    "month_of",
    "months_needed",
    "outcome_of",
    "project",
    "project_all",
    "project_bulk_acknowledgement",
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

    def add_row(self, row: RecipientRow) -> None:
        """Count a recipient at its row: what the fold of its events adds up to (each
        step takes back what the row before it counted and counts the row after)."""
        self.bump(row.status, +1)
        if row.reason is not None:
            self.bump_reason(row.reason, +1)
        if row.unacknowledged_error:
            self.unacknowledged += 1

    def bump_reason(self, reason: str | None, delta: int) -> None:
        """Add ``delta`` to the errors of ``reason`` (a reason at zero leaves the map)."""
        key = reason or "undefined"
        left = self.errors_by_reason.get(key, 0) + delta
        if left:
            self.errors_by_reason[key] = left
        else:
            self.errors_by_reason.pop(key, None)


@functools.lru_cache(maxsize=4096)
def month_of(moment: datetime, timezone: str) -> tuple[int, int]:
    """The calendar (year, month) of a moment in a time zone.

    Remembered: a batch's outcomes share few times (a dispatch records a batch
    with one), and the answer depends only on the instant and the zone.
    """
    local = moment.astimezone(ZoneInfo(timezone))
    return local.year, local.month


@attrs.define
class Acknowledging:
    """A recipient a batch only acknowledges, held as the facts the acknowledgements need.

    An ``ErrorAcknowledged`` sets the row's ``acknowledged_at`` and ``version``
    and changes nothing else shown; the counts need only the row's broadcast
    and whether it was an unacknowledged error. So a store may put this in
    :attr:`Views.acknowledging` instead of loading the whole row, and write the
    two columns back (:attr:`Needs.acknowledged_only` says which recipients qualify).
    """

    broadcast_id: UUID
    #: Whether the row is an unacknowledged error (before the batch, then as folded).
    unacknowledged: bool
    #: The two columns the acknowledgements set (None and 0 until one is folded).
    acknowledged_at: datetime | None = None
    version: int = 0
    #: The log position of the last acknowledgement folded (0 until one is).
    position: int = 0


@attrs.define
class AcknowledgedRows:
    """Acknowledgements a store applied to its rows itself, summed up for the counts.

    For recipients a batch only acknowledges, a store may set each row's
    ``acknowledged_at`` and ``version`` to its last acknowledgement's (what the
    fold would leave) in one set-based write, learning which rows were
    unacknowledged errors and of which broadcast as it does. What is left to
    fold is then a sum per broadcast, which :func:`project_all` adds; it skips
    these recipients' events.
    """

    #: The recipients whose acknowledgements were applied (their events are skipped).
    recipients: set[UUID]
    #: How many of the batch's events they are at least (all of them: nothing is left
    #: to fold, and the batch's events are not looked at).
    events: int
    #: Per broadcast: [rows that were unacknowledged errors, first position, last position].
    broadcasts: dict[UUID, list[int]]


@attrs.frozen
class BulkAcknowledgement:
    """The ``ErrorAcknowledged`` events one bulk acknowledgement recorded, as columns.

    Recipient ``recipients[i]`` was read from the views as an unacknowledged
    error of ``broadcast_id`` at version ``versions[i] - 1``; its event (version
    ``versions[i]``, time ``at``, by ``by``) was recorded at ``positions[i]``.
    When every row still is such an error, what the fold does with the events
    is fully determined: each row takes ``at`` and its version, and the
    broadcast's counts lose that many unacknowledged errors
    (:func:`project_bulk_acknowledgement`); a store may then apply them without
    building or folding one event each. :meth:`events` are the events themselves.
    """

    broadcast_id: UUID
    recipients: Sequence[UUID]
    versions: Sequence[int]
    positions: Sequence[int]
    at: datetime
    by: str

    def events(self) -> list[tuple[int, DomainEvent]]:
        """The (position, event) pairs recorded, for a plain fold."""
        return [
            (
                position,
                ErrorAcknowledged(
                    originator_id=rid,
                    originator_version=version,
                    timestamp=self.at,
                    acknowledged_by=self.by,
                ),
            )
            for rid, version, position in zip(
                self.recipients, self.versions, self.positions, strict=True
            )
        ]


@attrs.define
class Views:
    """A working set of every view, keyed for the fold; dirty sets tell a store what to write.

    ``monthly`` holds totals: a store loads the months a batch may count in
    (:func:`months_needed`) before folding it, and writes the totals back.
    """

    recipients: dict[UUID, RecipientRow] = attrs.field(factory=dict)
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
    dirty_monthly: set[MonthKey] = attrs.field(factory=set)
    dirty_message_ids: set[str] = attrs.field(factory=set)
    # Recipients held as acknowledgement facts, not rows (never in ``recipients``).
    acknowledging: dict[UUID, Acknowledging] = attrs.field(factory=dict)
    # Acknowledgements a store applied to its rows itself (see AcknowledgedRows).
    acknowledged_rows: AcknowledgedRows | None = None
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
        self.dirty_monthly.clear()
        self.dirty_message_ids.clear()


class _Kind(enum.Enum):
    SCHEDULED = 1
    RECIPIENT = 2
    BROADCAST = 3
    ACCOUNT = 4
    OTHER = 5


_KINDS: dict[type[DomainEvent], _Kind] = {}


def _kind(cls: type[DomainEvent]) -> _Kind:
    # What a batch needs loaded for an event depends only on its class: classify each
    # class once rather than walk isinstance checks for every event of a big batch.
    kind = _KINDS.get(cls)
    if kind is None:
        if issubclass(cls, Scheduled):
            kind = _Kind.SCHEDULED
        elif issubclass(cls, RecipientEvent):
            kind = _Kind.RECIPIENT
        elif issubclass(cls, BroadcastEvent) and not issubclass(cls, BroadcastScheduled):
            kind = _Kind.BROADCAST
        elif issubclass(cls, AccountConfigured):
            kind = _Kind.ACCOUNT
        else:
            kind = _Kind.OTHER
        _KINDS[cls] = kind
    return kind


@attrs.define
class Needs:
    """The stored views a batch reads before it is folded: which keys to load.

    Built from the batch alone (:meth:`of`); :meth:`add_rows` adds the broadcasts
    and accounts of the recipient rows once they are loaded. A recipient the
    batch schedules is new, so its row is not read. ``acknowledged_only`` are the
    recipients whose every event in the batch is an ``ErrorAcknowledged`` (a store
    may hold them as :class:`Acknowledging` facts instead of rows; they are in
    ``recipients`` too).
    """

    recipients: set[UUID] = attrs.field(factory=set)
    broadcasts: set[UUID] = attrs.field(factory=set)
    accounts: set[str] = attrs.field(factory=set)
    acknowledged_only: set[UUID] = attrs.field(factory=set)
    #: Every recipient the batch acknowledges, in the order of its first acknowledgement:
    #: the positions of its first and last one, and the last one (what its row ends with).
    acknowledgements: dict[UUID, tuple[int, int, ErrorAcknowledged]] = attrs.field(factory=dict)

    @classmethod
    def of(cls, batch: Sequence[tuple[int, DomainEvent]]) -> Needs:
        """What the batch's events name directly."""
        new: set[UUID] = set()
        acks: dict[UUID, tuple[int, int, ErrorAcknowledged]] = {}
        others: set[UUID] = set()
        broadcasts: set[UUID] = set()
        accounts: set[str] = set()
        kinds = _KINDS
        # One pass, one set insertion per recipient event (hashing a UUID runs Python
        # code); the sets are combined afterwards in C.
        for position, event in batch:
            event_type = type(event)
            kind = kinds.get(event_type) or _kind(event_type)
            if kind is _Kind.RECIPIENT:
                if event_type is ErrorAcknowledged:
                    rid = event.originator_id
                    seen = acks.get(rid)
                    ack: Any = event  # no cast() call per event
                    acks[rid] = (position if seen is None else seen[0], position, ack)
                else:
                    others.add(event.originator_id)
            elif kind is _Kind.SCHEDULED:
                scheduled: Any = event  # a Scheduled (no cast() call per event)
                new.add(scheduled.originator_id)
                broadcasts.add(scheduled.broadcast_id)
                accounts.add(scheduled.account_id)
            elif kind is _Kind.BROADCAST:
                broadcasts.add(event.originator_id)
            elif kind is _Kind.ACCOUNT:
                configured: Any = event
                accounts.add(configured.account_id)
        return cls(
            recipients=(acks.keys() | others) - new,
            broadcasts=broadcasts,
            accounts=accounts,
            acknowledged_only=(acks.keys() - others) - new if acks else set(),
            acknowledgements=acks,
        )

    def add_rows(self, views: Views) -> None:
        """Add the broadcast and account of every loaded recipient row."""
        for rid in self.recipients:
            row = views.recipients.get(rid)
            if row is not None:
                self.broadcasts.add(row.broadcast_id)
                self.accounts.add(row.account_id)


def months_needed(batch: Sequence[tuple[int, DomainEvent]], views: Views) -> set[MonthKey]:
    """The monthly totals the batch may add to, given the loaded rows and accounts.

    A first outcome counts in its account's month in the account's time zone;
    the zone may change within the batch, so every zone the account has in it
    is considered (a month loaded and left unchanged is not written).
    """
    zones: dict[str, set[str]] = {}
    accounts: dict[UUID, str] = {}
    keys: set[MonthKey] = set()
    outcomes = (Succeeded, Bounced)
    for _, event in batch:
        cls = type(event)
        if cls in outcomes:
            rid = event.originator_id
            row = views.recipients.get(rid)
            account_id = accounts.get(rid) if row is None else row.account_id
            if account_id is None:
                continue
            for zone in {views.timezone_of(account_id), *zones.get(account_id, ())}:
                year, month = month_of(event.timestamp, zone)
                keys.add((account_id, year, month))
        elif isinstance(event, AccountConfigured):
            zones.setdefault(event.account_id, set()).add(event.timezone)
        elif isinstance(event, Scheduled):
            accounts[event.originator_id] = event.account_id
    return keys


def _count_errors(counts: Counts, before: RecipientRow | None, after: RecipientRow) -> None:
    # The errors by reason and the unacknowledged ones follow the row's reason and flag.
    if before is None or before.reason != after.reason:
        if before is not None and before.reason is not None:
            counts.bump_reason(before.reason, -1)
        if after.reason is not None:
            counts.bump_reason(after.reason, +1)
    was_unack = before is not None and before.unacknowledged_error
    if after.unacknowledged_error != was_unack:
        counts.unacknowledged += 1 if after.unacknowledged_error else -1


def _project_acknowledging(
    facts: Acknowledging, event: ErrorAcknowledged, position: int, counts: Counts
) -> None:
    # What _project_recipient does for an ErrorAcknowledged, on the facts instead of
    # the row (the status and reason stay, the error becomes acknowledged), with the
    # counts of the facts' broadcast, which the caller marks dirty.
    facts.acknowledged_at = event.timestamp
    facts.version = event.originator_version
    facts.position = position
    if counts.first_position == 0:
        counts.first_position = position
    if position > counts.last_position:  # noqa: PLR1730 - per event: no call to max()
        counts.last_position = position
    if facts.unacknowledged:
        facts.unacknowledged = False
        counts.unacknowledged -= 1


def _acknowledged(views: Views, event: RecipientEvent, position: int) -> bool:
    # A recipient the store holds as acknowledgement facts, not as a row.
    facts = views.acknowledging.get(event.originator_id)
    if facts is None:
        return False
    if not isinstance(event, ErrorAcknowledged):
        raise ValueError(
            f"{type(event).__name__} for recipient {event.originator_id}, "
            "held for acknowledgements only"
        )
    bid = facts.broadcast_id
    views.dirty_counts.add(bid)
    _project_acknowledging(facts, event, position, views.counts_for(bid))
    return True


def _project_recipient(views: Views, event: RecipientEvent, position: int) -> None:
    rid = event.originator_id
    recipients = views.recipients
    before = recipients.get(rid)
    if before is None and views.acknowledging and _acknowledged(views, event, position):
        return
    after = advance(before, event, position)
    recipients[rid] = after
    views.dirty_recipients.add(rid)
    bid = after.broadcast_id
    counts = views.counts.get(bid)
    if counts is None:
        counts = views.counts[bid] = Counts()
    views.dirty_counts.add(bid)
    if counts.first_position == 0:
        counts.first_position = position
    if position > counts.last_position:  # noqa: PLR1730 - per event: no call to max()
        counts.last_position = position
    status = after.status
    if before is None:
        counts.bump(status, +1)
        if isinstance(event, Scheduled):
            return  # a new row: nothing else to count yet
    elif before.status is not status:
        counts.bump(before.status, -1)
        counts.bump(status, +1)
    if (
        before is None
        or before.status is not status
        or before.reason is not after.reason
        or before.acknowledged_at is not after.acknowledged_at
    ):
        # Otherwise the reason and the unacknowledged flag are the same objects as before.
        _count_errors(counts, before, after)
    if isinstance(event, Sent):
        views.message_ids[event.message_id] = rid
        views.dirty_message_ids.add(event.message_id)
        if counts.first_attempt_at is None:
            counts.first_attempt_at = event.timestamp
    outcome = outcome_of(before, after)
    if outcome:
        counts.last_outcome_at = event.timestamp
        if outcome == FIRST_OUTCOME:
            key = month_key(after, views.timezone_of(after.account_id))
            views.monthly[key] = views.monthly.get(key, 0) + 1
            views.dirty_monthly.add(key)


FIRST_OUTCOME = 1
"""A step that gives the recipient its first outcome: it counts in the monthly usage."""
DELIVERED_AGAIN = 2
"""A step into a delivered status after an earlier outcome (an error after a success)."""


def outcome_of(before: RecipientRow | None, after: RecipientRow) -> int:
    """Whether a step from row ``before`` to ``after`` records an outcome: 0 when it does
    not, else :data:`FIRST_OUTCOME` or :data:`DELIVERED_AGAIN`. Either one moves the
    broadcast's ``last_outcome_at`` (the send rate) to the event's time."""
    if after.first_outcome_at is not None and (before is None or before.first_outcome_at is None):
        return FIRST_OUTCOME
    if before is not None and before.status is not after.status and after.status.is_delivered:
        return DELIVERED_AGAIN
    return 0


def month_key(row: RecipientRow, timezone: str) -> MonthKey:
    """The month a row's first outcome counts in, in the account's time zone."""
    year, month = month_of(cast(datetime, row.first_outcome_at), timezone)
    return (row.account_id, year, month)


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
    if position > views.position:  # noqa: PLR1730 - per event: no call to max()
        views.position = position


def project_all(views: Views, batch: Sequence[tuple[int, DomainEvent]]) -> None:
    """Apply (position, event) pairs in order: :func:`project` for each, the same result.

    An acknowledgement of a recipient held as :class:`Acknowledging` facts is
    folded here without the per-event dispatch (a bulk acknowledgement is tens
    of thousands of them in a row, usually of one broadcast); every other event
    goes through :func:`project`.
    """
    bulk = views.acknowledged_rows
    if bulk is not None:
        _project_acknowledged_rows(views, bulk, batch)
        return
    held = views.acknowledging
    if not held:
        for position, event in batch:
            project(views, event, position)
        return
    ack_type = ErrorAcknowledged
    get = held.get
    last_bid: UUID | None = None
    counts = Counts()
    for position, event in batch:
        facts = get(event.originator_id) if type(event) is ack_type else None
        if facts is None:
            project(views, event, position)
            continue
        # The broadcast's counts are kept from the last event (one broadcast, mostly).
        bid = facts.broadcast_id
        if bid is not last_bid and bid != last_bid:
            counts = views.counts_for(bid)
            views.dirty_counts.add(bid)
            last_bid = bid
        ack: Any = event  # an ErrorAcknowledged (its type was checked above)
        _project_acknowledging(facts, ack, position, counts)
        if position > views.position:  # noqa: PLR1730
            views.position = position


def _count_acknowledged(
    views: Views, bid: UUID, unacknowledged: int, first: int, last: int, *, fresh: bool
) -> None:
    # What _project_acknowledging does to the counts, for acknowledgements of `bid`
    # recorded from `first` to `last`, `unacknowledged` of them of unacknowledged errors.
    # `fresh`: the counts had no position before the batch (whichever event of the
    # batch comes first gives it, as in the event-by-event fold).
    counts = views.counts_for(bid)
    views.dirty_counts.add(bid)
    if counts.first_position == 0 or (fresh and first < counts.first_position):
        counts.first_position = first
    if last > counts.last_position:  # noqa: PLR1730
        counts.last_position = last
    counts.unacknowledged -= unacknowledged


def _project_acknowledged_rows(
    views: Views, bulk: AcknowledgedRows, batch: Sequence[tuple[int, DomainEvent]]
) -> None:
    fresh = {bid for bid in bulk.broadcasts if views.counts_for(bid).first_position == 0}
    skipped = bulk.recipients
    views.acknowledged_rows = None
    if bulk.events < len(batch):
        rest = [
            (position, event)
            for position, event in batch
            if type(event) is not ErrorAcknowledged or event.originator_id not in skipped
        ]
        project_all(views, rest)
    for bid, (unacknowledged, first, last) in bulk.broadcasts.items():
        _count_acknowledged(views, bid, unacknowledged, first, last, fresh=bid in fresh)
    top = max((position for position, _ in batch), default=0)
    if top > views.position:  # noqa: PLR1730
        views.position = top


def project_bulk_acknowledgement(views: Views, bulk: BulkAcknowledgement) -> None:
    """What :func:`project` of ``bulk.events()`` does to ``views`` besides the rows.

    Given that every row was an unacknowledged error of the broadcast at the
    version before its event (a store checks it as it writes the rows' two
    columns): the counts lose that many unacknowledged errors and take the
    events' positions, and the views' position moves to the last event's.
    """
    if not bulk.positions:
        return
    first, last = min(bulk.positions), max(bulk.positions)
    counts = views.counts_for(bulk.broadcast_id)
    _count_acknowledged(
        views,
        bulk.broadcast_id,
        len(bulk.recipients),
        first,
        last,
        fresh=counts.first_position == 0,
    )
    if last > views.position:  # noqa: PLR1730
        views.position = last


def acknowledgeable(views: Views, bulk: BulkAcknowledgement) -> bool:
    """Whether every row of ``bulk`` is an unacknowledged error of its broadcast, at the
    version before its event (and named once): then :func:`project_bulk_acknowledgement`
    and the rows' two columns are what the fold of its events gives."""
    if len(set(bulk.recipients)) != len(bulk.recipients):
        return False
    for rid, version in zip(bulk.recipients, bulk.versions, strict=True):
        row = views.recipients.get(rid)
        if (
            row is None
            or row.broadcast_id != bulk.broadcast_id
            or not row.unacknowledged_error
            or row.version != version - 1
        ):
            return False
    return True


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


def recipient_reason(row: RecipientRow) -> str | None:
    """The reason shown and filtered on: an ERROR's reason, None for any other status."""
    return row.reason


def keyword_key(keyword: str) -> str:
    """A keyword normalised the way search texts are (NFKC, case-folded, no spaces)."""
    return "".join(ch for ch in search_key(keyword) if ch.isprintable())
