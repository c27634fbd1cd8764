"""Bounce-message parser: raw report e-mails to per-recipient ``ParsedReport`` values.

It reads, in this order of trust:

1. RFC 5965 ARF feedback reports (``message/feedback-report``) -> ``complaint``;
2. RFC 3464 delivery status notifications (``message/delivery-status`` and
   ``message/global-delivery-status`` parts, wherever they sit in the MIME tree),
   one report per recipient block (:mod:`._dsn`), whatever the message's
   ``Auto-Submitted`` header says;
3. Amazon SES notifications mailed as JSON;
4. the plain-text bounces that Postfix, qmail, Exim, Sendmail, Exchange, Gmail
   and many other servers still send (:mod:`._plain`);
5. RFC 3834 auto-replies (``Auto-Submitted: auto-replied``, ``X-Autoreply``,
   vacation or out-of-office subjects...) -> ``autoreply``.

Every failure carries a non-empty ``detail`` and a ``reason`` (:mod:`._verdict`);
warnings ("will keep trying") and challenge/response requests are ``delayed``.

Limits (hostile input costs time in proportion to its size, never more): a
message over ``max_bytes`` (default ``MAX_MESSAGE_BYTES``, 10 MB) is refused
before it is read, with ``ParsedMessage.refused`` saying why; the MIME reader's
limits are in :mod:`._mime` (header blocks, parts, nesting, text per part),
recipient lines in :mod:`._plain`, recipients per message in :mod:`._dsn`.
Line endings are normalised first, any charset that can be named is decoded
and the rest replaced, and the parser never raises: garbage gives a
``ParsedMessage`` without reports.
"""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime

from broadcast_domain.ports import ParsedMessage, ParsedReport

from . import _verdict
from ._dsn import MAX_REPORTS, dsn_reports, feedback_fields, permanent, prefer_status
from ._mime import Part, read_message
from ._plain import is_daemon, split_original, text_reports
from ._scan import addresses, collapse, enhanced, has_any, html_to_text, message_ids, reply_code

__all__ = ["MAX_MESSAGE_BYTES", "BounceMessageParser", "parse_bounce"]

MAX_MESSAGE_BYTES = 10_000_000
"""Messages larger than this are refused unread (``ParsedMessage.refused``)."""

_SUBJECT_LIMIT = 1000

_EMPTY = ParsedMessage(
    reports=(), envelope_candidates=(), original_message_ids=(), message_id=None, date=None
)

_ENVELOPE_HEADERS = (
    "to",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "x-delivered-to",
    "return-path",
    "x-rcpt-to",
)
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_ORIGINAL_TYPES = frozenset(
    {
        "message/rfc822",
        "message/global",
        "message/partial",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global-headers",
    }
)

# Subjects that announce a failure report (to tell a plain-text bounce from an
# ordinary message or an auto-reply), lower-cased, matched as substrings.
_BOUNCE_SUBJECT = (
    "undeliver",
    "undelivr",
    "delivery notification",
    "delivery status notification",
    "delivery fail",
    "failure notice",
    "failed delivery",
    "mail delivery",
    "returned mail",
    "return to sender",
    "returned to sender",
    "mail system error",
    "delivery problem",
    "could not deliver",
    "could not be deliver",
    "not delivered",
    "nondeliver",
    "non-deliver",
    "non remis",
    "unzustellbar",
    "no entregado",
    "non recapitabile",
    "warning: could not send",
    "delayed mail",
    "delivery delay",
    "message status",
    "mail failure",
    "rejected",
    "bounce",
    "ndn",
    "dsn",
    "permanent error",
    "error sending",
    "sending failed",
    "delivery report",
    "mail could not",
    "unable to deliver",
    "delivery has failed",
    "message you sent",
    "problem with",
    "failed",
    "error",
    "notice",
    "配信",
    "届け",
    "エラー",
    "返送",
)
_DELAY_SUBJECT = (
    "delayed mail",
    "still being retried",
    "warning: could not send message for past",
    "delivery status notification (delay)",
    "delivery delayed",
    "delivery delay",
    "message delayed",
    "delayed",
    "temporary failure",
)
_AUTOREPLY_SUBJECT = (
    "out of office",
    "out of the office",
    "out-of-office",
    "vacation",
    "auto reply",
    "auto-reply",
    "auto_reply",
    "autoreply",
    "automatic reply",
    "automatic-reply",
    "auto response",
    "auto-response",
    "automatic response",
    "autoresponse",
    "auto-antwort",
    "autoantwort",
    "automatische antwort",
    "auto:",
    "abwesenheit",
    "away from",
    "on leave",
    "réponse automatique",
    "respuesta automática",
    "自動応答",
    "不在",
)
# Sentences that only failure reports contain.
_BOUNCE_BODY = (
    "could not be delivered to one or more",
    "wasn't able to deliver your message",
    "wasnt able to deliver your message",
    "message could not be delivered",
    "mail could not be delivered",
    "message couldn't be delivered",
    "message cannot be delivered",
    "message can not be delivered",
    "delivery has failed",
    "following address had",
    "following addresses had",
    "following address(es) had",
    "following recipient failed",
    "following recipients failed",
    "following recipient had",
    "following recipients had",
    "unable to deliver your message",
    "unable to deliver the message",
    "undeliverable",
    "delivery to the following",
    "error: invalid user address",
    "permanent fatal errors",
    "returned to sender",
    "transcript of session follows",
    "this is the qmail-send program",
    "this message was created automatically by mail delivery software",
    "the mail system",
    "i'm sorry to have to inform you",
)


class BounceMessageParser:
    """A ``BounceParser``: calling it parses one raw message and never raises."""

    __slots__ = ("max_bytes",)

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes

    def __call__(self, raw: bytes) -> ParsedMessage:
        """Parse one message; see ``parse_bounce``."""
        return parse_bounce(raw, max_bytes=self.max_bytes)


def parse_bounce(raw: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> ParsedMessage:
    """Parse one raw report message into per-recipient reports and correlation hints.

    A message over ``max_bytes`` is not read: the result has no reports and
    ``refused`` says why. Never raises: a message that cannot be read at all
    gives no reports.
    """
    if len(raw) > max_bytes:
        return ParsedMessage(
            reports=(),
            envelope_candidates=(),
            original_message_ids=(),
            message_id=None,
            date=None,
            refused=(
                f"the message is {len(raw):,} bytes, over the parser's limit of "
                f"{max_bytes:,} bytes: not read"
            ),
        )
    try:
        return _parse(raw)
    except (RecursionError, MemoryError):
        return _EMPTY
    except Exception:
        # Decoders raise many undocumented errors on broken input; the contract
        # is "never raise", so anything left over means "no reports".
        return _EMPTY


# --------------------------------------------------------------------------- helpers


def _normalise(raw: bytes) -> str:
    data = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in raw else raw
    return data.decode("latin-1")


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value[:200])
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        # RFC 5322 "-0000" means UTC with no local-zone information.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


class _Walk:
    """Everything collected from one pass over the MIME tree."""

    __slots__ = (
        "dsn_texts",
        "feedback_texts",
        "original_headers",
        "original_ids",
        "original_rcpts",
        "text_parts",
    )

    def __init__(self) -> None:
        self.dsn_texts: list[str] = []
        self.feedback_texts: list[str] = []
        self.text_parts: list[str] = []
        self.original_ids: list[str] = []
        self.original_rcpts: list[str] = []
        self.original_headers: list[Part] = []

    def note_original(self, inner: Part) -> None:
        self.original_headers.append(inner)
        for value in inner.headers("message-id"):
            for mid in message_ids(value):
                if mid not in self.original_ids:
                    self.original_ids.append(mid)
        known = {a.lower() for a in self.original_rcpts}
        for value in inner.headers("to"):
            for addr in addresses(value):
                if addr.lower() not in known:
                    known.add(addr.lower())
                    self.original_rcpts.append(addr)


def _dsn_start(text: str) -> int:
    """Where delivery-status fields begin in a text part, or -1."""
    lowered = text.lower()
    best = -1
    for name in ("reporting-mta", "arrival-date", "original-recipient", "final-recipient"):
        at = lowered.find(name)
        while at >= 0:
            if (at == 0 or lowered[at - 1] == "\n") and lowered[at + len(name) :].lstrip(
                " \t"
            ).startswith(":"):
                break
            at = lowered.find(name, at + 1)
        if at >= 0 and (best < 0 or at < best):
            best = at
    if best < 0:
        return -1
    window = lowered[best : best + 2000]
    has_recipient = (
        "\nfinal-recipient" in window
        or "\noriginal-recipient" in window
        or (window.startswith(("final-recipient", "original-recipient")))
    )
    if has_recipient and ("\naction" in window or "\nstatus" in window):
        return best
    return -1


def _walk(root: Part, out: _Walk) -> None:
    stack: list[tuple[Part, int]] = [(root, 0)]
    while stack:
        part, depth = stack.pop()
        ctype = part.content_type
        if ctype in _DSN_TYPES:
            out.dsn_texts.append(part.text())
            continue
        if ctype == "message/feedback-report":
            out.feedback_texts.append(part.text())
            continue
        if ctype in _ORIGINAL_TYPES:
            if part.children:
                out.note_original(part.children[0])
            continue
        if part.children:
            stack.extend((child, depth + 1) for child in reversed(part.children))
            continue
        maintype = ctype.split("/", 1)[0]
        if maintype == "text" or (ctype == "application/octet-stream" and depth == 0):
            text = part.text()
            if ctype == "text/html":
                text = html_to_text(text)
            start = _dsn_start(text)
            if start >= 0:
                # Delivery-status fields in a text part: a mislabelled part, or a
                # report whose MIME structure is broken.
                out.dsn_texts.append(text[start:])
            out.text_parts.append(text)


# --------------------------------------------------------------------------- complaints


def _complaint(rcpt: str | None, diagnostic: str, ftype: str) -> ParsedReport:
    return ParsedReport(
        action="complaint",
        recipient=rcpt,
        status=None,
        reply_code=None,
        diagnostic=diagnostic,
        permanent=False,
        feedback_type=ftype,
        detail=diagnostic,
    )


def _feedback_reports(texts: list[str], walk: _Walk) -> list[ParsedReport]:
    reports: list[ParsedReport] = []
    for text in texts:
        fields = feedback_fields(text)
        ftype = (fields.get("feedback-type") or ["abuse"])[0].lower() or "abuse"
        rcpts: list[str | None] = []
        for key in ("original-rcpt-to", "removal-recipient"):
            for value in fields.get(key, []):
                for addr in addresses(value):
                    if addr not in rcpts:
                        rcpts.append(addr)
        if not rcpts:
            rcpts = list(walk.original_rcpts)
        if not rcpts:
            rcpts = [None]
        agent = collapse(" ".join(fields.get("user-agent", [])))
        reports += [_complaint(rcpt, agent, ftype) for rcpt in rcpts[:MAX_REPORTS]]
    return reports


def _other_complaints(subject: str, sender: list[str], walk: _Walk) -> list[ParsedReport]:
    """Complaints that do not use ARF.

    Microsoft's JMRP returns the reported message with an
    ``X-HmXmrOriginalRecipient`` header; an RFC 2369 ``mailto:`` unsubscribe
    request (subject "unsubscribe") is an opt-out by its sender.
    """
    for inner in walk.original_headers:
        marked = inner.header("x-hmxmroriginalrecipient")
        if marked:
            rcpts = addresses(marked) or walk.original_rcpts[:1]
            return [_complaint(rcpt, subject, "abuse") for rcpt in rcpts]
    if subject.strip().lower() == "unsubscribe" and sender:
        return [_complaint(sender[0], subject, "opt-out")]
    return []


# --------------------------------------------------------------------------- provider JSON


def _json_reports(texts: list[str]) -> list[ParsedReport] | None:
    """Amazon SES notifications mailed as JSON (bounce, complaint, delivery)."""
    for text in texts:
        start = text.find("{")
        if start < 0 or ("notificationType" not in text and "eventType" not in text):
            continue
        try:
            # strict=False: mail software wraps long lines inside JSON strings.
            data = json.JSONDecoder(strict=False).raw_decode(text[start:])[0]
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("Message"), str):
            try:
                data = json.loads(data["Message"])
            except ValueError:
                continue
        if not isinstance(data, dict):
            continue
        reports = _ses(data)
        if reports is not None:
            return reports
    return None


def _ses(data: dict[str, object]) -> list[ParsedReport] | None:
    kind = str(data.get("notificationType") or data.get("eventType") or "").lower()
    reports: list[ParsedReport] = []
    bounce, complaint, delivery = data.get("bounce"), data.get("complaint"), data.get("delivery")
    if kind == "bounce" and isinstance(bounce, dict):
        hard = str(bounce.get("bounceType", "")).lower() == "permanent"
        for item in bounce.get("bouncedRecipients") or []:
            if not isinstance(item, dict):
                continue
            diag = collapse(str(item.get("diagnosticCode") or ""))
            status = prefer_status(enhanced(str(item.get("status") or "")), diag)
            reply = reply_code(diag)
            detail, reason = _verdict.decide(
                action="failed",
                status=status,
                reply=reply,
                diagnostic=diag,
                explanation="",
                comment="",
            )
            reports.append(
                ParsedReport(
                    action="failed",
                    recipient=str(item.get("emailAddress") or "") or None,
                    status=status,
                    reply_code=reply,
                    diagnostic=diag,
                    permanent=permanent(status, reply, fallback=hard),
                    reason=reason,
                    detail=detail,
                )
            )
    elif kind == "complaint" and isinstance(complaint, dict):
        ftype = str(complaint.get("complaintFeedbackType") or "abuse")
        agent = collapse(str(complaint.get("userAgent") or ""))
        for item in complaint.get("complainedRecipients") or []:
            if isinstance(item, dict):
                reports.append(
                    _complaint(str(item.get("emailAddress") or "") or None, agent, ftype)
                )
    elif kind == "delivery" and isinstance(delivery, dict):
        diag = collapse(str(delivery.get("smtpResponse") or ""))
        for rcpt in delivery.get("recipients") or []:
            reports.append(
                ParsedReport(
                    action="delivered",
                    recipient=str(rcpt),
                    status=enhanced(diag) or "2.6.0",
                    reply_code=reply_code(diag),
                    diagnostic=diag,
                    permanent=False,
                    detail=diag,
                )
            )
    else:
        return None
    return reports[:MAX_REPORTS]


# --------------------------------------------------------------------------- top level


def _autoreply(root: Part, subject: str) -> bool:
    auto = root.header("auto-submitted").lower()
    if auto.startswith("auto-replied"):
        return True
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder", "x-vacation"):
        if name in root.fields:
            return True
    precedence = root.header("precedence").lower()
    if precedence in ("auto_reply", "auto-reply"):
        return True
    return has_any(subject.lower(), _AUTOREPLY_SUBJECT)


def _looks_like_bounce(root: Part, subject: str, sender: list[str], bodies: list[str]) -> bool:
    if any(is_daemon(addr) for addr in sender):
        return True
    if any(has_any(body[:20_000].lower(), _BOUNCE_BODY) for body in bodies[:2]):
        return True
    if "x-failed-recipients" in root.fields:
        return True
    lowered = subject.lower()
    return has_any(lowered, _BOUNCE_SUBJECT) and not has_any(lowered, _AUTOREPLY_SUBJECT)


def _quoted_ids(text: str, own: str | None, found: list[str]) -> None:
    """Message-ID header lines quoted in a text (indented, prefixed, in a part of their own)."""
    lowered = text.lower()
    at = lowered.find("message-id")
    while at >= 0 and len(found) < MAX_REPORTS:
        line_start = text.rfind("\n", 0, at) + 1
        prefix = text[line_start:at]
        rest = lowered[at + 10 : at + 10 + 4].lstrip(" \t")
        if not prefix.strip(" \t>|") and rest.startswith(":"):
            line_end = text.find("\n", at)
            line = text[at : line_end if line_end >= 0 else len(text)]
            for mid in message_ids(line.partition(":")[2])[:1]:
                if mid != own and mid not in found:
                    found.append(mid)
        at = lowered.find("message-id", at + 10)


def _parse(raw: bytes) -> ParsedMessage:
    root = read_message(_normalise(raw))
    subject = root.header("subject")[:_SUBJECT_LIMIT]
    own_ids = message_ids(root.header("message-id"))
    message_id = own_ids[0] if own_ids else None
    date = _date(root.header("date"))

    envelope: list[str] = []
    for name in _ENVELOPE_HEADERS:
        for value in root.headers(name):
            for addr in addresses(value):
                if addr not in envelope:
                    envelope.append(addr)

    walk = _Walk()
    _walk(root, walk)

    sender = addresses(root.header("from"))
    reports: list[ParsedReport] = []
    if walk.feedback_texts:
        reports = _feedback_reports(walk.feedback_texts, walk)
    bodies: list[str] = []
    for text in walk.text_parts:
        body, original = split_original(text)
        bodies.append(body)
        if original is not None:
            walk.note_original(original)
    if not reports:
        reports = _other_complaints(subject, sender, walk)
    if not reports and walk.dsn_texts:
        notice = "\n\n".join(b for b in bodies if b.strip() and _dsn_start(b) < 0)
        reports = dsn_reports(walk.dsn_texts, walk.original_rcpts, _verdict.Notice(notice))
    if not reports:
        json_reports = _json_reports(walk.text_parts)
        if json_reports is not None:
            reports = json_reports
    if not reports and _looks_like_bounce(root, subject, sender, bodies):
        # The bounce's own sender and addressee (the original sender) are not
        # failed recipients; Delivered-To and friends may legitimately be.
        exclude = {a.lower() for a in sender} | {a.lower() for a in addresses(root.header("to"))}
        for inner in walk.original_headers:
            exclude.update(a.lower() for a in addresses(inner.header("from")))
        header_rcpts: list[str] = []
        for value in root.headers("x-failed-recipients"):
            header_rcpts += [a for a in addresses(value) if a not in header_rcpts]
        # The original's recipients are never excluded, even if they also sent it.
        exclude -= {a.lower() for a in header_rcpts} | {a.lower() for a in walk.original_rcpts}
        body = "\n\n".join(b for b in bodies if b.strip())
        delayed = has_any(subject.lower(), _DELAY_SUBJECT) or _verdict.is_warning(body[:20_000])
        reports = text_reports(body, exclude, header_rcpts, walk.original_rcpts, delayed)
    if not reports and _autoreply(root, subject):
        who = sender[0] if sender else (envelope[0] if envelope else None)
        reports = [
            ParsedReport(
                action="autoreply",
                recipient=who,
                status=None,
                reply_code=None,
                diagnostic=subject,
                permanent=False,
                detail=subject,
            )
        ]
    if not walk.original_ids:
        for text in walk.text_parts:
            _quoted_ids(text, message_id, walk.original_ids)
    # Office 365 NDRs and auto-replies name the original in In-Reply-To.
    for found in message_ids(root.header("in-reply-to")):
        if found not in walk.original_ids:
            walk.original_ids.append(found)
    return ParsedMessage(
        reports=tuple(reports),
        envelope_candidates=tuple(envelope),
        original_message_ids=tuple(walk.original_ids),
        message_id=message_id,
        date=date,
    )
