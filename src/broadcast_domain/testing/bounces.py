"""Report messages for tests: RFC 3464 DSNs, RFC 5965 ARF complaints, RFC 3834 auto-replies.

Each builder answers one message a transport really received (an
``OutgoingMessage``, e.g. from ``ScriptedTransport.sent``): a DSN is addressed
to the message's VERP envelope sender, or, with ``verp=False``, to the plain
return path so that only the quoted original headers (its Message-ID) can
correlate it. :func:`retarget` rewrites a real bounce (from a corpus) so that
it names one of your deliveries.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime

from broadcast_domain.ports import OutgoingMessage

__all__ = ["build_arf", "build_auto_reply", "build_dsn", "original_headers", "retarget"]


def original_headers(message: OutgoingMessage) -> str:
    """The header block of the message as handed over (what a DSN quotes)."""
    head = message.data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    return head.decode("utf-8", "replace")


def _plain_return_path(envelope_from: str) -> str:
    local, _, domain = envelope_from.rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def _tag(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _finish(text: str, newline: str) -> bytes:
    return text.replace("\n", newline).encode("utf-8")


def build_dsn(
    message: OutgoingMessage,
    *,
    verp: bool = True,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
    date: datetime | None = None,
    reporting_mta: str = "mx.example.net",
    newline: str = "\n",
    extra_recipients: Iterable[str] = (),
) -> bytes:
    """An RFC 3464 delivery status notification about ``message``.

    ``extra_recipients`` adds per-recipient blocks for other addresses (a
    report about several recipients); ``newline`` picks LF, CRLF or CR.
    """
    when = format_datetime((date or datetime(2026, 11, 2, 9, 5, tzinfo=UTC)).astimezone(UTC))
    to = message.envelope_from if verp else _plain_return_path(message.envelope_from)
    blocks = []
    for rcpt in (message.recipient, *extra_recipients):
        blocks.append(
            f"Final-Recipient: rfc822; {rcpt}\n"
            f"Action: {action}\n"
            f"Status: {status}\n"
            f"Remote-MTA: dns; {reporting_mta}\n"
            f"Diagnostic-Code: {diagnostic.format(rcpt=rcpt)}\n"
        )
    text = (
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\n"
        f"To: {to}\n"
        f"Subject: Undelivered Mail Returned to Sender\n"
        f"Date: {when}\n"
        f"Message-ID: <dsn-{_tag(message.message_id, action, status)}@{reporting_mta}>\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="=_dsn_="\n'
        "\n"
        "--=_dsn_=\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "This is the mail system. I'm sorry to have to inform you that your message\n"
        "could not be delivered to one or more recipients.\n"
        "\n"
        "--=_dsn_=\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        f"Reporting-MTA: dns; {reporting_mta}\n"
        f"Arrival-Date: {when}\n"
        "\n" + "\n".join(blocks) + "\n"
        "--=_dsn_=\n"
        "Content-Type: text/rfc822-headers\n"
        "\n"
        f"{original_headers(message)}\n"
        "\n"
        "--=_dsn_=--\n"
    )
    return _finish(text, newline)


def build_arf(message: OutgoingMessage, *, newline: str = "\n") -> bytes:
    """An RFC 5965 abuse report (a recipient pressed "this is spam") quoting ``message``."""
    text = (
        "From: Feedback Loop <fbl@isp.example.net>\n"
        f"To: {_plain_return_path(message.envelope_from)}\n"
        "Subject: FW: complaint about message\n"
        "Date: Mon, 02 Nov 2026 10:00:00 +0000\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="=_arf_="\n'
        "\n"
        "--=_arf_=\n"
        "Content-Type: text/plain\n"
        "\n"
        "This is an email abuse report.\n"
        "\n"
        "--=_arf_=\n"
        "Content-Type: message/feedback-report\n"
        "\n"
        "Feedback-Type: abuse\n"
        "User-Agent: ExampleFBL/1.0\n"
        "Version: 1\n"
        f"Original-Rcpt-To: {message.recipient}\n"
        "Arrival-Date: Mon, 02 Nov 2026 09:01:00 +0000\n"
        "\n"
        "--=_arf_=\n"
        "Content-Type: message/rfc822\n"
        "\n"
        f"{original_headers(message)}\n"
        "\n"
        "body\n"
        "\n"
        "--=_arf_=--\n"
    )
    return _finish(text, newline)


def build_auto_reply(message: OutgoingMessage, *, newline: str = "\n") -> bytes:
    """An RFC 3834 out-of-office reply from the recipient, sent to the envelope sender."""
    text = (
        f"From: {message.recipient}\n"
        f"To: {message.envelope_from}\n"
        "Subject: Out of Office: back on Monday\n"
        "Date: Mon, 02 Nov 2026 09:10:00 +0000\n"
        "Auto-Submitted: auto-replied\n"
        f"In-Reply-To: {message.message_id}\n"
        "\n"
        "I am away until Monday and will read your message then.\n"
    )
    return _finish(text, newline)


def retarget(
    raw: bytes,
    *,
    replacements: Iterable[tuple[str, str]],
    to: str | None = None,
) -> bytes:
    """A copy of ``raw`` with each (old, new) text replaced everywhere (case-insensitive).

    ``to`` replaces the top-level To header (e.g. with a VERP address). Use it
    to make a real bounce from a corpus name one of your deliveries: replace
    its failed recipient with your recipient's address and its quoted
    Message-ID with yours.
    """
    out = raw
    for old, new in replacements:
        if old:
            out = re.sub(
                re.escape(old.encode("utf-8")),
                new.encode("utf-8").replace(b"\\", b"\\\\"),
                out,
                flags=re.IGNORECASE,
            )
    if to is not None:
        head, sep, body = (
            out.partition(b"\n\n") if b"\r\n\r\n" not in out else out.partition(b"\r\n\r\n")
        )
        eol = b"\r\n" if sep == b"\r\n\r\n" else b"\n"
        lines = head.split(eol)
        kept: list[bytes] = []
        skipping = False
        for line in lines:
            if skipping and line[:1] in (b" ", b"\t"):
                continue
            skipping = line.lower().startswith(b"to:")
            if not skipping:
                kept.append(line)
        kept.append(b"To: " + to.encode("ascii"))
        out = eol.join(kept) + sep + body
    return out
