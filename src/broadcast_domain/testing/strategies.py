"""Hypothesis strategies for broadcast-domain values, reports and events.

Use them to test a host's code against this library, as our own suite does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import strategies as st

from broadcast_domain.domain import events as ev
from broadcast_domain.domain import unmatched as um
from broadcast_domain.domain.values import BounceReport, Contact

__all__ = [
    "addresses",
    "aware_datetimes",
    "bounce_reports",
    "contacts",
    "domain_events",
    "japanese_names",
    "latin_names",
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


def uuid_of(n: int) -> UUID:
    """A readable deterministic UUID for examples."""
    return UUID(int=n)


def later(moment: datetime, **kwargs: float) -> datetime:
    """``moment + timedelta(**kwargs)``, for readable examples."""
    return moment + timedelta(**kwargs)
