"""Results in and out, the pure part: recipient CSV import, result CSV rows and
their checks, download file names, status bars from counts, readable recipient
histories.

The CSV bytes are the :class:`~broadcast_domain.ports.CsvCodec` port's business
(an adapter; the core never imports :mod:`csv`). What is read and recorded
around an export is :class:`~broadcast_domain.application.reading.Results`'.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, BinaryIO, Final
from urllib.parse import quote
from zoneinfo import ZoneInfo

from broadcast_domain.application.results import (
    HistoryEntry,
    Summary,
)
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import (
    Bounced,
    Complained,
    Deferred,
    DomainEvent,
    ErrorAcknowledged,
    RecipientEvent,
    Scheduled,
    Sent,
    Succeeded,
)
from broadcast_domain.domain.reasons import REASONS
from broadcast_domain.domain.recipient import Recipient
from broadcast_domain.domain.values import BroadcastStatus, DeliveryStatus
from broadcast_domain.errors import InvalidInput
from broadcast_domain.projections.rows import ResultCells
from broadcast_domain.projections.views import Counts, estimated_completion

__all__ = [
    "RESULT_HEADERS",
    "check_encoding",
    "check_out",
    "content_disposition",
    "format_time",
    "header_row",
    "recipient_history",
    "result_rows",
    "results_file_stem",
    "safe_file_stem",
    "summary_of",
    "time_formatter",
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

# --- export ------------------------------------------------------------------------------


def format_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """``YYYY/MM/DD HH:MM:SS`` in ``zone``; empty for None."""
    if moment is None:
        return ""
    t = moment.astimezone(zone)
    # Not strftime: its %Y is not zero-padded for years before 1000 on every platform.
    return f"{t.year:04d}/{t.month:02d}/{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


class _Formatted(dict[datetime | None, str]):
    """Formatted times by moment: a hit is a plain dict lookup, a miss formats it."""

    def __init__(self, zone: ZoneInfo, keep: int) -> None:
        super().__init__({None: ""})
        self._zone = zone
        self._keep = keep

    def __missing__(self, moment: datetime | None) -> str:
        if len(self) > self._keep:
            self.clear()
            self[None] = ""
        text = self[moment] = format_time(moment, self._zone)
        return text


def time_formatter(zone: ZoneInfo, *, keep: int = 64) -> Callable[[datetime | None], str]:
    """``format_time`` in ``zone``, remembering up to ``keep`` recent answers.

    A broadcast's outcomes are recorded in batches that share one time, so an
    export formats the same few moments over and over; the answer is a dict's
    own lookup (no Python call on a hit), with the formatting on a miss.
    """
    return _Formatted(zone, keep).__getitem__


def result_rows(
    cells: Iterable[ResultCells], times: Callable[[datetime | None], str]
) -> Iterator[tuple[str, ...]]:
    """Result CSV rows (SPEC column order) from recipients' values; ``times`` formats
    their times (a :func:`time_formatter`). Lazy: one row at a time."""
    labels = {status: status.label for status in DeliveryStatus}

    def row(values: ResultCells) -> tuple[str, ...]:
        status, acknowledged_at, last_name, first_name, address, company, detail, at = values
        return (
            labels[status],
            times(acknowledged_at),
            last_name,
            first_name,
            address,
            company,
            detail,
            times(at),
        )

    return map(row, cells)


def header_row(headers: object) -> tuple[str, ...]:
    row = RESULT_HEADERS.get(headers) if isinstance(headers, str) else None
    if row is None:
        raise InvalidInput(
            f"headers must be 'ja' (状況, エラー確認日時, ...) or 'en' (status, "
            f"error_acknowledged_at, ...), got {headers!r}",
            field="headers",
        )
    return row


def check_out(out: object) -> BinaryIO:
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


def check_encoding(encoding: object) -> str:
    if not isinstance(encoding, str) or not encoding.strip():
        raise InvalidInput(
            f"encoding must be 'utf-8-sig' (the default), 'utf-8' or 'cp932', got {encoding!r}",
            field="encoding",
        )
    return encoding


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


def results_file_stem(b: Broadcast, zone: ZoneInfo) -> str:
    """The download name of a broadcast's result (or error) CSV, before ``_<kind>.csv``.

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
    fallback = f"broadcast_{b.id.hex[:8]}"
    if b.source_kind == "csv":
        # The suffix goes before the dots are trimmed, so ".csv" alone leaves nothing.
        base = _visible(_SLASHES.split(b.source_ref)[-1]).strip()
        stem = safe_file_stem(_IMPORT_SUFFIX.sub("", base)) or fallback
    else:
        # A subject is not a path: its slashes are kept as underscores, not cut at.
        subject = _SLASHES.sub("_", b.subject[: _MAX_SUBJECT_CHARS * 2])
        subject = safe_file_stem(subject)[:_MAX_SUBJECT_CHARS]
        day = b.scheduled_at.astimezone(zone)
        stem = f"{subject.strip(' .') or fallback}_{day:%Y%m%d}"
    return stem


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


def recipient_history(events: Sequence[DomainEvent]) -> list[HistoryEntry]:
    """The recipient's events, oldest first, with the status after each and a description."""
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
