"""Report messages answering one delivery a transport received, and real bounces retargeted.

:func:`build_dsn`, :func:`build_arf` and :func:`build_auto_reply` answer one
message a transport really received (an ``OutgoingMessage``, e.g. from
``ScriptedTransport.sent``) through
:func:`broadcast_domain.testing.reports.report_on`, with dates and texts fixed
so that the same call gives the same bytes: a DSN is addressed to the message's
VERP envelope sender, or, with ``verp=False``, to the plain return path so that
only the quoted original headers (its Message-ID) can correlate it.
:func:`retarget` rewrites a real bounce (from a corpus) so that it names one of
your deliveries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from broadcast_domain.domain.values import BounceReport
from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import OutgoingMessage
from broadcast_domain.testing.reports import failure_report, header_block, report_on

__all__ = [
    "HOSTILE_FAMILIES",
    "build_arf",
    "build_auto_reply",
    "build_dsn",
    "hostile_bounce",
    "original_headers",
    "retarget",
]

_DSN_DATE = datetime(2026, 11, 2, 9, 5, tzinfo=UTC)
_ARF_DATE = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
_AUTO_REPLY_DATE = datetime(2026, 11, 2, 9, 10, tzinfo=UTC)


def original_headers(message: OutgoingMessage) -> str:
    """The header block of the message as handed over (what a DSN quotes)."""
    return header_block(message.data)


def build_dsn(
    message: OutgoingMessage,
    *,
    verp: bool = True,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "<{rcpt}>: Recipient address rejected: User unknown",
    reply_code: str | None = None,
    date: datetime | None = None,
    newline: str = "\n",
    extra_recipients: Iterable[str] = (),
) -> bytes:
    """An RFC 3464 delivery status notification about ``message``.

    The diagnostic reads ``smtp; <reply_code> <status> <diagnostic>``, with
    ``{rcpt}`` in ``diagnostic`` standing for each recipient's address;
    ``extra_recipients`` adds per-recipient blocks for other addresses (a
    report about several recipients); ``newline`` picks LF, CRLF or CR.
    """

    def about(rcpt: str) -> BounceReport:
        return failure_report(
            rcpt,
            reported_at=date or _DSN_DATE,
            status=status,
            diagnostic=diagnostic.format(rcpt=rcpt),
            action=action,
        )

    return report_on(
        message,
        about(message.recipient),
        verp=verp,
        line_ending=newline,
        reply_code=reply_code,
        also=[about(rcpt) for rcpt in extra_recipients],
    )


def build_arf(message: OutgoingMessage, *, newline: str = "\n") -> bytes:
    """An RFC 5965 abuse report (a recipient pressed "this is spam") quoting ``message``.

    It goes to the plain return path: only the quoted original names the delivery.
    """
    report = failure_report(
        message.recipient,
        reported_at=_ARF_DATE,
        status="5.7.1",
        diagnostic="ExampleFBL/1.0",
        action="complaint",
    )
    return report_on(message, report, verp=False, line_ending=newline, original="message")


def build_auto_reply(message: OutgoingMessage, *, newline: str = "\n") -> bytes:
    """An RFC 3834 out-of-office reply from the recipient, sent to the envelope sender."""
    report = failure_report(
        message.recipient,
        reported_at=_AUTO_REPLY_DATE,
        status="2.0.0",
        diagnostic="I am away until Monday and will read your message then.",
        action="autoreply",
    )
    return report_on(message, report, line_ending=newline)


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


HOSTILE_FAMILIES = (
    "lt",
    "at",
    "a",
    "lt-a-at",
    "message-ids",
    "deep-mime",
    "dsn-blocks",
    "header",
    "html",
)
"""Pathological bounce bodies built from one repeated fragment, by name:

``lt`` (``<``), ``at`` (``@``), ``a`` (one endless line of ``a``), ``lt-a-at``
(``<a@``), ``message-ids`` (a quoted header block of Message-ID lines),
``deep-mime`` (multiparts nested inside each other), ``dsn-blocks``
(delivery-status recipient blocks), ``header`` (one folded ``To:`` header of
addresses), ``html`` (unclosed tags and encoded words in an HTML part).
"""

_HOSTILE_HEAD = (
    "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
    "To: bounces@example.com\n"
    "Subject: Undelivered Mail Returned to Sender\n"
    "Date: Mon, 2 Nov 2026 09:05:00 +0000\n"
    "Message-ID: <hostile@mx.example.net>\n"
)


def _repeat(fragment: str, size: int) -> str:
    return fragment * max(1, size // len(fragment))


def hostile_bounce(family: str, size: int) -> bytes:
    """A bounce of about ``size`` bytes whose body repeats one pathological fragment.

    ``family`` is one of HOSTILE_FAMILIES (anything else is InvalidInput). The
    messages are what anyone may send to a return path: a parser must answer
    each in time proportional to its size.
    """
    head = _HOSTILE_HEAD
    if family == "lt":
        body = _repeat("<", size)
    elif family == "at":
        body = _repeat("@", size)
    elif family == "a":
        body = "user@example.org failed:\n" + _repeat("a", size)
    elif family == "lt-a-at":
        body = _repeat("<a@", size)
    elif family == "message-ids":
        body = "--- original message follows ---\n\n" + _repeat(
            "Message-ID: <a.b.c@example.org>\n", size
        )
    elif family == "deep-mime":
        depth = max(1, size // 80)
        head += 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b0"\n'
        opening = "".join(
            f'--b{i}\nContent-Type: multipart/mixed; boundary="b{i + 1}"\n\n' for i in range(depth)
        )
        body = opening + "text <a@\n" + "".join(f"--b{i}--\n" for i in reversed(range(depth)))
    elif family == "dsn-blocks":
        head += (
            "MIME-Version: 1.0\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\n'
        )
        block = "Final-Recipient: rfc822; u@example.org\nAction: failed\nStatus: 5.1.1\n\n"
        body = (
            "--r\nContent-Type: text/plain\n\nfailed\n"
            "--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
            + _repeat(block, size)
            + "--r--\n"
        )
    elif family == "header":
        head = head.replace(
            "To: bounces@example.com\n", "To: " + _repeat("a@b.example,\n ", size) + "x@y.example\n"
        )
        body = "user@example.org: 550 5.1.1 unknown\n"
    elif family == "html":
        head += "MIME-Version: 1.0\nContent-Type: text/html\n"
        body = _repeat("<script <b =?utf-8?q?x ", size)
    else:
        raise InvalidInput(
            f"family {family!r} is not one of {', '.join(HOSTILE_FAMILIES)}", field="family"
        )
    return (head + "\n" + body).encode("utf-8")
