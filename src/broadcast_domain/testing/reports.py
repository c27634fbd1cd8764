"""Raw report e-mails built from normalised reports: RFC 3464 DSNs, RFC 5965 ARF, auto-replies.

:func:`dsn_message` writes the message a receiving server would have sent
about one :class:`~broadcast_domain.domain.values.BounceReport`: a
``multipart/report`` with a human-readable notice, a ``message/delivery-status``
part and the original message (headers only, whole, or left out), addressed to
the VERP return path. :func:`report_message` does the same for any report
action, choosing an ARF feedback report for complaints and an RFC 3834
auto-reply for auto-replies. Both are deterministic; the hypothesis strategy
:func:`broadcast_domain.testing.strategies.dsn_messages` draws their variants.

What a parser should read back (our own parser does, and a test holds it to it):

- one report, for ``report.recipient`` as written, with ``report.action``;
- for a DSN, the ``Status`` field is ``report.status`` when it is an enhanced
  status code, else ``<class>.0.0`` with the SMTP reply code ``report.status``
  in the diagnostic; the diagnostic is ``"<reply> <status> <text>"`` with the
  report's text whitespace-collapsed (a non-ASCII text is written as RFC 2047
  encoded words in ``charset``, or UTF-8 where ``charset`` cannot hold it);
- the message's ``Date`` is ``report.reported_at`` to the second;
- the ``To``/``Delivered-To`` headers carry ``verp_address`` and the original
  part carries ``original_message_id``, for correlation.

:func:`report_on` answers one delivery a transport really received (an
``OutgoingMessage`` from ``ScriptedTransport.sent``, or a ``ReceivedMessage``
from ``SmtpSink``): the report goes to the delivery's VERP envelope sender (or,
with ``verp=False``, to the plain return path, so that only the quoted
original's Message-ID can correlate it) and quotes the delivery's own headers.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal, Protocol

from broadcast_domain.domain.values import BounceReport
from broadcast_domain.errors import InvalidInput

__all__ = [
    "CHARSETS",
    "DSN_ACTIONS",
    "EXPLANATIONS",
    "LINE_ENDINGS",
    "ORIGINAL_FORMS",
    "Delivery",
    "Explanation",
    "OriginalForm",
    "dsn_message",
    "failure_report",
    "header_block",
    "plain_return_path",
    "report_message",
    "report_on",
    "verp_token_of",
]

OriginalForm = Literal["headers", "message", "none"]
ORIGINAL_FORMS: tuple[OriginalForm, ...] = ("headers", "message", "none")
"""How the original message rides along: ``text/rfc822-headers``, ``message/rfc822``, or not."""

CHARSETS = ("utf-8", "iso-2022-jp", "shift_jis", "us-ascii")
"""Charsets of the notice (and of encoded words in the diagnostic)."""

DSN_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
"""Report actions a DSN can carry (RFC 3464 section 2.3.3)."""

LINE_ENDINGS = ("\r\n", "\n", "\r")
"""Line endings a report can be written with: CRLF (as sent), LF (as stored), bare CR (old Macs)."""


class Delivery(Protocol):
    """One message as a transport received it (``OutgoingMessage``, ``ReceivedMessage``)."""

    @property
    def envelope_from(self) -> str: ...
    @property
    def recipient(self) -> str: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def data(self) -> bytes: ...


_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_REPLY = re.compile(r"[245]\d\d")
_WS = re.compile(r"\s+")
_REPORTING_MTA = "mx.reports.example"
# How the notice is carried per charset: 7bit where the charset is 7-bit, else base64.
_TRANSFER = {"utf-8": "base64", "iso-2022-jp": "7bit", "shift_jis": "base64", "us-ascii": "7bit"}
# An encoded word may be 75 characters long; this many source characters keep within it.
_WORD_CHARS = 12


def _collapse(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _codes(status: str) -> tuple[str, str]:
    """(enhanced status for the Status field, SMTP reply code) for a report's status."""
    status = status.strip()
    if _ENHANCED.fullmatch(status):
        reply = {"2": "250", "4": "451", "5": "550"}[status[0]]
        return status, reply
    if _REPLY.fullmatch(status):
        return f"{status[0]}.0.0", status
    raise InvalidInput(
        f"report.status {status!r} is neither an enhanced status code (5.1.1) nor an SMTP "
        "reply code (550); a DSN needs one of them",
        field="report.status",
    )


def _fits(text: str, charset: str) -> bool:
    # A round trip, not just an encode: Shift_JIS writes ¥ as the byte that reads back as "\\".
    try:
        return text.encode(charset).decode(charset) == text
    except UnicodeError:
        return False


def _encoded_words(text: str, charset: str) -> str:
    """``text`` as RFC 2047 B-encoded words, one a line (folded), each self-contained."""
    if not _fits(text, charset):
        charset = "utf-8"
    words = []
    for start in range(0, len(text), _WORD_CHARS):
        chunk = text[start : start + _WORD_CHARS].encode(charset)
        words.append(f"=?{charset}?b?{base64.b64encode(chunk).decode('ascii')}?=")
    return "\n ".join(words)


def _header_value(text: str, charset: str) -> str:
    """Printable ASCII as is; anything else (or what looks encoded) as encoded words."""
    if text.isascii() and text.isprintable() and "=?" not in text:
        return text
    return _encoded_words(text, charset)


def _body(text: str, charset: str) -> tuple[str, str, str]:
    """(charset, transfer encoding, encoded body) for a text part; UTF-8 when it cannot hold it."""
    if not _fits(text, charset):
        charset = "utf-8"
    transfer = _TRANSFER.get(charset, "base64")
    data = text.encode(charset)
    if transfer == "base64":
        encoded = base64.encodebytes(data).decode("ascii").rstrip("\n")
    else:
        encoded = data.decode("ascii")
    return charset, transfer, encoded


def _text_part(text: str, charset: str, description: str) -> list[str]:
    charset, transfer, encoded = _body(text, charset)
    return [
        f"Content-Description: {description}",
        f'Content-Type: text/plain; charset="{charset}"',
        f"Content-Transfer-Encoding: {transfer}",
        "",
        encoded,
    ]


def _digest(report: BounceReport, *extra: str) -> str:
    material = "\x1f".join(
        [
            report.action,
            report.recipient,
            report.status,
            report.diagnostic,
            report.reported_at.isoformat(),
            report.report_id or "",
            *extra,
        ]
    )
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def header_block(raw: bytes) -> str:
    """The header block of a raw message (what a DSN quotes as ``text/rfc822-headers``)."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    return head.decode("utf-8", "replace")


def _quoted_message(raw: bytes) -> str:
    """The whole of a raw message with LF line ends, for a ``message/rfc822`` part."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").decode("utf-8", "replace")
    return text.removesuffix("\n")


def _original_part(
    report: BounceReport,
    original: OriginalForm,
    sender: str,
    original_message_id: str | None,
    quote: bytes | None,
) -> list[str]:
    if original == "none":
        return []
    if quote is not None:
        if original == "headers":
            return ["Content-Type: text/rfc822-headers", "", header_block(quote), ""]
        return ["Content-Type: message/rfc822", "", _quoted_message(quote)]
    headers = [
        f"From: {sender}",
        f"To: {report.recipient}",
        "Subject: =?utf-8?b?" + base64.b64encode("お知らせ".encode()).decode("ascii") + "?=",
        f"Date: {format_datetime(report.reported_at.astimezone(UTC))}",
    ]
    if original_message_id:
        headers.append(f"Message-ID: {original_message_id}")
    if original == "headers":
        return ["Content-Type: text/rfc822-headers", "", *headers, ""]
    body = base64.encodebytes("本文です。\n".encode()).decode("ascii").rstrip("\n")
    return [
        "Content-Type: message/rfc822",
        "",
        *headers,
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        body,
    ]


def _check_report(report: object, field: str) -> BounceReport:
    if not isinstance(report, BounceReport):
        raise InvalidInput(f"{field} must be a BounceReport", field=field)
    if not (report.recipient.isascii() and "@" in report.recipient):
        raise InvalidInput(
            f"{field}.recipient {report.recipient!r} must be an ASCII address for a report e-mail",
            field=f"{field}.recipient",
        )
    return report


def _check_common(report: BounceReport, line_ending: str, charset: str, original: str) -> None:
    if not isinstance(report, BounceReport):
        raise InvalidInput("report must be a BounceReport", field="report")
    if line_ending not in LINE_ENDINGS:
        raise InvalidInput("line_ending must be '\\r\\n', '\\n' or '\\r'", field="line_ending")
    if charset not in CHARSETS:
        raise InvalidInput(f"charset must be one of {', '.join(CHARSETS)}", field="charset")
    if original not in ORIGINAL_FORMS:
        raise InvalidInput(f"original must be one of {', '.join(ORIGINAL_FORMS)}", field="original")
    _check_report(report, "report")


def _check_dsn_action(report: BounceReport, field: str) -> None:
    if report.action not in DSN_ACTIONS:
        raise InvalidInput(
            f"{field}.action {report.action!r} is not a DSN action "
            f"({', '.join(sorted(DSN_ACTIONS))}); "
            "use report_message() for complaints and auto-replies",
            field=f"{field}.action",
        )


def _finish(text: str, line_ending: str) -> bytes:
    # UTF-8 only matters for a quoted original that is not ASCII; what is written here is.
    return text.replace("\n", line_ending).encode("utf-8")


def _assemble(headers: list[str], parts: list[list[str]], boundary: str, line_ending: str) -> bytes:
    lines = [*headers, "", "This is a MIME-encapsulated message.", ""]
    for part in parts:
        lines += [f"--{boundary}", *part, ""]
    lines.append(f"--{boundary}--")
    return _finish("\n".join(lines) + "\n", line_ending)


Explanation = Literal["diagnostic", "notice", "status-comment", "status-only"]
EXPLANATIONS: tuple[Explanation, ...] = ("diagnostic", "notice", "status-comment", "status-only")
"""Where a DSN gives the report's text: its ``Diagnostic-Code``; only the human-readable
notice; only a comment on the ``Status:`` line (``5.2.2 (mailbox full)``); nowhere."""


def _recipient_fields(
    report: BounceReport,
    charset: str,
    date: str,
    reply_code: str | None,
    explanation: Explanation = "diagnostic",
) -> list[str]:
    """The per-recipient fields of a ``message/delivery-status`` part for one report."""
    status, reply = _codes(report.status)
    reply = reply_code or reply
    domain = report.recipient.rpartition("@")[2] or "example.net"
    text = _collapse(report.diagnostic)
    comment = f" ({text})" if explanation == "status-comment" and text else ""
    fields = [
        f"Final-Recipient: rfc822; {report.recipient}",
        f"Original-Recipient: rfc822;{report.recipient}",
        f"Action: {report.action}",
        f"Status: {status}{comment}",
        f"Remote-MTA: dns; {report.remote_mta or 'mx.' + domain}",
    ]
    if explanation == "diagnostic":
        fields.append(
            "Diagnostic-Code: smtp; " + _header_value(f"{reply} {status} {text}".strip(), charset)
        )
    if report.action == "delayed":
        fields.append(f"Will-Retry-Until: {date}")
    return fields


def dsn_message(
    report: BounceReport,
    *,
    verp_address: str | None = None,
    original_message_id: str | None = None,
    sender: str = "news@example.com",
    line_ending: str = "\r\n",
    charset: str = "utf-8",
    original: OriginalForm = "headers",
    quote: bytes | None = None,
    reply_code: str | None = None,
    also: Sequence[BounceReport] = (),
    explanation: Explanation = "diagnostic",
    postscript: str = "",
) -> bytes:
    """An RFC 3464 ``multipart/report`` DSN about ``report``, as a receiving MTA sends it.

    ``report.action`` must be one of :data:`DSN_ACTIONS`; ``report.status`` an
    enhanced status code or an SMTP reply code. ``verp_address`` (default
    ``bounces@mail.example.com``) is where the DSN is addressed;
    ``original_message_id`` (``<id@host>``) goes in the original's headers.
    ``line_ending`` is one of :data:`LINE_ENDINGS`, ``charset`` one of
    :data:`CHARSETS`, ``original`` one of :data:`ORIGINAL_FORMS`. ``quote``, the
    raw original as sent, is quoted (its header block, or all of it) instead of a
    made-up original from ``sender``. ``reply_code`` (``552``) is the SMTP reply
    the diagnostics give, instead of the one the status class implies.
    ``also`` adds a per-recipient block for each further report (a DSN about
    several recipients). ``explanation`` (one of :data:`EXPLANATIONS`) says where
    the report's text goes: the ``Diagnostic-Code`` (and the notice), only the
    notice's paragraph about the recipient, only the ``Status:`` comment, or
    nowhere (the parser then has only the status code to go by). ``postscript``
    is a last paragraph of the notice (e.g. a help desk's addresses). Bad
    arguments raise InvalidInput.
    """
    _check_common(report, line_ending, charset, original)
    if explanation not in EXPLANATIONS:
        raise InvalidInput(
            f"explanation {explanation!r} is not one of {', '.join(EXPLANATIONS)}",
            field="explanation",
        )
    _check_dsn_action(report, "report")
    for i, other in enumerate(also):
        _check_dsn_action(_check_report(other, f"also[{i}]"), f"also[{i}]")
    if reply_code is not None and not _REPLY.fullmatch(reply_code):
        raise InvalidInput(
            f"reply_code {reply_code!r} is not an SMTP reply code (550)", field="reply_code"
        )
    reply = reply_code or _codes(report.status)[1]
    to = verp_address or "bounces@mail.example.com"
    extra = [reply_code or "", *(other.recipient for other in also)] if reply_code or also else []
    if explanation != "diagnostic" or postscript:
        extra += [explanation, postscript]
    digest = _digest(report, to, original_message_id or "", charset, original, *extra)
    boundary = f"dsn-{digest[:16]}"
    date = format_datetime(report.reported_at.astimezone(UTC))
    diagnostic = _collapse(report.diagnostic)
    domain = report.recipient.rpartition("@")[2] or "example.net"
    delayed = report.action == "delayed"
    subject = (
        "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    )
    notice_ja = "配信が遅れています。" if delayed else "メッセージを配信できませんでした。"
    about = {
        "diagnostic": f"<{report.recipient}>: host mx.{domain} said: {reply} {diagnostic}",
        "notice": f"<{report.recipient}>:\n{diagnostic}",
    }.get(explanation, f"<{report.recipient}>")
    notice = f"This is the mail system at host {_REPORTING_MTA}.\n{notice_ja}\n\n{about}"
    if postscript:
        notice += f"\n\n{postscript}"
    headers = [
        "Return-Path: <>",
        f"Delivered-To: {to}",
        f"From: Mail Delivery System <MAILER-DAEMON@{_REPORTING_MTA}>",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: <{digest}@{_REPORTING_MTA}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    fields = [
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {_REPORTING_MTA}",
        f"Arrival-Date: {date}",
    ]
    for each in (report, *also):
        fields += ["", *_recipient_fields(each, charset, date, reply_code, explanation)]
    parts = [
        _text_part(notice, charset, "Notification"),
        fields,
        _original_part(report, original, sender, original_message_id, quote),
    ]
    return _assemble(headers, [p for p in parts if p], boundary, line_ending)


def report_message(
    report: BounceReport,
    *,
    verp_address: str | None = None,
    original_message_id: str | None = None,
    sender: str = "news@example.com",
    line_ending: str = "\r\n",
    charset: str = "utf-8",
    original: OriginalForm = "headers",
    quote: bytes | None = None,
    reply_code: str | None = None,
    also: Sequence[BounceReport] = (),
) -> bytes:
    """The raw e-mail for any report: a DSN, an ARF complaint or an auto-reply.

    A complaint becomes an RFC 5965 ``multipart/report; report-type=feedback-report``
    naming the recipient in ``Original-Rcpt-To`` (``report.feedback_type``, default
    ``abuse``); an auto-reply becomes an RFC 3834 message from the recipient with
    ``Auto-Submitted: auto-replied`` and ``In-Reply-To: original_message_id``.
    ``quote`` is as for :func:`dsn_message` (an auto-reply quotes nothing);
    ``reply_code`` and ``also`` are for DSNs only.
    """
    if report.action in DSN_ACTIONS:
        return dsn_message(
            report,
            verp_address=verp_address,
            original_message_id=original_message_id,
            sender=sender,
            line_ending=line_ending,
            charset=charset,
            original=original,
            quote=quote,
            reply_code=reply_code,
            also=also,
        )
    _check_common(report, line_ending, charset, original)
    if reply_code is not None or also:
        raise InvalidInput(
            f"reply_code and also are for DSNs; a report with action {report.action!r} "
            "takes neither",
            field="reply_code" if reply_code is not None else "also",
        )
    to = verp_address or "bounces@mail.example.com"
    digest = _digest(report, to, original_message_id or "", charset, original)
    date = format_datetime(report.reported_at.astimezone(UTC))
    if report.action == "autoreply":
        charset_used, transfer, body = _body(
            f"不在にしております。\nI am out of the office.\n{_collapse(report.diagnostic)}",
            charset,
        )
        headers = [
            f"From: {report.recipient}",
            f"To: {to}",
            "Subject: Out of Office: =?utf-8?b?"
            + base64.b64encode("お知らせ".encode()).decode("ascii")
            + "?=",
            f"Date: {date}",
            f"Message-ID: <{digest}@{report.recipient.rpartition('@')[2] or 'example.net'}>",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            f'Content-Type: text/plain; charset="{charset_used}"',
            f"Content-Transfer-Encoding: {transfer}",
        ]
        if original_message_id:
            headers.append(f"In-Reply-To: {original_message_id}")
        return _finish("\n".join([*headers, "", body]) + "\n", line_ending)
    if report.action != "complaint":
        raise InvalidInput(
            f"report.action {report.action!r} is not one of failed, delayed, delivered, relayed, "
            "expanded, complaint, autoreply",
            field="report.action",
        )
    boundary = f"arf-{digest[:16]}"
    headers = [
        f"From: Feedback Loop <feedback@{_REPORTING_MTA}>",
        f"To: {to}",
        "Subject: Abuse report",
        f"Date: {date}",
        f"Message-ID: <{digest}@{_REPORTING_MTA}>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"',
    ]
    feedback = [
        "Content-Type: message/feedback-report",
        "",
        f"Feedback-Type: {report.feedback_type or 'abuse'}",
        "User-Agent: " + _header_value(_collapse(report.diagnostic) or "FeedbackLoop/1.0", charset),
        "Version: 1",
        f"Original-Rcpt-To: <{report.recipient}>",
        f"Arrival-Date: {date}",
    ]
    parts = [
        _text_part("This is an e-mail abuse report.", charset, "Notification"),
        feedback,
        _original_part(report, original, sender, original_message_id, quote),
    ]
    return _assemble(headers, [p for p in parts if p], boundary, line_ending)


def report_on(
    delivery: Delivery,
    report: BounceReport,
    *,
    verp: bool = True,
    line_ending: str = "\r\n",
    charset: str = "utf-8",
    original: OriginalForm = "headers",
    reply_code: str | None = None,
    also: Sequence[BounceReport] = (),
) -> bytes:
    """The raw report e-mail (any action, as :func:`report_message`) answering one delivery.

    It is addressed to the delivery's envelope sender (its VERP address) or, with
    ``verp=False``, to :func:`plain_return_path` of it; it quotes the delivery's
    own headers (or, with ``original="message"``, all of it) and names its
    Message-ID (an auto-reply in ``In-Reply-To``).
    """
    return report_message(
        report,
        verp_address=delivery.envelope_from if verp else plain_return_path(delivery.envelope_from),
        original_message_id=delivery.message_id,
        line_ending=line_ending,
        charset=charset,
        original=original,
        quote=delivery.data,
        reply_code=reply_code,
        also=also,
    )


def plain_return_path(address: str) -> str:
    """A VERP address ``local+TOKEN@domain`` without its token: ``local@domain``."""
    local, _, domain = address.rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def verp_token_of(address: str) -> str | None:
    """The token of a VERP address ``local+TOKEN@domain`` (an envelope sender), or None."""
    local, at, _ = address.strip().strip("<>").rpartition("@")
    _, plus, token = local.partition("+")
    return token if at and plus and token else None


def failure_report(
    recipient: str,
    *,
    reported_at: datetime,
    verp_token: str | None = None,
    message_id: str | None = None,
    status: str = "5.1.1",
    diagnostic: str = "user unknown",
    action: str = "failed",
) -> BounceReport:
    """One report about ``recipient``; permanent when ``status`` is of class 5."""
    return BounceReport(
        recipient=recipient,
        status=status,
        diagnostic=diagnostic,
        permanent=status.startswith("5"),
        reported_at=reported_at,
        verp_token=verp_token,
        message_id=message_id,
        action=action,
    )
