"""Properties of the bounce parser over generated reports and hostile input.

Each rule of the parser is checked on drawn reports rather than on corpus
examples: detail never empty, reasons from the vocabulary, identity that does
not depend on transport headers or on the case of the domain, warnings that
never fail, and an answer for every pathological input built from repeated
fragments.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import attrs
import hypothesis.strategies as st
from hypothesis import HealthCheck, assume, example, given, settings

from broadcast_adapters.bounces.parser import BounceMessageParser, parse_bounce
from broadcast_domain import BounceReport
from broadcast_domain.domain.reasons import REASONS, describe_status
from broadcast_domain.ports import ParsedMessage, ParsedReport
from broadcast_domain.testing.bounces import HOSTILE_FAMILIES, hostile_bounce
from broadcast_domain.testing.reports import EXPLANATIONS, dsn_message
from broadcast_domain.testing.strategies import addresses, bounce_reports

VERP = "bounces+tok3n@mail.example.com"
ORIGINAL_ID = "<original-42@mail.example.com>"
_CODE_LIKE = re.compile(r"[245]\d\d|[245]\.\d")
_LIMIT = 1000  # reports read from one message (the parser's documented limit)


def _plain(address: str) -> bool:
    # The parser trims quotes and dots around addresses it finds in prose.
    return not address.startswith(("'", ".")) and not address.endswith(("'", "."))


failures = bounce_reports(actions=st.just("failed"))


@given(failures, st.sampled_from(EXPLANATIONS), st.sampled_from(["\r\n", "\n"]))
def test_a_failure_always_has_a_detail_and_a_reason(report, explanation, newline) -> None:  # type: ignore[no-untyped-def]
    """Wherever the report puts its text (or nowhere), a failure has a detail and a known reason."""
    assume(_plain(report.recipient))
    raw = dsn_message(report, verp_address=VERP, explanation=explanation, line_ending=newline)
    [got] = parse_bounce(raw).reports
    assert got.action == "failed"
    assert got.detail.strip()
    assert got.reason in REASONS
    if explanation == "status-only":
        assert got.detail == describe_status(got.status)


@given(failures.filter(lambda r: "." in r.status))
def test_a_status_comment_is_the_detail_when_nothing_else_explains(report) -> None:  # type: ignore[no-untyped-def]
    """``Status: 5.2.2 (text)`` with no Diagnostic-Code gives the comment's text as the detail."""
    text = " ".join(report.diagnostic.replace("(", " ").replace(")", " ").split())
    assume(text and _plain(report.recipient))
    report = attrs.evolve(report, diagnostic=text)
    [got] = parse_bounce(
        dsn_message(report, verp_address=VERP, explanation="status-comment")
    ).reports
    assert got.detail == text


_TRANSPORT = st.lists(
    st.sampled_from(
        [
            "Received: from relay{n}.example.org (relay{n}.example.org [192.0.2.{n}])\r\n"
            "\tby mx.example.com with ESMTPS id r{n}; Tue, 3 Nov 2026 10:0{n}:00 +0000\r\n",
            "X-Spam-Score: 0.{n}\r\n",
            "Delivered-To: bounces+tok3n@mail.example.com\r\n",
            "Return-Path: <>\r\n",
        ]
    ),
    max_size=4,
)


def _rewrapped(raw: bytes, extra: list[str], date: str) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = [
        line
        for line in head.split(b"\r\n")
        if not line.lower().startswith((b"date:", b"message-id:"))
    ]
    added = "".join(e.format(n=i) for i, e in enumerate(extra)).encode()
    stamp = f"Date: {date}\r\nMessage-ID: <redelivered-{len(extra)}@relay.example.org>\r\n"
    return added + b"\r\n".join(lines) + b"\r\n" + stamp.encode() + sep.lstrip(b"\r\n") + body


@given(
    bounce_reports(actions=st.sampled_from(["failed", "delayed"])),
    _TRANSPORT,
    st.sampled_from(["Wed, 4 Nov 2026 08:00:00 +0900", "Thu, 5 Nov 2026 23:59:59 -0500"]),
)
def test_rewrapping_a_report_in_other_transport_headers_changes_no_report(
    report: Any,
    extra: Any,
    date: str,
) -> None:
    """Another Date, Message-ID and Received chain around the same report give equal reports."""
    assume(_plain(report.recipient))
    raw = dsn_message(report, verp_address=VERP, original_message_id=ORIGINAL_ID)
    again = _rewrapped(raw, extra, date)
    first, second = parse_bounce(raw), parse_bounce(again)
    assert first.reports == second.reports
    assert first.original_message_ids == second.original_message_ids


@given(failures, st.sampled_from(EXPLANATIONS))
def test_the_case_of_the_domain_changes_only_the_recipients_case(report, explanation) -> None:  # type: ignore[no-untyped-def]
    """Writing the recipient's domain in other case changes nothing but the recipient's spelling."""
    local, _, domain = report.recipient.rpartition("@")
    assume(_plain(report.recipient) and domain.upper() != domain)
    upper = attrs.evolve(report, recipient=f"{local}@{domain.upper()}")
    [low] = parse_bounce(dsn_message(report, verp_address=VERP, explanation=explanation)).reports
    [high] = parse_bounce(dsn_message(upper, verp_address=VERP, explanation=explanation)).reports
    assert high.recipient == upper.recipient
    assert _folded(high) == _folded(low)


def _folded(report: ParsedReport) -> ParsedReport:
    def low(text: str | None) -> str | None:
        return text.lower() if text is not None else None

    return attrs.evolve(
        report,
        recipient=low(report.recipient),
        original_recipient=low(report.original_recipient),
        detail=report.detail.lower(),
        diagnostic=report.diagnostic.lower(),
        remote_mta=low(report.remote_mta),
    )


@given(failures, st.lists(addresses(), min_size=1, max_size=20))
def test_unrelated_addresses_in_the_notice_change_nothing(report, others) -> None:  # type: ignore[no-untyped-def]
    """Other addresses appended to the notice (a help desk's list) leave every report as it was."""
    assume(_plain(report.recipient))
    assume(all(o.lower() != report.recipient.lower() for o in others))
    raw = dsn_message(report, verp_address=VERP)
    listing = "For help, write to: " + ", ".join(others)
    changed = dsn_message(report, verp_address=VERP, postscript=listing)
    assert parse_bounce(changed).reports == parse_bounce(raw).reports


_WARNINGS = st.sampled_from(
    [
        "This is a warning message only. Your message has not yet been delivered to {rcpt}. "
        "We will keep trying for 4 more days.",
        "Delivery to {rcpt} is delayed: 451 4.4.1 temporary failure. The mail system will "
        "continue delivery attempts; you do not need to resend your message.",
        "Your message to <{rcpt}> has not been delivered yet. No action is required on your "
        "part; delivery attempts will continue.",
        "Please confirm you are human before your message to {rcpt} is delivered: "
        "click the link below. (challenge/response)",
    ]
)


@given(addresses(), _WARNINGS, st.sampled_from(["text/plain", "text/html"]))
# A domain that reads like a status code is part of the address, not a status.
@example(
    "0@5.0.0.com",
    "Your message to <{rcpt}> has not been delivered yet. No action is "
    "required on your part; delivery attempts will continue.",
    "text/plain",
)
def test_warnings_and_challenges_never_fail(rcpt, template, ctype) -> None:  # type: ignore[no-untyped-def]
    """A plain notice that delivery goes on being tried, or a challenge, is never a failure."""
    assume(_plain(rcpt))
    text = template.format(rcpt=rcpt)
    if ctype == "text/html":
        text = f"<html><body><p>{text}</p></body></html>"
    raw = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        f"To: {VERP}\r\nSubject: Mail delivery notice\r\n"
        f"Content-Type: {ctype}; charset=utf-8\r\n\r\n{text}\r\n"
    ).encode()
    assert all(r.action != "failed" for r in parse_bounce(raw).reports)


@given(
    st.sampled_from(["4.7.0", "4.2.2", "4.4.7", "4.0.0"]),
    st.sampled_from(["failed", "delayed"]),
    addresses(),
)
def test_a_4xx_status_is_never_a_permanent_failure(status, action, rcpt) -> None:  # type: ignore[no-untyped-def]
    """Whatever the Action field says, a report with a 4.x.x status is not permanent."""
    assume(_plain(rcpt))
    report = BounceReport(
        recipient=rcpt,
        status=status,
        diagnostic="",
        permanent=False,
        reported_at=datetime(2026, 11, 2, tzinfo=UTC),
        action=action,
    )
    [got] = parse_bounce(dsn_message(report, verp_address=VERP)).reports
    assert not got.permanent


# --------------------------------------------------------------------------- hostile input

_FRAGMENTS = st.sampled_from(
    ["<", "@", "a", "<a@", ">", "a@b.c", "Message-ID: <x@y>\n", "=?utf-8?q?", "--b\n", "\n\n", " "]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HOSTILE_FAMILIES), st.integers(min_value=1, max_value=400_000))
def test_every_hostile_family_gets_an_answer(family: str, size: int) -> None:
    """Each pathological family, at any size up to 400 KB, parses to a bounded result."""
    parsed = parse_bounce(hostile_bounce(family, size))
    assert isinstance(parsed, ParsedMessage)
    assert len(parsed.reports) <= _LIMIT
    assert all(r.action != "failed" or r.detail for r in parsed.reports)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_FRAGMENTS, st.integers(min_value=1, max_value=20_000)), max_size=8),
    st.sampled_from(["text/plain", "text/html", "message/delivery-status", "multipart/mixed"]),
)
def test_mixed_fragments_get_an_answer(pieces: list[tuple[str, int]], ctype: str) -> None:
    """A body of repeated fragments in any part type parses to a ParsedMessage, never raising."""
    body = "".join(fragment * count for fragment, count in pieces)
    raw = (
        "From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\n"
        f'Content-Type: {ctype}; boundary="b"\n\n{body}'
    ).encode()
    parsed = parse_bounce(raw)
    assert isinstance(parsed, ParsedMessage)
    assert len(parsed.reports) <= _LIMIT


@given(st.integers(min_value=1, max_value=5_000))
def test_a_message_over_the_limit_is_refused_unread(limit: int) -> None:
    """A message larger than the parser's limit gives no reports and says why."""
    raw = hostile_bounce("dsn-blocks", limit + 200)
    assume(len(raw) > limit)
    parsed = BounceMessageParser(max_bytes=limit)(raw)
    assert parsed.reports == ()
    assert parsed.refused and f"{limit:,}" in parsed.refused
    assert BounceMessageParser(max_bytes=len(raw))(raw).refused is None
