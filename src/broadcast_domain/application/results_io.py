"""Results out: result and error CSV exports, their file names, past status bars,
readable recipient histories and the log of exports.

The CSV bytes are the :class:`~broadcast_domain.ports.CsvCodec` port's business
(an adapter; the core never imports :mod:`csv`). This module decides who may
export, what goes in each row, in which time zone, what is recorded afterwards,
and how a past status bar is replayed from the event log. ``BroadcastService``
exposes each function as a thin method.

Decisions (also in ``docs/``):

- An export checks the permission, the ``headers`` choice, the encoding name
  and ``out`` before it writes a byte. It reads the projections at one
  position (``as_of``) and streams the rows in recipient order, so memory does
  not grow with the row count. After the last row it records
  ``ResultsExported`` (who, ``"results"`` or ``"errors"``, the position, the
  rows). If a cell cannot be written in the encoding (``CsvExportError``) or
  ``out`` fails, nothing is recorded and the error propagates; ``out`` then
  holds the rows before the bad one and the caller discards it (write to a
  temporary file and move it into place on success when that matters).
- Rows are streamed from the live projection: a recipient whose status changes
  while a long export runs shows the newer status. ``as_of`` is the position
  the export started from, a lower bound of what it shows.
- A past status bar (``summary(bid, as_of=moment)``) replays the broadcast's
  events whose timestamp is at or before the moment: per aggregate, the longest
  prefix of its events that are not later than the moment. It reads the stretch
  of the log between the broadcast's first and last recipient event (kept in
  its counts row) and decodes every event there, its own and any other
  broadcast's written in between: cost proportional to that stretch, memory
  proportional to the broadcast's recipients.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice, takewhile
from typing import TYPE_CHECKING, Any, BinaryIO, Final
from urllib.parse import quote
from uuid import UUID
from zoneinfo import ZoneInfo

from broadcast_domain.application.results import (
    ExportRecord,
    HistoryEntry,
    RecipientItem,
    Summary,
)
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import (
    Bounced,
    BroadcastEvent,
    Complained,
    Deferred,
    DomainEvent,
    ErrorAcknowledged,
    RecipientEvent,
    ResultsExported,
    Scheduled,
    Sent,
    Succeeded,
)
from broadcast_domain.domain.permissions import require_export
from broadcast_domain.domain.reasons import REASONS
from broadcast_domain.domain.recipient import Recipient
from broadcast_domain.domain.values import BroadcastStatus, require_aware
from broadcast_domain.errors import CsvExportError, InvalidInput
from broadcast_domain.projections.views import Counts, Views, estimated_completion, project

if TYPE_CHECKING:
    from broadcast_domain.application.service import BroadcastService

__all__ = [
    "RESULT_HEADERS",
    "content_disposition",
    "export_history",
    "export_results_csv",
    "export_unacknowledged_errors_csv",
    "format_time",
    "recipient_history",
    "results_file_name",
    "safe_file_stem",
    "summary_as_of",
]

RESULT_HEADERS: Final[dict[str, tuple[str, ...]]] = {
    "ja": ("状況", "エラー確認日時", "姓", "名", "宛先", "会社名", "詳細メッセージ", "取得日時"),
    "en": (
        "status",
        "error_acknowledged_at",
        "last_name",
        "first_name",
        "address",
        "company",
        "detail_message",
        "status_updated_at",
    ),
}
"""The result CSV's header row per ``headers=`` choice (SPEC 2, Results views)."""

_READ_CHUNK: Final = 5_000


# --- export ------------------------------------------------------------------------------


def format_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """``YYYY/MM/DD HH:MM:SS`` in ``zone``; empty for None."""
    if moment is None:
        return ""
    t = moment.astimezone(zone)
    # Not strftime: its %Y is not zero-padded for years before 1000 on every platform.
    return f"{t.year:04d}/{t.month:02d}/{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def _result_row(item: RecipientItem, zone: ZoneInfo) -> tuple[str, ...]:
    return (
        item.status.label,
        format_time(item.acknowledged_at, zone),
        item.last_name,
        item.first_name,
        item.address,
        item.company,
        item.detail_message,
        format_time(item.status_updated_at, zone),
    )


def _header_row(headers: object) -> tuple[str, ...]:
    row = RESULT_HEADERS.get(headers) if isinstance(headers, str) else None
    if row is None:
        raise InvalidInput(
            f"headers must be 'ja' (状況, エラー確認日時, ...) or 'en' (status, "
            f"error_acknowledged_at, ...), got {headers!r}",
            field="headers",
        )
    return row


def _check_out(out: object) -> BinaryIO:
    if isinstance(out, io.TextIOBase):
        raise InvalidInput(
            "out is a text file; open it in binary mode ('wb') or pass io.BytesIO()", field="out"
        )
    if not callable(getattr(out, "write", None)):
        raise InvalidInput(
            f"out must be a binary file (with a write method), got {type(out).__name__}",
            field="out",
        )
    return out  # type: ignore[return-value]


def _check_encoding(encoding: object) -> str:
    if not isinstance(encoding, str) or not encoding.strip():
        raise InvalidInput(
            f"encoding must be 'utf-8-sig' (the default), 'utf-8' or 'cp932', got {encoding!r}",
            field="encoding",
        )
    return encoding


def _zone_of(svc: BroadcastService, account_id: str) -> ZoneInfo:
    account = svc._views.account(account_id)
    return ZoneInfo(account.timezone if account is not None else "UTC")


def _address_at(items: Callable[[], Iterable[RecipientItem]], row: int) -> str | None:
    # Only on the error path: read the rows again up to the bad one rather than
    # remember addresses while streaming (that memory would grow with the rows).
    if row < 1:
        return None
    found = next(islice(items(), row - 1, None), None)
    return found.address if found is not None else None


def _export(
    svc: BroadcastService,
    broadcast_id: object,
    out: object,
    *,
    actor: object,
    encoding: object,
    headers: object,
    as_of: object,
    kind: str,
    doing: str,
    recipients: Callable[[UUID, int], Iterable[Recipient]],
) -> int:
    """Write ``recipients(broadcast id, as_of)`` as result rows and record the export."""
    b = svc._viewed_broadcast(broadcast_id)
    who = require_export(actor, b.inbox_id, b.source, doing)
    header = _header_row(headers)
    target = _check_out(out)
    enc = _check_encoding(encoding)
    position = svc._views.position()
    if as_of is None:
        as_of = position
    if isinstance(as_of, bool) or not isinstance(as_of, int) or not 0 <= as_of <= position:
        raise InvalidInput(
            f"as_of must be the .as_of of an unacknowledged_errors() page (0 to {position}), "
            f"got {as_of!r}",
            field="as_of",
        )
    upto = as_of

    def items() -> Iterator[RecipientItem]:
        return map(svc._item, recipients(b.id, upto))

    zone = _zone_of(svc, b.account_id)
    rows = (_result_row(item, zone) for item in items())
    try:
        written = svc._csv().write_rows(rows, target, header=header, encoding=enc)
    except CsvExportError as exc:
        address = _address_at(items, exc.row)
        whose = f" (recipient {address})" if address else ""
        raise CsvExportError(
            f"{exc}{whose}; the export was not recorded and the rows written so far "
            "are incomplete: discard them",
            row=exc.row,
            column=exc.column,
        ) from exc
    now = svc.now()
    svc._decide_and_put(
        lambda: (
            None,
            svc._load_broadcast(b.id).record_export(
                by=who.user_id, kind=kind, as_of=upto, rows=written, now=now
            ),
        )
    )
    return written


def export_results_csv(
    svc: BroadcastService,
    broadcast_id: object,
    out: object,
    *,
    actor: object,
    encoding: object,
    headers: object,
) -> int:
    """Write one row per recipient (position order); return the data rows written."""
    return _export(
        svc,
        broadcast_id,
        out,
        actor=actor,
        encoding=encoding,
        headers=headers,
        as_of=None,
        kind="results",
        doing="exporting the results",
        recipients=lambda bid, _as_of: svc._views.iter_recipients(bid),
    )


def export_unacknowledged_errors_csv(
    svc: BroadcastService,
    broadcast_id: object,
    out: object,
    *,
    actor: object,
    encoding: object,
    headers: object,
    as_of: object,
) -> int:
    """Write the errors recorded up to ``as_of`` that are still unacknowledged."""
    return _export(
        svc,
        broadcast_id,
        out,
        actor=actor,
        encoding=encoding,
        headers=headers,
        as_of=as_of,
        kind="errors",
        doing="exporting the unacknowledged errors",
        recipients=svc._views.iter_unacknowledged,
    )


# --- file names --------------------------------------------------------------------------

# Characters Windows refuses in file names; '"' and '\\' would also break a quoted
# Content-Disposition parameter.
_RESERVED = re.compile(r'[<>:"|?*\\/]')
_STRIPPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SLASHES = re.compile(r"[/\\]")
_IMPORT_SUFFIX = re.compile(r"\.(csv|txt|tsv)$", re.IGNORECASE)
_MAX_STEM_BYTES: Final = 150
_MAX_SUBJECT_CHARS: Final = 60


def _visible(text: str) -> str:
    return "".join(
        ch
        for ch in unicodedata.normalize("NFC", text)
        if unicodedata.category(ch) not in _STRIPPED_CATEGORIES
    )


def safe_file_stem(text: str, *, max_bytes: int = _MAX_STEM_BYTES) -> str:
    """``text`` made safe as part of a file name (possibly empty).

    Only the last path component is kept (``/`` and ``\\`` both separate);
    control, format (bidi overrides, zero-width), private-use and unassigned
    characters and line separators are removed; ``< > : " | ? *`` become ``_``;
    runs of whitespace become one space; leading and trailing spaces and dots
    are trimmed (a leading dot hides a file, Windows drops trailing ones); the
    result is NFC and cut to ``max_bytes`` UTF-8 bytes on a character boundary.
    """
    kept = _visible(_SLASHES.split(text)[-1])
    cleaned = " ".join(_RESERVED.sub("_", kept).split()).strip(" .")
    encoded = cleaned.encode("utf-8")[:max_bytes]
    return encoded.decode("utf-8", errors="ignore").strip(" .")


def results_file_name(svc: BroadcastService, broadcast_id: object, kind: str = "results") -> str:
    """The download name of a broadcast's result (or error) CSV; never empty.

    - CSV source: the imported file's name without its directory and a final
      ``.csv``/``.txt``/``.tsv``, plus ``_results.csv`` (``members.csv`` ->
      ``members_results.csv``; errors: ``members_errors.csv``).
    - Address-book source: the subject (first 60 characters) and the scheduled
      date in the account's time zone: ``お知らせ_20261102_results.csv``.
    - When nothing usable is left: ``broadcast_<first 8 hex digits of the id>``
      takes the place of the file name or subject.

    The name holds no path separator, control character, quote or backslash, so
    it is safe as a file name and inside a quoted Content-Disposition
    ``filename``; non-ASCII names need ``filename*`` (see
    :func:`content_disposition`).
    """
    if kind not in ("results", "errors"):
        raise InvalidInput(f"kind must be 'results' or 'errors', got {kind!r}", field="kind")
    b = svc._viewed_broadcast(broadcast_id)
    fallback = f"broadcast_{b.id.hex[:8]}"
    if b.source_kind == "csv":
        # The suffix goes before the dots are trimmed, so ".csv" alone leaves nothing.
        base = _visible(_SLASHES.split(b.source_ref)[-1]).strip()
        stem = safe_file_stem(_IMPORT_SUFFIX.sub("", base)) or fallback
    else:
        # A subject is not a path: its slashes are kept as underscores, not cut at.
        subject = _SLASHES.sub("_", b.subject[: _MAX_SUBJECT_CHARS * 2])
        subject = safe_file_stem(subject)[:_MAX_SUBJECT_CHARS]
        day = b.scheduled_at.astimezone(_zone_of(svc, b.account_id))
        stem = f"{subject.strip(' .') or fallback}_{day:%Y%m%d}"
    return f"{stem}_{kind}.csv"


def content_disposition(file_name: str) -> str:
    """A Content-Disposition value for a download (RFC 6266): an ASCII ``filename``
    fallback and the exact name as ``filename*`` (UTF-8, percent-encoded)."""
    clean = safe_file_stem(file_name) or "results.csv"
    ascii_name = "".join(ch if " " <= ch <= "~" else "_" for ch in clean)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(clean, safe='')}"


# --- the past status bar -----------------------------------------------------------------


def summary_of(b: Broadcast, c: Counts, now: datetime) -> Summary:
    """The status bar of ``b`` from its counts; the completion estimate only while it sends."""
    eta = (
        estimated_completion(c, now)
        if b.status in (BroadcastStatus.SENDING, BroadcastStatus.PAUSED)
        else None
    )
    return Summary(
        broadcast_id=b.id,
        status=b.status,
        recipients=c.recipients,
        scheduled=c.scheduled,
        sending=c.sending,
        succeeded=c.succeeded,
        errors=c.errors,
        delivered=c.delivered,
        unacknowledged_errors=c.unacknowledged,
        estimated_completion_at=eta,
        paused_reason=b.paused_reason,
        errors_by_reason=_by_display_order(c.errors_by_reason),
    )


def _by_display_order(errors_by_reason: dict[str, int]) -> dict[str, int]:
    # REASONS' order, so every screen lists the reasons the same way.
    return {name: errors_by_reason[name] for name in REASONS if errors_by_reason.get(name)}


def summary_as_of(svc: BroadcastService, broadcast_id: object, as_of: datetime) -> Summary:
    """The status bar as it stood at ``as_of``, replayed from the event log."""
    require_aware(as_of, "as_of")
    moment = as_of.astimezone(UTC)
    live = svc._viewed_broadcast(broadcast_id)
    bid = live.id
    own = [e for e in svc._log.get(bid) if isinstance(e, BroadcastEvent)]
    state = Broadcast.fold(takewhile(lambda e: e.timestamp <= moment, own))
    if state is None:
        raise InvalidInput(
            f"broadcast {bid} was created at {live.created_at.isoformat()}, after as_of "
            f"{as_of.isoformat()}: it had no status bar then",
            field="as_of",
        )
    span = svc._views.counts(bid)
    start = max(span.first_position - 1, 0)
    stop = span.last_position or svc._views.position()
    views = _replay_recipients(svc, bid, moment, start, stop)
    return summary_of(state, views.counts_for(bid), moment)


def _replay_recipients(
    svc: BroadcastService, bid: UUID, moment: datetime, start: int, stop: int
) -> Views:
    views = Views()
    members: set[UUID] = set()
    # An aggregate whose event is later than the moment stops there: its later
    # events are skipped even if their timestamps are earlier (a host may pass an
    # explicit ``now`` to dispatch_due), so each recipient is a prefix of its history.
    cut: set[UUID] = set()
    position = start
    while position < stop:
        batch = svc._log.read(position, min(_READ_CHUNK, stop - position))
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


# --- histories ---------------------------------------------------------------------------


def _reply(code: int, text: str) -> str:
    return f"{code} {text}".strip() if code else (text or "no reply")


def _describe_bounce(e: Bounced) -> str:
    kind = "permanent" if e.permanent else "temporary"
    if e.source == "smtp":
        what = "rejected by the receiving server"
    elif e.source == "retries":
        what = "gave up retrying"
    else:
        what = f"failure report received ({e.source})"
    return f"delivery error: {what}; status {e.status} ({kind}): {e.diagnostic}"


_DESCRIBE: Final[dict[type[RecipientEvent], Callable[[Any], tuple[str, str, str | None]]]] = {
    Scheduled: lambda e: (f"added to the broadcast as {e.address}", "", None),
    Sent: lambda e: (f"delivery attempt {e.attempt} started (Message-ID {e.message_id})", "", None),
    Succeeded: lambda e: (
        f"accepted by the receiving server: {_reply(e.reply_code, e.reply_text)}",
        _reply(e.reply_code, e.reply_text),
        None,
    ),
    Deferred: lambda e: (
        f"attempt {e.attempt} not accepted yet ({_reply(e.reply_code, e.reply_text)}); "
        f"next try after {e.retry_at.isoformat()}",
        _reply(e.reply_code, e.reply_text),
        None,
    ),
    Bounced: lambda e: (_describe_bounce(e), e.diagnostic, None),
    ErrorAcknowledged: lambda e: (
        f"error acknowledged by {e.acknowledged_by}",
        "",
        e.acknowledged_by,
    ),
    Complained: lambda e: (
        f"complaint received ({e.feedback_type}); not a delivery error",
        e.feedback_type,
        None,
    ),
}


def recipient_history(
    svc: BroadcastService, broadcast_id: object, address: str
) -> list[HistoryEntry]:
    """The recipient's events, oldest first, with the status after each and a description."""
    events: Sequence[DomainEvent] = svc.history(broadcast_id, address)  # type: ignore[arg-type]
    entries: list[HistoryEntry] = []
    state: Recipient | None = None
    for event in events:
        if not isinstance(event, RecipientEvent):
            continue
        state = event.apply(state)
        describe = _DESCRIBE.get(type(event))
        description, detail, actor = (
            describe(event) if describe else (type(event).__name__, "", None)
        )
        entries.append(
            HistoryEntry(
                at=event.timestamp,
                event=type(event).__name__,
                status=state.status,
                description=description,
                detail=detail,
                actor=actor,
            )
        )
    return entries


def export_history(svc: BroadcastService, broadcast_id: object) -> list[ExportRecord]:
    """Every recorded export of the broadcast, oldest first."""
    b = svc._load_broadcast(broadcast_id)
    return [
        ExportRecord(
            at=e.timestamp, exported_by=e.exported_by, kind=e.kind, as_of=e.as_of, rows=e.rows
        )
        for e in svc._log.get(b.id)
        if isinstance(e, ResultsExported)
    ]
