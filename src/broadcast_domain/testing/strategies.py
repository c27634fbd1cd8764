"""Hypothesis strategies for broadcast-domain values, reports, raw messages, files and histories.

Use them to test a host's code against this library, as our own suite does:

- values: :func:`addresses`, :func:`contacts`, :data:`japanese_names`,
  :data:`latin_names`, :func:`aware_datetimes`, :data:`status_codes`;
- reports: :func:`bounce_reports` (normalised), :func:`dsn_messages` (the raw
  RFC 3464 e-mail about a given report, in its variants);
- files: :func:`recipient_csv_files` (a recipient CSV in each supported
  encoding and header language, with the contacts and the bad lines an import
  must find);
- events: :func:`domain_events` (any event, arbitrary fields) and
  :func:`histories` (whole histories valid by construction, written by the real
  aggregates' command methods).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import attrs
from hypothesis import strategies as st

from broadcast_domain.domain import events as ev
from broadcast_domain.domain import unmatched as um
from broadcast_domain.domain.values import BounceReport, Contact, normalise_address
from broadcast_domain.testing.histories import History, HistoryBuilder
from broadcast_domain.testing.reports import CHARSETS, ORIGINAL_FORMS, dsn_message

__all__ = [
    "RecipientCsvFile",
    "addresses",
    "aware_datetimes",
    "bounce_reports",
    "contacts",
    "domain_events",
    "dsn_messages",
    "histories",
    "japanese_names",
    "latin_names",
    "recipient_csv_files",
    "status_codes",
]

_LOCAL_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_LOCAL_SPECIALS = "!#$%&'*+/=?^_`{|}~-"


def aware_datetimes(
    min_value: datetime = datetime(2020, 1, 1), max_value: datetime = datetime(2035, 1, 1)
) -> st.SearchStrategy[datetime]:
    """Aware UTC datetimes."""
    return st.datetimes(min_value=min_value, max_value=max_value, timezones=st.just(UTC))


@st.composite
def addresses(draw: Any) -> str:
    """Valid but sometimes odd addresses: dots, plus tags, specials, mixed case, subdomains."""
    atom = st.text(
        alphabet=_LOCAL_CHARS + _LOCAL_CHARS.upper() + _LOCAL_SPECIALS, min_size=1, max_size=12
    )
    local = ".".join(draw(st.lists(atom, min_size=1, max_size=3)))
    labels = draw(
        st.lists(
            st.text(alphabet=_LOCAL_CHARS, min_size=1, max_size=10),
            min_size=1,
            max_size=3,
        )
    )
    tld = draw(st.sampled_from(["com", "jp", "co.jp", "example", "org", "net"]))
    return f"{local[:64]}@{'.'.join(labels)}.{tld}"


japanese_names = st.text(
    alphabet=st.sampled_from(
        list("山田佐藤鈴木高橋田中伊藤渡辺太郎花子一郎次郎さくらアイウエオｱｲｳｴｵ")
    ),
    min_size=0,
    max_size=6,
)
"""Japanese names, including half-width katakana."""

latin_names = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll"), max_codepoint=0x24F),
    min_size=0,
    max_size=12,
)
"""Latin-script names, accents included."""


@st.composite
def contacts(draw: Any) -> Contact:
    """A contact with a Japanese or Latin name and an optional company."""
    names = draw(st.sampled_from([japanese_names, latin_names]))
    return Contact(
        draw(addresses()),
        last_name=draw(names),
        first_name=draw(names),
        company=draw(st.sampled_from(["", "ACME", "株式会社テスト", "ＡＣＭＥ", "Ümlaut GmbH"])),
        contact_id=draw(st.none() | st.text(alphabet="abc123", min_size=1, max_size=8)),
    )


status_codes = st.sampled_from(
    ["5.1.1", "5.2.2", "5.7.1", "5.0.0", "4.2.2", "4.4.7", "550", "554", "4.7.0"]
)
"""Enhanced status codes and SMTP reply codes as reports carry them."""


@st.composite
def bounce_reports(
    draw: Any,
    recipient: str | None = None,
    verp_token: str | None = None,
    message_id: str | None = None,
    actions: st.SearchStrategy[str] | None = None,
    reported_at: st.SearchStrategy[datetime] | None = None,
) -> BounceReport:
    """A normalised report: failed (permanent or temporary), delayed, delivered, autoreply..."""
    status = draw(status_codes)
    return BounceReport(
        recipient=recipient if recipient is not None else draw(addresses()),
        status=status,
        diagnostic=draw(st.text(max_size=40)),
        permanent=status.startswith("5"),
        reported_at=draw(reported_at if reported_at is not None else aware_datetimes()),
        verp_token=verp_token,
        message_id=message_id,
        report_id=draw(st.none() | st.text(alphabet="0123456789abcdef", min_size=4, max_size=12)),
        action=draw(
            actions
            if actions is not None
            else st.sampled_from(
                ["failed", "failed", "failed", "delayed", "autoreply", "complaint"]
            )
        ),
    )


def _base(draw: Any) -> dict[str, Any]:
    return {
        "originator_id": draw(st.uuids()),
        "originator_version": draw(st.integers(min_value=1, max_value=10_000)),
        "timestamp": draw(aware_datetimes()),
    }


_text = st.text(max_size=30)


@st.composite
def domain_events(draw: Any) -> ev.DomainEvent:
    """Any event of any type, with arbitrary (type-correct) field values."""
    base = _base(draw)
    kind = draw(st.sampled_from(sorted(_BUILDERS)))
    event: ev.DomainEvent = _BUILDERS[kind](draw, base)
    return event


def _sched(draw: Any, base: dict[str, Any]) -> ev.DomainEvent:
    c = draw(contacts())
    return ev.Scheduled(
        **base,
        broadcast_id=draw(st.uuids()),
        account_id=draw(_text),
        address=c.address,
        last_name=c.last_name,
        first_name=c.first_name,
        company=c.company,
        contact_id=c.contact_id,
        position=draw(st.integers(0, 10**6)),
    )


_BUILDERS: dict[str, Any] = {
    "Scheduled": _sched,
    "Sent": lambda d, b: ev.Sent(
        **b, attempt=d(st.integers(1, 9)), message_id=d(_text), lease_until=d(aware_datetimes())
    ),
    "Succeeded": lambda d, b: ev.Succeeded(
        **b, attempt=d(st.integers(1, 9)), reply_code=d(st.integers(200, 299)), reply_text=d(_text)
    ),
    "Deferred": lambda d, b: ev.Deferred(
        **b,
        attempt=d(st.integers(1, 9)),
        reply_code=d(st.integers(0, 499)),
        reply_text=d(_text),
        retry_at=d(aware_datetimes()),
    ),
    "Bounced": lambda d, b: ev.Bounced(
        **b,
        source=d(_text),
        status=d(status_codes),
        diagnostic=d(_text),
        permanent=d(st.booleans()),
        report_id=d(_text),
        reported_at=d(aware_datetimes()),
        received_at=d(aware_datetimes()),
    ),
    "ErrorAcknowledged": lambda d, b: ev.ErrorAcknowledged(**b, acknowledged_by=d(_text)),
    "Complained": lambda d, b: ev.Complained(
        **b, report_id=d(_text), feedback_type=d(_text), received_at=d(aware_datetimes())
    ),
    "BroadcastScheduled": lambda d, b: ev.BroadcastScheduled(
        **b,
        account_id=d(_text),
        inbox_id=d(_text),
        sender=d(addresses()),
        subject=d(_text),
        text_body=d(_text),
        html_body=d(st.none() | _text),
        source_kind=d(st.sampled_from(["csv", "address_book"])),
        source_ref=d(_text),
        scheduled_at=d(aware_datetimes()),
        created_by=d(_text),
        recipient_count=d(st.integers(1, 10**6)),
    ),
    "SendingStarted": lambda d, b: ev.SendingStarted(**b),
    "BroadcastCompleted": lambda d, b: ev.BroadcastCompleted(**b),
    "BroadcastCancelled": lambda d, b: ev.BroadcastCancelled(**b, cancelled_by=d(_text)),
    "BroadcastPaused": lambda d, b: ev.BroadcastPaused(**b, reason=d(_text)),
    "BroadcastResumed": lambda d, b: ev.BroadcastResumed(**b),
    "ResultsExported": lambda d, b: ev.ResultsExported(
        **b,
        exported_by=d(_text),
        kind=d(_text),
        as_of=d(st.integers(0, 10**9)),
        rows=d(st.integers(0, 10**6)),
    ),
    "SendsReserved": lambda d, b: ev.SendsReserved(
        **b,
        account_id=d(_text),
        year=d(st.integers(2000, 2100)),
        month=d(st.integers(1, 12)),
        count=d(st.integers(1, 10**6)),
    ),
    "BounceUnmatched": lambda d, b: um.BounceUnmatched(
        **b,
        raw=d(st.binary(max_size=200)),
        received_at=d(aware_datetimes()),
        reason=d(_text),
        envelope_recipient=d(st.none() | addresses()),
    ),
    "UnmatchedResolved": lambda d, b: um.UnmatchedResolved(**b, outcome=d(_text)),
    "AccountConfigured": lambda d, b: ev.AccountConfigured(
        **b,
        account_id=d(_text),
        monthly_limit=d(st.none() | st.integers(0, 10**7)),
        timezone=d(st.sampled_from(["UTC", "Asia/Tokyo", "America/New_York"])),
        send_rate=d(st.none() | st.floats(min_value=0.1, max_value=1000)),
    ),
}


# --------------------------------------------------------------------------- raw reports


@st.composite
def dsn_messages(
    draw: Any,
    report: BounceReport,
    *,
    verp_address: str | None = None,
    original_message_id: str | None = None,
) -> bytes:
    """The raw RFC 3464 DSN about ``report``, in a drawn variant.

    Variants: CRLF or LF line endings; the notice (and a non-ASCII diagnostic)
    in UTF-8, ISO-2022-JP, Shift_JIS or US-ASCII (UTF-8 where the charset
    cannot hold the text); the original as ``text/rfc822-headers``, as a whole
    ``message/rfc822`` or left out. See :func:`broadcast_domain.testing.reports.dsn_message`
    for the layout and for what a parser must read back.
    """
    return dsn_message(
        report,
        verp_address=verp_address,
        original_message_id=original_message_id,
        line_ending=draw(st.sampled_from(["\r\n", "\n"])),
        charset=draw(st.sampled_from(CHARSETS)),
        original=draw(st.sampled_from(ORIGINAL_FORMS)),
    )


# --------------------------------------------------------------------------- CSV files


@attrs.frozen
class RecipientCsvFile:
    """A recipient CSV file and what a correct import of it gives.

    ``data`` is the file; ``contacts`` the good rows' contacts in file order
    (first occurrence of each address); ``problem_lines`` the line numbers (the
    header is line 1) of the rows an import must report and leave out, in file
    order; ``duplicates`` how many of those repeat an earlier address.
    ``encoding`` is ``utf-8``, ``utf-8-sig`` (with a BOM) or ``cp932``;
    ``headers`` is ``ja`` or ``en``.
    """

    data: bytes
    contacts: tuple[Contact, ...]
    problem_lines: tuple[int, ...]
    duplicates: int
    encoding: str
    headers: str


_CSV_HEADERS = {
    "ja": {"last_name": "姓", "first_name": "名", "address": "宛先", "company": "会社名"},
    "en": {
        "last_name": "last_name",
        "first_name": "first_name",
        "address": "email",
        "company": "company",
    },
}
_BAD_ADDRESSES = [
    "not-an-address",
    "a@@example.jp",
    "山田@",
    "user@",
    "@example.jp",
    "a b@example.jp",
]
_CSV_COMPANIES = [
    "",
    "ACME",
    "株式会社テスト",
    "ＡＣＭＥ",
    "Ümlaut GmbH",
    'ACME, "Japan" Ltd.',
    "=SUM(A1)",
]
_FULLWIDTH = {cp: cp + 0xFEE0 for cp in range(0x21, 0x7F)}


def _csv_cell(value: str) -> str:
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _encodable(text: str, encoding: str) -> bool:
    try:
        return text.encode(encoding).decode(encoding) == text
    except UnicodeError:
        return False


@st.composite
def _csv_contact(draw: Any, encoding: str) -> Contact:
    names = (
        japanese_names
        if encoding == "cp932"
        else draw(st.sampled_from([japanese_names, latin_names]))
    )
    companies = [c for c in _CSV_COMPANIES if _encodable(c, encoding)]
    return Contact(
        draw(addresses()),
        last_name=draw(names),
        first_name=draw(names),
        company=draw(st.sampled_from(companies)),
    )


@st.composite
def recipient_csv_files(
    draw: Any,
    *,
    encodings: Sequence[str] = ("utf-8", "utf-8-sig", "cp932"),
    max_rows: int = 12,
    bad_rows: bool = True,
) -> RecipientCsvFile:
    """A recipient CSV file as users send them, with its expected import.

    Drawn: the encoding (UTF-8, UTF-8 with BOM, CP932), Japanese or English
    headers in any column order, CRLF or LF, Japanese and Latin names (CP932
    files only hold what CP932 can), companies with commas, quotes and
    formula-like text, addresses sometimes typed in full-width letters; and,
    unless ``bad_rows`` is False, a few bad rows at drawn places (an empty
    address, an invalid address, a wrong field count, a repeated address in
    another case) whose line numbers are in ``problem_lines``.
    """
    encoding = draw(st.sampled_from(list(encodings)))
    language = draw(st.sampled_from(["ja", "en"]))
    fields = draw(st.permutations(["last_name", "first_name", "address", "company"]))
    ending = draw(st.sampled_from(["\r\n", "\n"]))
    good = draw(
        st.lists(
            _csv_contact(encoding),
            min_size=1,
            max_size=max_rows,
            unique_by=lambda c: normalise_address(c.address),
        )
    )
    # Each row: (cells, contact it yields or None, is a duplicate).
    rows: list[tuple[list[str], Contact | None, bool]] = []
    for contact in good:
        address = contact.address
        typed = address.translate(_FULLWIDTH)
        if draw(st.booleans()) and _encodable(typed, encoding):
            address = typed
        values = {
            "last_name": contact.last_name,
            "first_name": contact.first_name,
            "address": address,
            "company": contact.company,
        }
        rows.append(([values[f] for f in fields], contact, False))
    if bad_rows:
        for _ in range(draw(st.integers(0, 3))):
            at = draw(st.integers(0, len(rows)))
            kind = draw(st.sampled_from(["empty", "invalid", "width", "duplicate"]))
            earlier = [c for _, c, dup in rows[:at] if c is not None and not dup]
            cells = ["x"] * len(fields)
            duplicate = False
            if kind == "duplicate" and earlier:
                cells[fields.index("address")] = draw(st.sampled_from(earlier)).address.upper()
                duplicate = True
            elif kind == "width":
                cells = [*cells, "extra"] if draw(st.booleans()) else cells[:-1]
                if "address" in fields[: len(cells)]:
                    cells[fields.index("address")] = "x@example.jp"
            elif kind == "invalid":
                bad = [a for a in _BAD_ADDRESSES if _encodable(a, encoding)]
                cells[fields.index("address")] = draw(st.sampled_from(bad))
            else:
                cells[fields.index("address")] = ""
            rows.insert(at, (cells, None, duplicate))
    header = [_CSV_HEADERS[language][f] for f in fields]
    lines = [",".join(_csv_cell(c) for c in header)]
    lines += [",".join(_csv_cell(c) for c in cells) for cells, _, _ in rows]
    text = ending.join(lines) + ending
    return RecipientCsvFile(
        data=text.encode(encoding),
        contacts=tuple(c for _, c, _ in rows if c is not None),
        problem_lines=tuple(i + 2 for i, (_, c, _) in enumerate(rows) if c is None),
        duplicates=sum(1 for _, _, dup in rows if dup),
        encoding=encoding,
        headers=language,
    )


# --------------------------------------------------------------------------- histories

_TIMEZONES = ["UTC", "Asia/Tokyo", "America/New_York"]
# Weighted towards sending and replies so that histories get past SCHEDULED.
_COMMANDS = [
    *["start"] * 3,
    *["attempt"] * 6,
    *["reply"] * 6,
    *["report"] * 4,
    *["acknowledge"] * 2,
    *["resume"] * 2,
    *["complete"] * 2,
    *["advance"] * 2,
    "create",
    "configure",
    "cancel",
    "export",
]
_STEPS = [
    timedelta(minutes=1),
    timedelta(minutes=11),
    timedelta(hours=6),
    timedelta(hours=25),
    timedelta(days=31),
]


@st.composite
def histories(  # noqa: PLR0912 - one random command per branch
    draw: Any, *, max_broadcasts: int = 3, max_recipients: int = 4, max_steps: int = 40
) -> History:
    """A whole history, as (position, event) pairs, that the library could have written.

    Random commands (create, configure the account, start sending, attempt,
    reply 250/451/550/0, reports of every action received inside and outside
    the bounce window, acknowledge, cancel, resume, complete, export, let time
    pass; a drawn monthly limit pauses broadcasts as the dispatcher would)
    drive the real aggregates through
    :class:`~broadcast_domain.testing.histories.HistoryBuilder`; what their
    rules refuse records nothing.
    """
    h = HistoryBuilder(draw(aware_datetimes(datetime(2025, 1, 1), datetime(2030, 1, 1))))
    if draw(st.booleans()):
        h.configure_account(
            "acme",
            monthly_limit=draw(st.none() | st.integers(0, 8)),
            timezone=draw(st.sampled_from(_TIMEZONES)),
        )
    people = st.lists(contacts(), min_size=1, max_size=max_recipients)
    bids = [
        h.create_broadcast(
            draw(people), scheduled_at=h.now + timedelta(minutes=draw(st.sampled_from([0, 0, 30])))
        )
    ]
    for _ in range(draw(st.integers(0, max_steps))):
        command = draw(st.sampled_from(_COMMANDS))
        bid = draw(st.sampled_from(bids))
        address = draw(st.sampled_from(h.addresses(bid)))
        if command == "create" and len(bids) < max_broadcasts:
            bids.append(
                h.create_broadcast(
                    draw(people), inbox_id=draw(st.sampled_from(["support", "sales"]))
                )
            )
        elif command == "configure":
            h.configure_account(
                "acme",
                monthly_limit=draw(st.none() | st.integers(0, 8)),
                timezone=draw(st.sampled_from(_TIMEZONES)),
            )
        elif command == "start":
            h.start_sending(bid)
        elif command == "attempt":
            due = [a for a in h.addresses(bid) if h.recipient(bid, a).is_due(h.now)]
            h.attempt(bid, draw(st.sampled_from(due)) if due else address)
        elif command == "reply":
            waiting = [a for a in h.addresses(bid) if h.recipient(bid, a).lease_until]
            address = draw(st.sampled_from(waiting)) if waiting else address
            code = draw(st.sampled_from([250, 250, 451, 550, 0]))
            h.reply(bid, address, code, "dropped" if code == 0 else f"{code} reply")
        elif command == "report":
            report = draw(
                bounce_reports(
                    recipient=address,
                    reported_at=st.just(h.now - timedelta(minutes=draw(st.integers(0, 90)))),
                )
            )
            late = draw(st.sampled_from([timedelta(0), timedelta(0), timedelta(hours=30)]))
            h.report(bid, address, report, received_at=h.now + late if late else None)
        elif command == "acknowledge":
            h.acknowledge(bid, address)
        elif command == "cancel":
            h.cancel(bid)
        elif command == "resume":
            h.resume(bid)
        elif command == "complete":
            h.complete(bid)
        elif command == "export":
            h.export(bid)
        elif command == "advance":
            h.advance(draw(st.sampled_from(_STEPS)))
    return h.history


def uuid_of(n: int) -> UUID:
    """A readable deterministic UUID for examples."""
    return UUID(int=n)


def later(moment: datetime, **kwargs: float) -> datetime:
    """``moment + timedelta(**kwargs)``, for readable examples."""
    return moment + timedelta(**kwargs)
