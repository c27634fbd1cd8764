"""The read side: status bars, broadcast lists, recipient pages, the error worklist,
result exports, their file names, the export log and monthly usage.

:class:`Results` is handed what it reads in its constructor (the view store,
the clock, the CSV codec, an event reader) plus two callables: ``catch_up``
(brings the views up to the log before a read, so a caller reads its own
writes) and ``record_export`` (records ``ResultsExported`` after an export).
It never sees the facade. A read travels facade -> Results -> view store and
returns; exports stream the views' recipient rows (columns, no decoding of
aggregate state) through the CSV codec.

Decisions (also in ``docs/``):

- An export checks the permission, the ``headers`` choice, the encoding name
  and ``out`` before it writes a byte. It reads the projections at one
  position (``as_of``) and streams the rows in recipient order, so memory does
  not grow with the row count. After the last row it records
  ``ResultsExported`` (who, ``"results"`` or ``"errors"``, the position, the
  rows). If a cell cannot be written in the encoding (``CsvExportError``) or
  ``out`` fails, nothing is recorded and the error propagates; ``out`` then
  holds the rows before the bad one and the caller discards it.
- Rows are streamed from the live projection: a recipient whose status changes
  while a long export runs shows the newer status. ``as_of`` is the position
  the export started from, a lower bound of what it shows.
- A past status bar (``summary(bid, as_of=moment)``) replays the broadcast's
  events whose timestamp is at or before the moment: per aggregate, the longest
  prefix of its events that are not later than the moment. It reads the stretch
  of the log between the broadcast's first and last recipient event (kept in
  its counts row): cost proportional to that stretch, memory proportional to
  the broadcast's recipients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from itertools import islice, takewhile
from typing import Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

from broadcast_domain.application.results import (
    BroadcastItem,
    ErrorPage,
    ExportRecord,
    MonthlyUsage,
    Page,
    RecipientItem,
    Summary,
)
from broadcast_domain.application.results_io import (
    check_encoding,
    check_out,
    header_row,
    result_rows,
    results_file_stem,
    summary_of,
    time_formatter,
)
from broadcast_domain.application.validation import check_paging, require_broadcast_id, require_text
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import (
    BroadcastEvent,
    DomainEvent,
    RecipientEvent,
    ResultsExported,
    Scheduled,
)
from broadcast_domain.domain.permissions import require_export
from broadcast_domain.domain.reasons import is_reason
from broadcast_domain.domain.values import (
    BroadcastStatus,
    BroadcastView,
    DeliveryStatus,
    require_aware,
)
from broadcast_domain.errors import CsvExportError, InvalidInput, UnknownBroadcast
from broadcast_domain.ports import CsvCodec, ViewStore
from broadcast_domain.projections.rows import RecipientRow, ResultCells
from broadcast_domain.projections.views import Views, keyword_key, project

__all__ = ["EventReader", "Results", "item_of"]

_READ_CHUNK = 5_000

_VIEW_STATUSES: dict[BroadcastView, frozenset[BroadcastStatus] | None] = {
    BroadcastView.ALL: None,
    BroadcastView.SENDING: frozenset({BroadcastStatus.SENDING, BroadcastStatus.PAUSED}),
    BroadcastView.SENT: frozenset({BroadcastStatus.SENT}),
}


class EventReader(Protocol):
    """What the read side reads from the event log."""

    def get(self, aggregate_id: UUID) -> list[DomainEvent]:
        """One aggregate's events, oldest first."""
        ...

    def read(self, after: int, limit: int) -> list[tuple[int, DomainEvent]]:
        """Up to ``limit`` (position, event) pairs after ``after``."""
        ...


RecordExport = Callable[[UUID, str, str, int, int], None]
"""``record_export(broadcast id, user id, kind, as_of, rows)``: record ResultsExported."""


def item_of(r: RecipientRow) -> RecipientItem:
    """The recipient list's item for a view row."""
    return RecipientItem(
        address=r.address,
        last_name=r.last_name,
        first_name=r.first_name,
        company=r.company,
        status=r.status,
        detail_message=r.detail_message,
        acknowledged_at=r.acknowledged_at,
        status_updated_at=r.status_updated_at,
        contact_id=r.contact_id,
        reason=r.reason,
    )


class Results:
    """Summaries, pages, exports and the other reads of the views."""

    def __init__(
        self,
        *,
        views: ViewStore,
        clock: Callable[[], datetime],
        csv: Callable[[], CsvCodec],
        events: EventReader,
        catch_up: Callable[[], int],
        record_export: RecordExport,
    ) -> None:
        self._views = views
        self._clock = clock
        self._csv = csv
        self._events = events
        self._catch_up = catch_up
        self._record_export = record_export

    def broadcast(self, broadcast_id: object) -> Broadcast:
        """A broadcast as the views hold it, after a catch-up (UnknownBroadcast if none)."""
        bid = require_broadcast_id(broadcast_id)
        self._catch_up()
        b = self._views.broadcast(bid)
        if b is None:
            raise UnknownBroadcast(f"no broadcast has id {bid}")
        return b

    # --- status bars and lists -----------------------------------------------------------

    def summary(self, broadcast_id: object, as_of: datetime | None = None) -> Summary:
        """The status bar now, or as it stood at ``as_of`` (replayed from the log)."""
        if as_of is not None:
            return self._summary_as_of(broadcast_id, as_of)
        b = self.broadcast(broadcast_id)
        return summary_of(b, self._views.counts(b.id), self._clock())

    def list_broadcasts(
        self, inbox_id: object, view: object, page: object, per_page: object
    ) -> Page[BroadcastItem]:
        """An inbox's broadcasts, newest created first: all, sending (incl. paused) or sent."""
        inbox = require_text(inbox_id, "inbox_id")
        number, size = check_paging(page, per_page)
        if not isinstance(view, BroadcastView):
            raise InvalidInput("view must be a BroadcastView (ALL, SENDING or SENT)", field="view")
        self._catch_up()
        rows, total = self._views.list_broadcasts(
            inbox, _VIEW_STATUSES[view], (number - 1) * size, size
        )
        items = []
        for b in rows:
            c = self._views.counts(b.id)
            items.append(
                BroadcastItem(
                    broadcast_id=b.id,
                    inbox_id=b.inbox_id,
                    subject=b.subject,
                    status=b.status,
                    created_at=b.created_at,
                    scheduled_at=b.scheduled_at,
                    recipients=c.recipients,
                    delivered=c.delivered,
                    errors=c.errors,
                )
            )
        return Page(items=items, total=total, page=number, per_page=size)

    def recipients(
        self,
        broadcast_id: object,
        *,
        keyword: object,
        status: object,
        page: object,
        per_page: object,
        reason: object,
    ) -> Page[RecipientItem]:
        """A page of the recipient list, filtered by keyword, status and reason."""
        b = self.broadcast(broadcast_id)
        number, size = check_paging(page, per_page)
        if status is not None and not isinstance(status, DeliveryStatus):
            raise InvalidInput("status must be a DeliveryStatus or None", field="status")
        if reason is not None and not (isinstance(reason, str) and is_reason(reason)):
            raise InvalidInput(
                f"reason {reason!r} is not one of REASONS (e.g. 'userunknown', 'mailboxfull')",
                field="reason",
            )
        if keyword is not None and not isinstance(keyword, str):
            raise InvalidInput("keyword must be a string or None", field="keyword")
        key = keyword_key(keyword) if keyword else None
        rows, total = self._views.recipient_page(
            b.id,
            keyword=key or None,
            status=status,
            reason=reason,
            offset=(number - 1) * size,
            limit=size,
        )
        return Page(items=[item_of(r) for r in rows], total=total, page=number, per_page=size)

    def unacknowledged_errors(
        self, broadcast_id: object, page: object, per_page: object
    ) -> ErrorPage[RecipientItem]:
        """A page of errors nobody has checked, with ``as_of`` for acknowledging them all."""
        b = self.broadcast(broadcast_id)
        number, size = check_paging(page, per_page)
        as_of = self._views.position()
        rows, total = self._views.error_page(
            b.id, as_of=as_of, offset=(number - 1) * size, limit=size
        )
        return ErrorPage(
            items=[item_of(r) for r in rows], total=total, page=number, per_page=size, as_of=as_of
        )

    def monthly_usage(self, account_id: object, *, year: object, month: object) -> MonthlyUsage:
        """The month's send count (delivered recipients by first outcome) against the limit."""
        aid = require_text(account_id, "account_id")
        if not (isinstance(year, int) and isinstance(month, int) and 1 <= month <= 12):
            raise InvalidInput(
                f"year/month {year!r}/{month!r} is not a calendar month", field="month"
            )
        self._catch_up()
        account = self._views.account(aid)
        return MonthlyUsage(
            account_id=aid,
            year=year,
            month=month,
            count=self._views.monthly_count(aid, year, month),
            limit=account.monthly_limit if account else None,
        )

    # --- exports -------------------------------------------------------------------------

    def export_results_csv(
        self, broadcast_id: object, out: object, *, actor: object, encoding: object, headers: object
    ) -> int:
        """Write one row per recipient (position order); return the data rows written."""
        return self._export(
            broadcast_id,
            out,
            actor=actor,
            encoding=encoding,
            headers=headers,
            as_of=None,
            kind="results",
            doing="exporting the results",
            rows=lambda bid, _as_of: self._views.iter_result_cells(bid),
        )

    def export_unacknowledged_errors_csv(
        self,
        broadcast_id: object,
        out: object,
        *,
        actor: object,
        encoding: object,
        headers: object,
        as_of: object,
    ) -> int:
        """Write the errors recorded up to ``as_of`` that are still unacknowledged."""
        return self._export(
            broadcast_id,
            out,
            actor=actor,
            encoding=encoding,
            headers=headers,
            as_of=as_of,
            kind="errors",
            doing="exporting the unacknowledged errors",
            rows=lambda bid, upto: self._views.iter_result_cells(bid, unacknowledged_as_of=upto),
        )

    def _zone_of(self, account_id: str) -> ZoneInfo:
        account = self._views.account(account_id)
        return ZoneInfo(account.timezone if account is not None else "UTC")

    def _export(
        self,
        broadcast_id: object,
        out: object,
        *,
        actor: object,
        encoding: object,
        headers: object,
        as_of: object,
        kind: str,
        doing: str,
        rows: Callable[[UUID, int], Iterable[ResultCells]],
    ) -> int:
        """Write ``rows(broadcast id, as_of)`` as result rows and record the export."""
        b = self.broadcast(broadcast_id)
        who = require_export(actor, b.inbox_id, b.source, doing)
        header = header_row(headers)
        target = check_out(out)
        enc = check_encoding(encoding)
        position = self._views.position()
        if as_of is None:
            as_of = position
        if isinstance(as_of, bool) or not isinstance(as_of, int) or not 0 <= as_of <= position:
            raise InvalidInput(
                f"as_of must be the .as_of of an unacknowledged_errors() page "
                f"(0 to {position}), got {as_of!r}",
                field="as_of",
            )
        upto = as_of
        times = time_formatter(self._zone_of(b.account_id))
        lines = result_rows(rows(b.id, upto), times)
        try:
            written = self._csv().write_rows(lines, target, header=header, encoding=enc)
        except CsvExportError as exc:
            address = _address_at(lambda: rows(b.id, upto), exc.row)
            whose = f" (recipient {address})" if address else ""
            raise CsvExportError(
                f"{exc}{whose}; the export was not recorded and the rows written so far "
                "are incomplete: discard them",
                row=exc.row,
                column=exc.column,
            ) from exc
        self._record_export(b.id, who.user_id, kind, upto, written)
        return written

    def results_file_name(self, broadcast_id: object, kind: str = "results") -> str:
        """The download name of the result (or ``kind="errors"``) CSV; safe, never empty."""
        if kind not in ("results", "errors"):
            raise InvalidInput(f"kind must be 'results' or 'errors', got {kind!r}", field="kind")
        b = self.broadcast(broadcast_id)
        return f"{results_file_stem(b, self._zone_of(b.account_id))}_{kind}.csv"

    def export_history(self, broadcast_id: object) -> list[ExportRecord]:
        """Every recorded export of the broadcast, oldest first (from the log)."""
        bid = require_broadcast_id(broadcast_id)
        events = self._events.get(bid)
        if not any(isinstance(e, BroadcastEvent) for e in events):
            raise UnknownBroadcast(f"no broadcast has id {bid}")
        return [
            ExportRecord(
                at=e.timestamp, exported_by=e.exported_by, kind=e.kind, as_of=e.as_of, rows=e.rows
            )
            for e in events
            if isinstance(e, ResultsExported)
        ]

    # --- the past status bar -------------------------------------------------------------

    def _summary_as_of(self, broadcast_id: object, as_of: datetime) -> Summary:
        require_aware(as_of, "as_of")
        moment = as_of.astimezone(UTC)
        live = self.broadcast(broadcast_id)
        bid = live.id
        own = [e for e in self._events.get(bid) if isinstance(e, BroadcastEvent)]
        state = Broadcast.fold(takewhile(lambda e: e.timestamp <= moment, own))
        if state is None:
            raise InvalidInput(
                f"broadcast {bid} was created at {live.created_at.isoformat()}, after as_of "
                f"{as_of.isoformat()}: it had no status bar then",
                field="as_of",
            )
        span = self._views.counts(bid)
        start = max(span.first_position - 1, 0)
        stop = span.last_position or self._views.position()
        views = self._replay_recipients(bid, moment, start, stop)
        return summary_of(state, views.counts_for(bid), moment)

    def _replay_recipients(self, bid: UUID, moment: datetime, start: int, stop: int) -> Views:
        views = Views()
        members: set[UUID] = set()
        # An aggregate whose event is later than the moment stops there: its later
        # events are skipped even if their timestamps are earlier (a host may pass an
        # explicit ``now`` to dispatch_due), so each recipient is a prefix of its history.
        cut: set[UUID] = set()
        position = start
        while position < stop:
            batch = self._events.read(position, min(_READ_CHUNK, stop - position))
            if not batch:
                break
            for pos, event in batch:
                if pos > stop:
                    break
                if not isinstance(event, RecipientEvent):
                    continue
                rid = event.originator_id
                if isinstance(event, Scheduled):
                    if event.broadcast_id != bid:
                        continue
                    members.add(rid)
                elif rid not in members:
                    continue
                if rid in cut:
                    continue
                if event.timestamp > moment:
                    cut.add(rid)
                    continue
                project(views, event, pos)
            views.clear_dirty()
            position = batch[-1][0]
        return views


def _address_at(rows: Callable[[], Iterable[ResultCells]], row: int) -> str | None:
    # Only on the error path: read the rows again up to the bad one rather than
    # remember addresses while streaming (that memory would grow with the rows).
    if row < 1:
        return None
    found = next(islice(iter(rows()), row - 1, None), None)
    return found[4] if found is not None else None
