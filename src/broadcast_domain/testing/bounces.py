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

__all__ = ["build_arf", "build_auto_reply", "build_dsn", "original_headers", "retarget"]

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
    A ``diagnostic`` that starts with ``smtp;`` (a whole Diagnostic-Code) is
    InvalidInput: give its codes as ``reply_code`` and ``status``.
    """
    if diagnostic.lstrip().lower().startswith("smtp;"):
        raise InvalidInput(
            f"diagnostic {diagnostic!r} is a whole Diagnostic-Code; build_dsn writes "
            "'smtp; <reply_code> <status> ' itself: pass the codes as reply_code= and "
            "status= and only the text after them as diagnostic=",
            field="diagnostic",
        )

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
