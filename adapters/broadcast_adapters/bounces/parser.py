"""Bounce-message parser: raw report e-mails to per-recipient ``ParsedReport`` values.

It reads, in this order of trust:

1. RFC 5965 ARF feedback reports (``message/feedback-report``) -> ``complaint``;
2. RFC 3464 delivery status notifications (``message/delivery-status`` and
   ``message/global-delivery-status`` parts, wherever they sit in the MIME tree),
   one report per recipient block;
3. the plain-text bounces that Postfix, qmail, Exim, Exchange, Gmail, Yahoo and
   many other servers still send: recipients are found where those formats put
   them, and each recipient's status and reply codes are taken from the text
   that follows it;
4. RFC 3834 auto-replies (``Auto-Submitted: auto-replied``, ``X-Autoreply``,
   vacation or out-of-office subjects...) -> ``autoreply``.

The parser normalises line endings first, decodes any charset it can name and
replaces what it cannot, and never raises: garbage gives a ``ParsedMessage``
without reports.
"""

from __future__ import annotations

import email
import email.header
import email.message
import email.utils
import html
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from broadcast_domain.ports import ParsedMessage, ParsedReport

__all__ = ["BounceMessageParser", "parse_bounce"]

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

# Enhanced status code (RFC 3463); the look-arounds keep IP addresses and
# version numbers out.
_ENHANCED = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?![\w]|\.\d)")
# SMTP reply code: only where servers print one, so that sizes, dates and
# counts in the prose are not taken for codes.
# Servers that label the code instead of starting the line with it (Zoho).
_LABELLED_REPLY = re.compile(
    r"(?:error_code|responsecode|reply code|smtp code)\s*[:=]?\s*([245]\d\d)\b", re.I
)
_REPLY = re.compile(
    r"(?:^|[\s:;(\[<\"'#=])([245][0-9][0-9])(?=[\s-]+[A-Za-z0-9<#(\[]|[-\s]*$)", re.MULTILINE
)
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
    r"[A-Za-z0-9-]{2,}|[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@\[[0-9.:a-fA-F]+\]"
)
_WS = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]*>")
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BR = re.compile(r"<\s*(?:br|/p|/div|/tr|/li|p|div|tr|li|h\d)\b[^>]*>", re.IGNORECASE)

_ACTIONS = {
    "failed": "failed",
    "failure": "failed",
    "fail": "failed",
    "error": "failed",
    "delayed": "delayed",
    "delay": "delayed",
    "delivered": "delivered",
    "deliverable": "delivered",
    "relayed": "relayed",
    "expanded": "expanded",
}

_DAEMON_LOCALPARTS = re.compile(
    r"^(?:mailer-daemon|mailer_daemon|mailerdaemon|post_?master|double-bounce|"
    r"bounce|bounces|nobody|noreply|no-reply|daemon|mail-daemon|mdaemon|"
    r"mail_daemon|abuse|root)$",
    re.IGNORECASE,
)

# Subjects and senders that announce a failure report (used to tell a plain-text
# bounce from an ordinary message or an auto-reply).
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivr|delivery (?:status )?notification|delivery fail|"
    r"failure notice|failed delivery|mail delivery|returned mail|return(?:ed)? to sender|"
    r"mail system error|delivery problem|could not (?:be )?deliver|not delivered|"
    r"nondeliver|non-deliver|non remis|unzustellbar|no entregado|non recapitabile|"
    r"warning: could not send|delayed mail|delivery delay|message status|"
    r"mail failure|rejected|bounce|NDN|DSN|permanent error|"
    r"error sending|sending failed|delivery report|mail could not|"
    r"unable to deliver|delivery has failed|message you sent|problem with|"
    r"undelivered|failed|error|notice|配信|届け|エラー|返送",
    re.IGNORECASE,
)
_DELAY_SUBJECT = re.compile(
    r"delayed mail|still being retried|warning: could not send message for past|"
    r"delivery status notification \(delay\)|delivery delayed|delivery delay|"
    r"message delayed|\bdelayed\b|warning: message .* delayed|temporary failure",
    re.IGNORECASE,
)
_AUTOREPLY_SUBJECT = re.compile(
    r"out of (?:the )?office|out-of-office|\bvacation\b|auto(?:matic)?[ _-]?(?:reply|response|"
    r"antwort|respond)|autoreply|\bauto:|abwesenheit|away from|on leave|"
    r"réponse automatique|respuesta automática|自動応答|不在",
    re.IGNORECASE,
)

# Sentences that only failure reports contain.
_BOUNCE_BODY = re.compile(
    r"could not be delivered to one or more|wasn'?t able to deliver your message|"
    r"(?:message|mail) (?:could not|couldn'?t|can ?not) be delivered|delivery has failed|"
    r"following (?:address(?:es|\(es\))?|recipients?) (?:had|failed)|"
    r"unable to deliver (?:your|the) message|undeliverable|delivery to the following|"
    r"error: invalid user address|permanent fatal errors|returned to sender",
    re.IGNORECASE,
)

# Where the copy of the original message begins in a plain-text bounce.
_ORIGINAL_MARKER = re.compile(
    r"^[ \t>|*=_-]*(?:"
    r"(?:below this line is a copy of the message|this is a copy of the message|"
    r"the header of the original message is following|"
    r"(?:the )?(?:original )?(?:message|headers?) (?:of the original message )?"
    r"(?:is|are|was|were) (?:following|attached|below)|"
    r"headers of the original message|copy of (?:the )?(?:original )?message"
    r"(?! (?:was|has|could))).*"
    r"|(?:(?:begin|start) (?:of )?)?(?:original|returned|unsent|undelivered) "
    r"(?:message|mail|e-mail)(?: (?:headers?|header|follows|below|text))*"
    r"(?: follows?| below| is below)?[ \t:.=_-]*"
    r"|message headers? follows?[ \t:.-]*|original mail as follows:?|bounced e-?mail:?"
    r")$",
    re.IGNORECASE | re.MULTILINE,
)
_HEADERISH = re.compile(r"^(?:Received|Return-Path|Message-ID|From|To|Subject|Date):", re.I)

_PERMANENT_HINT = re.compile(
    r"permanent(?:ly)? (?:error|fatal|failure|failed)|i'?ve given up|giving up|"
    r"failed permanently|will not (?:try to )?redeliver|could not be delivered|"
    r"undeliverable|has been rejected|unknown user|user unknown|"
    r"does not exist|no such user|unrouteable|5\d\d\b",
    re.IGNORECASE,
)
_TEMPORARY_HINT = re.compile(
    r"temporar(?:y|ily)|will (?:be )?retr|still trying|not yet been delivered|"
    r"will continue to try|retry (?:for|until)|delayed|try again later|"
    r"warning message only",
    re.IGNORECASE,
)


class BounceMessageParser:
    """A ``BounceParser``: calling it parses one raw message and never raises."""

    __slots__ = ()

    def __call__(self, raw: bytes) -> ParsedMessage:
        """Parse one message; see ``parse_bounce``."""
        return parse_bounce(raw)


def parse_bounce(raw: bytes) -> ParsedMessage:
    """Parse one raw report message into per-recipient reports and correlation hints.

    Never raises: a message that cannot be read at all gives no reports.
    """
    try:
        return _parse(raw)
    except (RecursionError, MemoryError):
        # Pathologically nested MIME: nothing trustworthy can be read from it.
        return _EMPTY
    except Exception:
        # The email package and codec layer raise many undocumented errors on
        # broken input; the contract is "never raise", so anything left over
        # means "no reports".
        return _EMPTY


# --------------------------------------------------------------------------- helpers


def _normalise(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _header_text(value: object) -> str:
    """Decode an RFC 2047 header value without raising."""
    if value is None:
        return ""
    text = str(value)
    try:
        parts = email.header.decode_header(text)
    except Exception:
        return _WS.sub(" ", text).strip()
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            out.append(_decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    return _WS.sub(" ", "".join(out)).strip()


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def _part_text(part: email.message.Message) -> str:
    """The decoded text of a leaf part; HTML is reduced to its text."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        payload = raw.encode("latin-1", "replace") if isinstance(raw, str) else b""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    text = _decode_bytes(payload, charset)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_type() == "text/html":
        text = _html_to_text(text)
    return text


def _html_to_text(text: str) -> str:
    text = _SCRIPT.sub(" ", text)
    text = re.sub(r'href="mailto:([^"]+)"', r"> \1 <", text, flags=re.IGNORECASE)
    text = _BR.sub("\n", text)
    text = _TAG.sub(" ", text)
    return html.unescape(text)


def _addresses(value: str) -> list[str]:
    """Addresses in a header value or a line of text, lower-cased, in order."""
    found: list[str] = []
    for match in _ADDRESS.finditer(value):
        addr = match.group(0).strip(".'").lower()
        addr = addr.removeprefix("mailto:")
        if addr not in found:
            found.append(addr)
    return found


def _is_daemon(address: str) -> bool:
    local = address.split("@", 1)[0]
    return bool(_DAEMON_LOCALPARTS.match(local))


def _collapse(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        # RFC 5322 "-0000" means UTC with no local-zone information.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _message_ids(value: str) -> list[str]:
    ids = re.findall(r"<[^<>\s]+>", value)
    if ids:
        return ids
    value = value.strip()
    return [f"<{value}>"] if value and " " not in value and "@" in value else []


def _enhanced(text: str) -> str | None:
    match = _ENHANCED.search(text)
    if match is None:
        return None
    return ".".join(match.groups())


def _all_enhanced(text: str) -> list[str]:
    return [".".join(m.groups()) for m in _ENHANCED.finditer(text)]


def _reply_code(text: str) -> str | None:
    match = _REPLY.search(text) or _LABELLED_REPLY.search(text)
    return match.group(1) if match else None


def _is_generic(status: str) -> bool:
    return status.endswith(".0.0")


def _prefer_status(field: str | None, diagnostic: str) -> str | None:
    """Choose between the Status field and a code quoted in the server's reply.

    The remote server's own code says more than the reporting MTA's summary, so
    a code of the same class in the diagnostic wins; of several, the last one,
    because relays wrap the inner server's reply after their own words
    ("554 4.4.7 Message expired <421 4.4.2 Connection timed out>"). A code of
    the other class overrides the Status field only when the reply code at the
    start of the diagnostic agrees with it.
    """
    in_text = _all_enhanced(diagnostic)
    if field is None:
        return in_text[-1] if in_text else None
    same_class = [code for code in in_text if code[0] == field[0] and not _is_generic(code)]
    if same_class:
        return same_class[-1]
    reply = _reply_code(diagnostic)
    if reply and in_text and in_text[0][0] == reply[0] != field[0]:
        # The remote server's reply is self-consistent ("550 5.5.0") and of the
        # other class: it, not the relay's summary, is what happened.
        return in_text[0]
    return field


def _permanent(status: str | None, reply_code: str | None, fallback: bool) -> bool:
    if status:
        return status.startswith("5")
    if reply_code:
        return reply_code.startswith("5")
    return fallback


# --------------------------------------------------------------------------- the walk


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
        self.original_headers: list[email.message.Message] = []


def _block_text(part: email.message.Message) -> str:
    """The text of a message/delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks: list[str] = []
        for block in payload:
            if isinstance(block, email.message.Message):
                lines = [f"{k}: {_header_text(v)}" for k, v in block.items()]
                body = block.get_payload()
                if isinstance(body, str) and body.strip():
                    lines.append(body)
                blocks.append("\n".join(lines))
        return "\n\n".join(blocks)
    return _part_text(part)


def _walk(msg: email.message.Message, out: _Walk, depth: int = 0) -> None:
    if depth > 20:
        return
    ctype = msg.get_content_type()
    if ctype in ("message/delivery-status", "message/global-delivery-status"):
        out.dsn_texts.append(_block_text(msg))
        return
    if ctype == "message/feedback-report":
        out.feedback_texts.append(_block_text(msg))
        return
    if ctype in (
        "message/rfc822",
        "message/global",
        "message/partial",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global-headers",
    ):
        _read_original(msg, out)
        return
    payload = msg.get_payload()
    if msg.is_multipart() and isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, email.message.Message):
                _walk(sub, out, depth + 1)
        return
    maintype = msg.get_content_maintype()
    # A multipart whose boundary never appears arrives as one string: read it
    # as text, DSN fields and all.
    if maintype in ("text", "multipart") or (ctype == "application/octet-stream" and depth == 0):
        text = _part_text(msg)
        dsn = _DSN_START.search(text)
        if dsn and _DSN_FIELD.search(text, dsn.start()):
            # Delivery-status fields in a text part: a mislabelled part, or a
            # report whose MIME structure is broken.
            out.dsn_texts.append(text[dsn.start() :])
        out.text_parts.append(text)


_DSN_START = re.compile(
    r"^(?:Reporting-MTA|Arrival-Date|Original-Recipient|Final-Recipient)\s*:", re.I | re.M
)
_DSN_FIELD = re.compile(
    r"^(?:Final-Recipient|Original-Recipient)\s*:(?:.*\n){1,12}?(?:Action|Status)\s*:", re.I | re.M
)


def _read_original(part: email.message.Message, out: _Walk) -> None:
    inner: email.message.Message | None = None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
        inner = payload[0]
    else:
        text = _part_text(part)
        inner = email.message_from_string(text.lstrip("\n"))
    _note_original(inner, out)


def _note_original(inner: email.message.Message, out: _Walk) -> None:
    out.original_headers.append(inner)
    for value in inner.get_all("message-id", []) or []:
        for mid in _message_ids(_header_text(value)):
            if mid not in out.original_ids:
                out.original_ids.append(mid)
    for value in inner.get_all("to", []) or []:
        for addr in _addresses(_header_text(value)):
            if addr not in out.original_rcpts:
                out.original_rcpts.append(addr)


# --------------------------------------------------------------------------- DSN fields


def _fields(text: str) -> list[dict[str, str]]:
    """Split delivery-status text into field groups (per-message, then per-recipient)."""
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text.split("\n"):
        if not line.strip():
            if current:
                groups.append(current)
                current = {}
            last = None
            continue
        if line[0] in " \t" and last is not None:
            current[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name.strip()):
            continue
        key = name.strip().lower()
        # A recipient block that lost its separating blank line.
        has_recipient = "final-recipient" in current or "original-recipient" in current
        if key in ("final-recipient", "original-recipient") and (
            key in current or (has_recipient and ("action" in current or "status" in current))
        ):
            groups.append(current)
            current = {}
        if key in current and key not in ("final-recipient", "original-recipient"):
            current[key] += " " + value.strip()
        else:
            current[key] = value.strip()
        last = key
    if current:
        groups.append(current)
    return groups


def _typed_address(value: str) -> str | None:
    """``rfc822; user@example.com`` -> ``user@example.com``."""
    _, _, rest = value.rpartition(";")
    found = _addresses(rest or value)
    return found[0] if found else None


def _diagnostic_text(value: str) -> str:
    _, sep, rest = value.partition(";")
    if sep and re.fullmatch(r"\s*[A-Za-z0-9-]+\s*", _):
        value = rest
    return _collapse(value)


def _dsn_reports(
    texts: Iterable[str], fallback_rcpts: list[str], notice: str
) -> list[ParsedReport]:
    reports: list[ParsedReport] = []
    for text in texts:
        groups = _fields(text)
        per_message: dict[str, str] = {}
        for group in groups:
            if "final-recipient" not in group and "original-recipient" not in group:
                if "action" in group or "status" in group:
                    # A recipient block with no recipient field at all.
                    pass
                else:
                    per_message.update(group)
                    continue
            report = _dsn_report(group, per_message, fallback_rcpts, notice)
            if report is not None:
                reports.append(report)
    return reports


def _notice_lines(notice: str, recipient: str | None) -> str:
    """The human-readable notice's lines about one recipient (up to the next blank line)."""
    if not recipient or not notice:
        return ""
    at = notice.lower().find(recipient)
    if at < 0:
        return ""
    start = notice.rfind("\n", 0, at) + 1
    end = notice.find("\n\n", at)
    return notice[start : end if end >= 0 else len(notice)]


def _dsn_report(
    group: dict[str, str],
    per_message: dict[str, str],
    fallback_rcpts: list[str],
    notice: str,
) -> ParsedReport | None:
    recipient = None
    for key in ("final-recipient", "original-recipient", "x-actual-recipient"):
        if key in group:
            recipient = _typed_address(group[key])
            if recipient:
                break
    if recipient is None and len(fallback_rcpts) == 1:
        recipient = fallback_rcpts[0]
    diagnostic = _diagnostic_text(group.get("diagnostic-code", ""))
    field_status = _enhanced(group.get("status", ""))
    if not _all_enhanced(diagnostic) and (
        field_status is None or _is_generic(field_status) or not diagnostic
    ):
        # The fields leave the remote reply out; the notice often quotes it
        # next to the recipient (Sendmail's "(reason: 550 5.7.1 ...)").
        quoted = _collapse(_notice_lines(notice, recipient))
        if _all_enhanced(quoted):
            diagnostic = diagnostic or quoted
            status = _prefer_status(field_status, quoted)
        else:
            status = _prefer_status(field_status, diagnostic)
    else:
        status = _prefer_status(field_status, diagnostic)
    reply = _reply_code(diagnostic)
    action_word = group.get("action", "").strip().lower().split(" ")[0]
    action = _ACTIONS.get(action_word)
    if action is None:
        cls = (status or reply or "5")[0]
        action = {"2": "delivered", "4": "delayed"}.get(cls, "failed")
    if action == "delivered" and status and status[0] in "45":
        action = "failed" if status[0] == "5" else "delayed"
    remote = group.get("remote-mta") or per_message.get("remote-mta")
    remote_host = _diagnostic_text(remote) if remote else None
    return ParsedReport(
        action=action,
        recipient=recipient,
        status=status,
        reply_code=reply,
        diagnostic=diagnostic,
        permanent=action == "failed" and _permanent(status, reply, fallback=True),
        remote_mta=remote_host or None,
    )


# --------------------------------------------------------------------------- ARF


def _feedback_reports(texts: list[str], walk: _Walk) -> list[ParsedReport]:
    reports: list[ParsedReport] = []
    for text in texts:
        fields: dict[str, list[str]] = {}
        for line in text.split("\n"):
            name, sep, value = line.partition(":")
            if sep:
                fields.setdefault(name.strip().lower(), []).append(value.strip())
        ftype = (fields.get("feedback-type") or ["abuse"])[0].lower() or "abuse"
        rcpts: list[str] = []
        for key in ("original-rcpt-to", "removal-recipient"):
            for value in fields.get(key, []):
                for addr in _addresses(value):
                    if addr not in rcpts:
                        rcpts.append(addr)
        if not rcpts:
            rcpts = list(walk.original_rcpts)
        if not rcpts:
            rcpts = [None]  # type: ignore[list-item]
        for rcpt in rcpts:
            reports.append(
                ParsedReport(
                    action="complaint",
                    recipient=rcpt,
                    status=None,
                    reply_code=None,
                    diagnostic=_collapse(" ".join(fields.get("user-agent", []))),
                    permanent=False,
                    feedback_type=ftype,
                )
            )
    return reports


def _other_complaints(
    msg: email.message.Message, subject: str, sender: list[str], walk: _Walk
) -> list[ParsedReport]:
    """Complaints that do not use ARF.

    Microsoft's JMRP returns the reported message with an
    ``X-HmXmrOriginalRecipient`` header; an RFC 2369 ``mailto:`` unsubscribe
    request (subject "unsubscribe") is an opt-out by its sender.
    """
    for inner in walk.original_headers:
        marked = inner.get("x-hmxmroriginalrecipient")
        if marked is not None:
            rcpts = _addresses(_header_text(marked)) or walk.original_rcpts[:1]
            return [
                ParsedReport(
                    action="complaint",
                    recipient=rcpt,
                    status=None,
                    reply_code=None,
                    diagnostic=subject,
                    permanent=False,
                    feedback_type="abuse",
                )
                for rcpt in rcpts
            ]
    if subject.strip().lower() == "unsubscribe" and sender:
        return [
            ParsedReport(
                action="complaint",
                recipient=sender[0],
                status=None,
                reply_code=None,
                diagnostic=subject,
                permanent=False,
                feedback_type="opt-out",
            )
        ]
    return []


# --------------------------------------------------------------------------- plain text


def _split_original(text: str, walk: _Walk) -> str:
    """Cut the quoted original message off a bounce text, noting its headers."""
    match = _ORIGINAL_MARKER.search(text)
    cut: int | None = match.start() if match else None
    if cut is None:
        # No marker: an inline header block (Received:/Return-Path: lines at the
        # start of a line after a blank line) starts the original.
        inline = re.search(
            r"\n\n(?=(?:Return-Path|Received|Message-ID|X-[\w-]+|From|Date|To|Subject|"
            r"DKIM-Signature|MIME-Version|Content-Type):[^\n]*\n(?:[^\n]+\n){2,})",
            text,
        )
        if inline:
            block = text[inline.end() :]
            first = block.split("\n", 1)[0]
            if _HEADERISH.match(first) or first.lower().startswith(("received", "return-path")):
                cut = inline.start()
    if cut is None:
        return text
    rest = text[cut:]
    header_start = re.search(r"^[A-Za-z][\w-]*:[^\n]*$", rest[rest.find("\n") + 1 :], re.M)
    if header_start:
        body = rest[rest.find("\n") + 1 + header_start.start() :]
        block = re.split(r"\n\s*\n", body, maxsplit=1)[0]
        inner = email.message_from_string(
            "\n".join(line[2:] if line.startswith("> ") else line for line in block.split("\n"))
        )
        _note_original(inner, walk)
    return text[:cut]


# Lines where plain-text bounces name a failed recipient.
_RECIPIENT_LINE = re.compile(
    r"^[ \t>*-]*(?:"
    r"(?:original[ -]recipient|final[ -]recipient|recipient(?: address)?(?:\(s\))?|"
    r"failed recipient|to|rcpt to|address|e-?mail|destinataire|empfänger|"
    r"unknown user|user)\s*:?\s*)?"
    r"[\"']?(?:[^<>\n\"]{0,60}?[\"']?\s*)?<?(?:mailto:)?(?P<addr>" + _ADDRESS.pattern + r")>?"
    r"(?P<tail>[:,;.]?[ \t]*(?:on\s.*|\(.*\)|\[.*\]|\.{3}.*|:.*|[ \t][-#(].*)?)$",
    re.IGNORECASE | re.MULTILINE,
)


def _text_recipients(body: str, exclude: set[str]) -> list[tuple[str, int]]:
    """Recipients named on their own line, with the offset of that line."""
    found: list[tuple[str, int]] = []
    seen: set[str] = set()
    for match in _RECIPIENT_LINE.finditer(body):
        addr = match.group("addr").strip(".'").lower()
        if addr in exclude or _is_daemon(addr) or addr in seen:
            continue
        seen.add(addr)
        found.append((addr, match.start()))
    return found


def _permanent_by_words(segment: str, body: str) -> bool:
    """Without any code, the recipient's own lines decide, then the whole notice.

    A notice that gave up (retry timeout, expired in the queue) reports a final
    failure, so only explicit words of a temporary condition make it temporary.
    """
    for text in (segment, body):
        if _TEMPORARY_HINT.search(text):
            return False
        if _PERMANENT_HINT.search(text):
            return True
    return True


def _text_reports(
    body: str,
    exclude: set[str],
    header_rcpts: list[str],
    walk: _Walk,
    delayed: bool,
) -> list[ParsedReport]:
    located = _text_recipients(body, exclude)
    rcpts = [addr for addr, _ in located]
    if header_rcpts:
        # X-Failed-Recipients is authoritative for who failed.
        ordered = [addr for addr in rcpts if addr in header_rcpts]
        ordered += [addr for addr in header_rcpts if addr not in ordered]
        positions = dict(located)
        located = [(addr, positions.get(addr, -1)) for addr in ordered]
    if not located:
        loose = [a for a in _addresses(body) if a not in exclude and not _is_daemon(a)]
        if loose:
            located = [(loose[0], body.lower().find(loose[0]))]
        elif walk.original_rcpts:
            located = [(walk.original_rcpts[0], -1)]
        else:
            return []
    reports: list[ParsedReport] = []
    starts = sorted(pos for _, pos in located if pos >= 0)
    for addr, pos in located:
        if pos >= 0:
            later = [s for s in starts if s > pos]
            segment = body[pos : later[0] if later else len(body)]
        else:
            segment = body
        status = _enhanced(segment)
        reply = _reply_code(segment)
        if status is None and reply is None and len(located) == 1:
            status = _enhanced(body)
            reply = _reply_code(body)
        if status is None and reply is None:
            # Codes printed once for several recipients (above or below the list).
            status = _enhanced(body)
            reply = _reply_code(body)
        lines = segment.split("\n", 1)
        diag_source = lines[1] if len(lines) > 1 and lines[1].strip() else segment
        diagnostic = _collapse(re.sub(r"^[\s#*=_-]+$", "", diag_source, flags=re.M))
        if len(re.findall(r"[^\W\d_]", diagnostic)) < 8:
            # Nothing but the address and rules: the reason is elsewhere in the notice.
            diagnostic = _collapse(re.sub(r"^[\s#*=_-]+$", "", body, flags=re.M))
        diagnostic = diagnostic[:1000]
        if status and reply and status[0] != reply[0]:
            # A code of the other class in the prose is not the server's verdict.
            status = status if status[0] == "5" else None
        permanent = _permanent(status, reply, fallback=_permanent_by_words(segment, body))
        action = "delayed" if delayed and not permanent else "failed"
        reports.append(
            ParsedReport(
                action=action,
                recipient=addr,
                status=status,
                reply_code=reply,
                diagnostic=diagnostic,
                permanent=permanent if action == "failed" else False,
            )
        )
    return reports


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
        kind = str(data.get("notificationType") or data.get("eventType") or "").lower()
        reports: list[ParsedReport] = []
        if kind == "bounce" and isinstance(data.get("bounce"), dict):
            bounce = data["bounce"]
            hard = str(bounce.get("bounceType", "")).lower() == "permanent"
            for item in bounce.get("bouncedRecipients") or []:
                if not isinstance(item, dict):
                    continue
                diag = _collapse(str(item.get("diagnosticCode") or ""))
                status = _prefer_status(_enhanced(str(item.get("status") or "")), diag)
                reply = _reply_code(diag)
                reports.append(
                    ParsedReport(
                        action="failed",
                        recipient=str(item.get("emailAddress") or "").lower() or None,
                        status=status,
                        reply_code=reply,
                        diagnostic=diag,
                        permanent=_permanent(status, reply, fallback=hard),
                    )
                )
        elif kind == "complaint" and isinstance(data.get("complaint"), dict):
            complaint = data["complaint"]
            ftype = str(complaint.get("complaintFeedbackType") or "abuse")
            for item in complaint.get("complainedRecipients") or []:
                if isinstance(item, dict):
                    reports.append(
                        ParsedReport(
                            action="complaint",
                            recipient=str(item.get("emailAddress") or "").lower() or None,
                            status=None,
                            reply_code=None,
                            diagnostic=_collapse(str(complaint.get("userAgent") or "")),
                            permanent=False,
                            feedback_type=ftype,
                        )
                    )
        elif kind == "delivery" and isinstance(data.get("delivery"), dict):
            delivery = data["delivery"]
            diag = _collapse(str(delivery.get("smtpResponse") or ""))
            for rcpt in delivery.get("recipients") or []:
                reports.append(
                    ParsedReport(
                        action="delivered",
                        recipient=str(rcpt).lower(),
                        status=_enhanced(diag) or "2.6.0",
                        reply_code=_reply_code(diag),
                        diagnostic=diag,
                        permanent=False,
                    )
                )
        else:
            continue
        return reports
    return None


# --------------------------------------------------------------------------- top level


def _autoreply(msg: email.message.Message, subject: str) -> bool:
    auto = str(msg.get("auto-submitted", "")).strip().lower()
    if auto.startswith("auto-replied"):
        return True
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder", "x-vacation"):
        if msg.get(name) is not None:
            return True
    precedence = str(msg.get("precedence", "")).strip().lower()
    if precedence in ("auto_reply", "auto-reply"):
        return True
    if str(msg.get("x-auto-response-suppress", "")).strip() and _AUTOREPLY_SUBJECT.search(subject):
        return True
    return bool(_AUTOREPLY_SUBJECT.search(subject))


def _looks_like_bounce(
    msg: email.message.Message, subject: str, sender: list[str], bodies: list[str]
) -> bool:
    if any(_is_daemon(addr) for addr in sender):
        return True
    if any(_BOUNCE_BODY.search(body) for body in bodies[:2]):
        return True
    return_path = str(msg.get("return-path", "")).strip()
    if return_path in ("<>", "") and msg.get("x-failed-recipients") is not None:
        return True
    if msg.get("x-failed-recipients") is not None:
        return True
    return bool(_BOUNCE_SUBJECT.search(subject)) and not _AUTOREPLY_SUBJECT.search(subject)


_QUOTED_ID = re.compile(r"^[ \t>|]*Message-ID\s*:\s*(<[^<>\s]+>)", re.I | re.M)


def _parse(raw: bytes) -> ParsedMessage:
    data = _normalise(raw)
    msg = email.message_from_bytes(data)
    subject = _header_text(msg.get("subject"))
    message_id_values = _message_ids(_header_text(msg.get("message-id")))
    message_id = message_id_values[0] if message_id_values else None
    date = _date(_header_text(msg.get("date")))

    envelope: list[str] = []
    for name in _ENVELOPE_HEADERS:
        for value in msg.get_all(name, []) or []:
            for addr in _addresses(_header_text(value)):
                if addr not in envelope:
                    envelope.append(addr)

    walk = _Walk()
    _walk(msg, walk)

    sender = _addresses(_header_text(msg.get("from")))
    reports: list[ParsedReport] = []
    if walk.feedback_texts:
        reports = _feedback_reports(walk.feedback_texts, walk)
    bodies = [_split_original(text, walk) for text in walk.text_parts]
    if not reports:
        reports = _other_complaints(msg, subject, sender, walk)
    if not reports and walk.dsn_texts:
        notice = "\n\n".join(b for b in bodies if b.strip() and not _DSN_START.search(b))
        reports = _dsn_reports(walk.dsn_texts, walk.original_rcpts, notice)
    if not reports:
        json_reports = _json_reports(walk.text_parts)
        if json_reports is not None:
            reports = json_reports
    if not reports and _looks_like_bounce(msg, subject, sender, bodies):
        # The bounce's own sender and addressee (the original sender) are not
        # failed recipients; Delivered-To and friends may legitimately be.
        exclude = set(sender) | set(_addresses(_header_text(msg.get("to"))))
        for inner in walk.original_headers:
            for addr in _addresses(_header_text(inner.get("from"))):
                exclude.add(addr)
        header_rcpts: list[str] = []
        for value in msg.get_all("x-failed-recipients", []) or []:
            header_rcpts += [a for a in _addresses(_header_text(value)) if a not in header_rcpts]
        # The original's recipients are never excluded, even if they also sent it.
        exclude -= set(header_rcpts) | set(walk.original_rcpts)
        delayed = bool(_DELAY_SUBJECT.search(subject))
        body = "\n\n".join(b for b in bodies if b.strip())
        reports = _text_reports(body, exclude, header_rcpts, walk, delayed)
    if not reports and _autoreply(msg, subject):
        who = sender[0] if sender else (envelope[0] if envelope else None)
        reports = [
            ParsedReport(
                action="autoreply",
                recipient=who,
                status=None,
                reply_code=None,
                diagnostic=subject,
                permanent=False,
            )
        ]
    if not walk.original_ids:
        # Quoted headers the MIME walk did not see (indented, prefixed, or in a
        # part of their own without a content type).
        for text in walk.text_parts:
            for found in _QUOTED_ID.findall(text):
                if found != message_id and found not in walk.original_ids:
                    walk.original_ids.append(found)
    # Office 365 NDRs and auto-replies name the original in In-Reply-To.
    for found in _message_ids(_header_text(msg.get("in-reply-to"))):
        if found not in walk.original_ids:
            walk.original_ids.append(found)
    return ParsedMessage(
        reports=tuple(reports),
        envelope_candidates=tuple(envelope),
        original_message_ids=tuple(walk.original_ids),
        message_id=message_id,
        date=date,
    )
