"""RFC 3464 delivery status fields and RFC 5965 feedback fields, per recipient.

A ``message/delivery-status`` part is a per-message block then one block per
recipient. Each recipient block becomes one ``ParsedReport`` with the
recipient as the report writes it, the ``Original-Recipient`` beside it, the
status in canonical form, the ``Diagnostic-Code`` text with its whitespace
folded, and the detail and reason decided by :mod:`._verdict`.
"""

from __future__ import annotations

from collections.abc import Iterable

from broadcast_domain.ports import ParsedReport

from . import _verdict
from ._mime import decode_header
from ._scan import addresses, all_enhanced, collapse, enhanced, has_enhanced, reply_code

__all__ = ["MAX_REPORTS", "dsn_reports", "feedback_fields", "fields"]

MAX_REPORTS = 1000
"""Recipient blocks read from one message; a report about more is read up to here."""

ACTIONS = {
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

_RECIPIENT_KEYS = ("final-recipient", "original-recipient")


def _field_name(name: str) -> bool:
    name = name.strip()
    return (
        bool(name) and name[0].isascii() and name[0].isalpha() and name.replace("-", "").isalnum()
    )


def fields(text: str) -> list[dict[str, str]]:
    """Split delivery-status text into field groups (per-message, then per-recipient)."""
    groups: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in text.split("\n"):
        if not line.strip():
            if current:
                groups.append(current)
                current = {}
                if len(groups) > MAX_REPORTS:
                    break
            last = None
            continue
        if line[0] in " \t" and last is not None:
            last.append(line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep or len(name) > 60 or not _field_name(name):
            continue
        key = name.strip().lower()
        # A recipient block that lost its separating blank line.
        has_recipient = any(k in current for k in _RECIPIENT_KEYS)
        if key in _RECIPIENT_KEYS and (
            key in current or (has_recipient and ("action" in current or "status" in current))
        ):
            groups.append(current)
            current = {}
        if key in current and key not in _RECIPIENT_KEYS:
            current[key].append(value.strip())
        else:
            current[key] = [value.strip()]
        last = current[key]
    if current:
        groups.append(current)
    return [{k: _value(v) for k, v in group.items()} for group in groups]


def _value(pieces: list[str]) -> str:
    value = " ".join(pieces)
    # Reporting MTAs copy encoded words (RFC 2047) from the server's reply.
    return decode_header(value) if "=?" in value else value


def _typed_address(value: str) -> str | None:
    """``rfc822; user@example.com`` -> ``user@example.com``."""
    _, _, rest = value.rpartition(";")
    found = addresses(rest or value)
    return found[0] if found else None


def diagnostic_text(value: str) -> str:
    """A ``Diagnostic-Code`` value without its ``smtp;`` type, whitespace folded."""
    kind, sep, rest = value.partition(";")
    if sep and kind.strip().replace("-", "").isalnum() and len(kind) < 20:
        value = rest
    return unfold_reply(collapse(value))


def unfold_reply(text: str) -> str:
    """A multi-line SMTP reply read as one sentence.

    ``550-5.7.1 Messages with multiple 550-5.7.1 addresses ...``: the code
    that starts each continuation line is dropped after the first.
    """
    if len(text) < 5 or not text[:3].isdigit() or text[3:4] not in ("-", " "):
        return text
    reply = text[:3]
    code = enhanced(text[4:16]) if text[4:5].isdigit() else None
    if code is not None and text[4:].startswith(code):
        prefixes = [f" {reply}-{code} ", f" {reply} {code} "]
        head = f"{reply} {code}"
    else:
        prefixes = [f" {reply}-"]
        head = reply
    body = text[len(head) :]
    for prefix in prefixes:
        if prefix in body:
            body = body.replace(prefix, " ")
    return head + body


def _status_comment(value: str) -> str:
    """The comment on a ``Status:`` line: ``5.0.0 (recipient reached disk quota)``."""
    text = value.strip()
    head = text.split(None, 1)
    if len(head) < 2:
        return ""
    return collapse(head[1].strip().strip("()").strip())


def _generic(status: str) -> bool:
    return status.endswith(".0.0")


def prefer_status(field: str | None, diagnostic: str) -> str | None:
    """Choose between the Status field and a code quoted in the server's reply.

    The remote server's own code says more than the reporting MTA's summary, so
    a code of the same class in the diagnostic wins; of several, the last one,
    because relays wrap the inner server's reply after their own words
    ("554 4.4.7 Message expired <421 4.4.2 Connection timed out>"). A code of
    the other class overrides the Status field only when the reply code at the
    start of the diagnostic agrees with it.
    """
    in_text = all_enhanced(diagnostic)
    if field is None:
        return in_text[-1] if in_text else None
    same_class = [code for code in in_text if code[0] == field[0] and not _generic(code)]
    if same_class:
        return same_class[-1]
    reply = reply_code(diagnostic)
    if reply and in_text and in_text[0][0] == reply[0] != field[0]:
        # The remote server's reply is self-consistent ("550 5.5.0") and of the
        # other class: it, not the relay's summary, is what happened.
        return in_text[0]
    return field


def permanent(status: str | None, reply: str | None, fallback: bool) -> bool:
    """A 5.x.x status (or, without one, a 5xx reply) is permanent; a 4.x.x never is."""
    if status:
        return status.startswith("5")
    if reply:
        return reply.startswith("5")
    return fallback


def dsn_reports(
    texts: Iterable[str], fallback_rcpts: list[str], notice: _verdict.Notice
) -> list[ParsedReport]:
    """One report per recipient block of the delivery-status texts."""
    reports: list[ParsedReport] = []
    for text in texts:
        per_message: dict[str, str] = {}
        for group in fields(text):
            if not any(k in group for k in _RECIPIENT_KEYS) and not (
                "action" in group or "status" in group
            ):
                per_message.update(group)
                continue
            reports.append(_dsn_report(group, per_message, fallback_rcpts, notice))
            if len(reports) >= MAX_REPORTS:
                return reports
    return reports


def _dsn_report(
    group: dict[str, str],
    per_message: dict[str, str],
    fallback_rcpts: list[str],
    notice: _verdict.Notice,
) -> ParsedReport:
    recipient = None
    for key in ("final-recipient", "original-recipient", "x-actual-recipient"):
        if key in group:
            recipient = _typed_address(group[key])
            if recipient:
                break
    original = (
        _typed_address(group["original-recipient"]) if "original-recipient" in group else None
    )
    if recipient is None and len(fallback_rcpts) == 1:
        recipient = fallback_rcpts[0]
    diagnostic = diagnostic_text(group.get("diagnostic-code", ""))
    field_status = enhanced(group.get("status", ""))
    explanation = notice.about(recipient, original)
    quoted = explanation if has_enhanced(explanation) else ""
    if (
        quoted
        and not has_enhanced(diagnostic)
        and (field_status is None or _generic(field_status) or not diagnostic)
    ):
        # The fields leave the remote reply out; the notice often quotes it
        # next to the recipient (Sendmail's "(reason: 550 5.7.1 ...)").
        diagnostic = diagnostic or quoted
        status = prefer_status(field_status, quoted)
    else:
        status = prefer_status(field_status, diagnostic)
    reply = reply_code(diagnostic)
    action_word = group.get("action", "").strip().lower().split(" ")[0]
    action = ACTIONS.get(action_word)
    if action is None:
        cls = (status or reply or "5")[0]
        action = {"2": "delivered", "4": "delayed"}.get(cls, "failed")
    if action == "delivered" and status and status[0] in "45":
        action = "failed" if status[0] == "5" else "delayed"
    comment = _status_comment(group.get("status", ""))
    if (
        action == "failed"
        and not (status or "").startswith("5")
        and _verdict.is_challenge(" ".join((notice.text[:4000], diagnostic)))
    ):
        # Challenge/response ("please confirm you are human", Status 4.7.0)
        # waits for the sender to answer; nothing failed.
        action = "delayed"
    remote = group.get("remote-mta") or per_message.get("remote-mta")
    remote_host = diagnostic_text(remote) if remote else None
    detail, reason = _verdict.decide(
        action=action,
        status=status,
        reply=reply,
        diagnostic=diagnostic,
        explanation=explanation or notice.reason_line(),
        comment=comment,
        command=notice.command_for(recipient),
        recipient=recipient,
    )
    return ParsedReport(
        action=action,
        recipient=recipient,
        status=status,
        reply_code=reply,
        diagnostic=diagnostic,
        permanent=action == "failed" and permanent(status, reply, fallback=True),
        remote_mta=remote_host or None,
        reason=reason,
        detail=detail,
        original_recipient=original,
    )


def feedback_fields(text: str) -> dict[str, list[str]]:
    """The fields of a ``message/feedback-report`` part, every value of each name."""
    found: dict[str, list[str]] = {}
    for line in text.split("\n"):
        name, sep, value = line.partition(":")
        if sep and len(name) < 60:
            found.setdefault(name.strip().lower(), []).append(value.strip())
    return found
