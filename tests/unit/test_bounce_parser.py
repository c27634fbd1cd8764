"""The bounce parser on small hand-written messages of each kind, and on garbage."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from broadcast_adapters.bounces.parser import BounceMessageParser, _parse, parse_bounce
from broadcast_domain.ports import BounceParser, ParsedMessage

DSN = b"""\
Return-Path: <>
Delivered-To: bounces+abc123@mail.example.com
From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
To: bounces+abc123@mail.example.com
Subject: Undelivered Mail Returned to Sender
Date: Tue, 03 Nov 2026 10:00:00 +0900
Message-ID: <bounce-1@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BB"

--BB
Content-Type: text/plain

Your message could not be delivered.

--BB
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; Alice@Example.NET
Original-Recipient: rfc822; alice@example.net
Action: failed
Status: 5.0.0
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.1.1 <alice@example.net>:
    Recipient address rejected: User unknown

Final-Recipient: rfc822; bob@example.net
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

--BB
Content-Type: text/rfc822-headers

From: news@example.com
To: alice@example.net
Message-ID: <original-42@example.com>
Subject: News

--BB--
"""

AUTOREPLY = b"""\
From: Carol <carol@example.net>
To: news@example.com
Subject: Out of Office: News
Auto-Submitted: auto-replied
In-Reply-To: <original-7@example.com>

I am away until Monday.
"""

ARF = b"""\
From: feedback@isp.example
To: abuse@example.com
Subject: FW: News
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="FF"

--FF
Content-Type: text/plain

This is an abuse report.

--FF
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: <dave@isp.example>

--FF
Content-Type: message/rfc822

From: news@example.com
To: dave@isp.example
Message-ID: <original-9@example.com>
Subject: News

Hello
--FF--
"""

QMAIL = b"""\
From: MAILER-DAEMON@mx.example.org
To: bounces+t1@mail.example.com
Subject: failure notice

Hi. This is the qmail-send program at mx.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<erin@example.net>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <erin@example.net>... User Unknown
Giving up on 192.0.2.1.

--- Below this line is a copy of the message.

From: news@example.com
To: erin@example.net
Message-ID: <original-5@example.com>

Hello
"""


def test_parser_class_conforms_to_the_port() -> None:
    """BounceMessageParser is usable wherever a BounceParser is expected."""
    parser: BounceParser = BounceMessageParser()
    assert parser(DSN) == parse_bounce(DSN)


def test_dsn_failed_recipient_gives_a_permanent_failure_with_the_server_code() -> None:
    """A failed DSN block yields the recipient, the remote 5.1.1 over a generic 5.0.0, and 550."""
    parsed = parse_bounce(DSN)
    failed = parsed.reports[0]
    assert failed.action == "failed"
    assert failed.recipient == "Alice@Example.NET"  # as the report writes it
    assert failed.original_recipient == "alice@example.net"
    assert failed.status == "5.1.1"
    assert failed.reply_code == "550"
    assert failed.permanent is True
    assert failed.remote_mta == "mx.example.net"
    assert "Recipient address rejected: User unknown" in failed.diagnostic
    assert "\n" not in failed.diagnostic


def test_dsn_delayed_recipient_is_not_a_failure() -> None:
    """An Action: delayed block yields a temporary, non-failed report."""
    delayed = parse_bounce(DSN).reports[1]
    assert (delayed.action, delayed.recipient, delayed.status) == (
        "delayed",
        "bob@example.net",
        "4.2.2",
    )
    assert delayed.permanent is False


def test_dsn_correlation_hints_are_collected() -> None:
    """The VERP envelope address, the original Message-ID, and the bounce's own id and date."""
    parsed = parse_bounce(DSN)
    assert "bounces+abc123@mail.example.com" in parsed.envelope_candidates
    assert parsed.original_message_ids == ("<original-42@example.com>",)
    assert parsed.message_id == "<bounce-1@mx.example.org>"
    assert parsed.date == datetime(2026, 11, 3, 1, 0, tzinfo=UTC)


def test_auto_reply_is_reported_as_autoreply_from_its_sender() -> None:
    """An RFC 3834 auto-reply gives one autoreply report and the In-Reply-To id."""
    parsed = parse_bounce(AUTOREPLY)
    assert [(r.action, r.recipient, r.permanent) for r in parsed.reports] == [
        ("autoreply", "carol@example.net", False)
    ]
    assert parsed.original_message_ids == ("<original-7@example.com>",)


def test_arf_report_is_a_complaint_with_its_feedback_type() -> None:
    """An ARF feedback report gives a complaint for the original recipient."""
    parsed = parse_bounce(ARF)
    assert [(r.action, r.recipient, r.feedback_type) for r in parsed.reports] == [
        ("complaint", "dave@isp.example", "abuse")
    ]
    assert parsed.original_message_ids == ("<original-9@example.com>",)


def test_plain_text_qmail_bounce_gives_recipient_status_and_reply() -> None:
    """A qmail-style text bounce yields the failed recipient, 5.1.1, 550 and the original id."""
    parsed = parse_bounce(QMAIL)
    got = [(r.action, r.recipient, r.status, r.reply_code, r.permanent) for r in parsed.reports]
    assert got == [("failed", "erin@example.net", "5.1.1", "550", True)]
    assert parsed.original_message_ids == ("<original-5@example.com>",)


def test_line_endings_do_not_change_the_result() -> None:
    """LF, CRLF and bare CR versions of a message parse identically."""
    for message in (DSN, QMAIL, ARF, AUTOREPLY):
        crlf = message.replace(b"\n", b"\r\n")
        cr = message.replace(b"\n", b"\r")
        assert parse_bounce(crlf) == parse_bounce(message)
        assert parse_bounce(cr) == parse_bounce(message)


def test_text_bounce_in_another_charset_is_decoded() -> None:
    """A Shift_JIS text bounce is decoded and its recipient and codes found."""
    body = "配信できませんでした。\n\n<frank@example.jp>:\n550 5.1.1 ユーザーが存在しません\n"
    message = (
        b"From: MAILER-DAEMON@example.jp\nTo: bounces+t2@mail.example.com\n"
        b"Subject: Returned mail\nContent-Type: text/plain; charset=Shift_JIS\n\n"
        + body.encode("shift_jis")
    )
    report = parse_bounce(message).reports[0]
    assert (report.recipient, report.status, report.reply_code) == (
        "frank@example.jp",
        "5.1.1",
        "550",
    )
    assert "ユーザーが存在しません" in report.diagnostic


def test_temporary_text_bounce_without_codes_is_not_permanent() -> None:
    """A delay warning in plain text is a delayed report, not a failure."""
    message = (
        b"From: MAILER-DAEMON@example.org\nTo: x@example.com\n"
        b"Subject: Warning: message 1abc delayed 24 hours\n\n"
        b"A message that you sent has not yet been delivered to one or more of its\n"
        b"recipients after more than 24 hours on the queue.\n\n"
        b"  grace@example.net\n    host mx.example.net: Connection timed out\n"
    )
    assert [(r.action, r.recipient, r.permanent) for r in parse_bounce(message).reports] == [
        ("delayed", "grace@example.net", False)
    ]


def test_ordinary_mail_gives_no_reports() -> None:
    """A normal personal message is neither a bounce nor an auto-reply."""
    message = b"From: henry@example.net\nTo: news@example.com\nSubject: Lunch?\n\nSee you.\n"
    assert parse_bounce(message).reports == ()


def test_garbage_gives_an_empty_result() -> None:
    """Bytes that are not a message at all give no reports and no hints."""
    for junk in (b"", b"\x00\xff\xfe" * 100, b"\n\n\n", b"--\n--\n" * 50, bytes(range(256))):
        parsed = parse_bounce(junk)
        assert isinstance(parsed, ParsedMessage)
        assert parsed.reports == ()


def test_broken_mime_boundary_still_reads_the_dsn_fields() -> None:
    """A multipart report whose boundary never appears is still read from its text."""
    broken = DSN.replace(b'boundary="BB"', b'boundary="ZZ"')
    parsed = parse_bounce(broken)
    assert [(r.action, r.recipient, r.status) for r in parsed.reports] == [
        ("failed", "Alice@Example.NET", "5.1.1"),
        ("delayed", "bob@example.net", "4.2.2"),
    ]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    """Any byte string parses without raising, even below parse_bounce's last-resort guard."""
    assert isinstance(_parse(data), ParsedMessage)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([DSN, ARF, QMAIL, AUTOREPLY]),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=3000), st.binary(min_size=0, max_size=8)),
        max_size=8,
    ),
    st.integers(min_value=0, max_value=3000),
)
def test_mutated_messages_never_raise(
    message: bytes, edits: list[tuple[int, bytes]], cut: int
) -> None:
    """Messages with bytes spliced in and a truncated tail parse without raising, unguarded."""
    data = bytearray(message)
    for where, chunk in edits:
        at = where % (len(data) + 1)
        data[at : at + len(chunk)] = chunk
    parsed = _parse(bytes(data[: max(cut, len(data) // 2)]))
    assert isinstance(parsed, ParsedMessage)
    for report in parsed.reports:
        assert report.action in {
            "failed",
            "delayed",
            "delivered",
            "relayed",
            "expanded",
            "autoreply",
            "complaint",
        }


# --------------------------------------------------------------------------- issue examples

SENDMAIL_TRANSCRIPT = b"""From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>
To: bounces+tok@mail.example.com
Subject: Returned mail: see transcript for details

The original message was received at Mon, 2 Nov 2026 09:00:00 +0900
from localhost [127.0.0.1]

   ----- The following addresses had permanent fatal errors -----
<hanako@example.org>

   ----- Transcript of session follows -----
... while talking to mx.example.org.:
>>> RCPT To:<hanako@example.org>
<<< 552 5.2.2 <hanako@example.org>... Mailbox full
"""


def test_a_non_mime_sendmail_transcript_with_a_5xx_line_is_a_failure_with_that_line() -> None:
    """A plain sendmail transcript gives a failure whose detail is the server's 552 5.2.2 line."""
    [got] = parse_bounce(SENDMAIL_TRANSCRIPT).reports
    assert (got.action, got.recipient, got.status, got.reply_code) == (
        "failed",
        "hanako@example.org",
        "5.2.2",
        "552",
    )
    assert "552 5.2.2" in got.detail
    assert got.reason == "mailboxfull"


CHALLENGE = b"""From: Spam Guard <guard@example.org>
To: bounces+tok@mail.example.com
Subject: Please confirm your message
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Your message to jiro@example.org is held. Please confirm you are human by
clicking the link below; it will then be delivered.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; guard.example.org

Final-Recipient: rfc822; jiro@example.org
Action: failed
Status: 4.7.0

--b--
"""


def test_a_challenge_sent_as_a_report_with_a_4xx_status_is_not_a_failure() -> None:
    """A challenge/response mail dressed as a multipart/report with Status 4.7.0 is only delayed."""
    [got] = parse_bounce(CHALLENGE).reports
    assert got.action == "delayed"
    assert not got.permanent


def _dsn_without_diagnostic(status_line: str, notice: str = "Delivery failed.") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.net\nTo: bounces@mail.example.com\n"
        "Subject: Undelivered Mail\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        f"--b\nContent-Type: text/plain\n\n{notice}\n\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        f"Final-Recipient: rfc822; saburo@example.org\nAction: failed\nStatus: {status_line}\n\n"
        "--b--\n"
    ).encode()


def test_the_status_comment_is_the_detail_without_a_diagnostic_code() -> None:
    """``Status: 5.0.0 (recipient reached disk quota)`` gives that comment as the detail."""
    [got] = parse_bounce(_dsn_without_diagnostic("5.0.0 (recipient reached disk quota)")).reports
    assert got.detail == "recipient reached disk quota"
    assert got.reason == "mailboxfull"


def test_the_notice_explains_the_recipient_when_the_fields_do_not() -> None:
    """A first part that says ``Reason: ...`` about the recipient is the detail, not boilerplate."""
    notice = "Your message could not be delivered.\n\nReason: recipient reached disk quota"
    [got] = parse_bounce(_dsn_without_diagnostic("5.2.2", notice)).reports
    assert got.detail == "recipient reached disk quota"


def test_a_bare_status_is_described_by_its_standard_meaning() -> None:
    """With only ``Status: 5.1.1`` and boilerplate, the detail is RFC 3463's description."""
    [got] = parse_bounce(_dsn_without_diagnostic("5.1.1")).reports
    assert got.detail == "5.1.1 Bad destination mailbox address"
    assert got.reason == "userunknown"


def test_a_vacation_notice_in_html_is_an_auto_reply() -> None:
    """An out-of-office reply sent as text/html is an auto-reply, never a failure."""
    raw = (
        b"From: Taro <taro@example.org>\nTo: bounces@mail.example.com\n"
        b"Subject: Out of Office: News\nContent-Type: text/html\n\n"
        b"<p>I am away until Monday and will read your message then.</p>\n"
    )
    assert [r.action for r in parse_bounce(raw).reports] == ["autoreply"]


def test_list_expansion_gives_both_recipients() -> None:
    """Final-Recipient is the report's recipient as written; Original-Recipient rides beside it."""
    raw = DSN.replace(
        b"Original-Recipient: rfc822; alice@example.net",
        b"Original-Recipient: rfc822; list@example.net",
    )
    [got, *_] = parse_bounce(raw).reports
    assert (got.recipient, got.original_recipient) == ("Alice@Example.NET", "list@example.net")
