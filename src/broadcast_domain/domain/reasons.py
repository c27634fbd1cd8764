"""Why a delivery failed: the fixed reason vocabulary, RFC 3463 descriptions, the classifier.

The vocabulary is Sisimai's, so a host can compare our verdicts with the
reference analyser's. Everything here is plain data a person can read and
extend, and pure functions over it: no I/O, no regular expressions over
untrusted text (phrase lookup is substring search, linear in the text).

What decides a reason (SPEC section 2, "Why an error happened"): the
diagnostic and explanation text first where it names a cause, then the
enhanced status code's usual meaning, then the SMTP reply code; when nothing
decides, ``undefined``.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "REASONS",
    "STATUS_DESCRIPTIONS",
    "classify_reason",
    "describe_status",
    "is_reason",
]

# name -> (English label, Japanese label); the order is the display order.
REASONS: Mapping[str, tuple[str, str]] = {
    "userunknown": ("user unknown", "宛先不明"),
    "mailboxfull": ("mailbox full", "容量超過"),
    "hostunknown": ("host unknown", "ドメイン不明"),
    "filtered": ("filtered", "受信拒否(フィルタ)"),
    "rejected": ("sender rejected", "送信元拒否"),
    "blocked": ("blocked", "接続拒否"),
    "expired": ("delivery time expired", "配信期限切れ"),
    "suspend": ("mailbox suspended", "アカウント停止"),
    "policyviolation": ("policy violation", "ポリシー違反"),
    "requireptr": ("PTR record required", "逆引き設定なし"),
    "systemerror": ("system error", "システムエラー"),
    "spamdetected": ("spam detected", "迷惑メール判定"),
    "notaccept": ("does not accept mail", "受信不可"),
    "securityerror": ("security error", "セキュリティエラー"),
    "norelaying": ("relaying denied", "中継拒否"),
    "onhold": ("on hold", "保留"),
    "mailererror": ("mailer error", "メーラーエラー"),
    "notcompliantrfc": ("not RFC compliant", "RFC非準拠"),
    "hasmoved": ("address has moved", "宛先移転"),
    "toomanyconn": ("too many connections", "接続数超過"),
    "exceedlimit": ("message exceeds limit", "制限超過"),
    "mesgtoobig": ("message too big", "サイズ超過"),
    "badreputation": ("bad reputation", "送信元の評価不良"),
    "contenterror": ("content error", "内容エラー"),
    "virusdetected": ("virus detected", "ウイルス検出"),
    "syntaxerror": ("syntax error", "構文エラー"),
    "systemfull": ("system full", "サーバー容量不足"),
    "speeding": ("sending too fast", "送信速度超過"),
    "networkerror": ("network error", "ネットワークエラー"),
    "authfailure": ("authentication failure", "認証失敗"),
    "failedstarttls": ("STARTTLS failed", "STARTTLS失敗"),
    "undefined": ("undefined", "不明"),
}

# RFC 3463 (and its IANA registry additions): the standard meaning of each code,
# by "class.subject.detail" with the class replaced by "X".
STATUS_DESCRIPTIONS: Mapping[str, str] = {
    "X.0.0": "Other undefined status",
    "X.1.0": "Other address status",
    "X.1.1": "Bad destination mailbox address",
    "X.1.2": "Bad destination system address",
    "X.1.3": "Bad destination mailbox address syntax",
    "X.1.4": "Destination mailbox address ambiguous",
    "X.1.5": "Destination address valid",
    "X.1.6": "Destination mailbox has moved, no forwarding address",
    "X.1.7": "Bad sender's mailbox address syntax",
    "X.1.8": "Bad sender's system address",
    "X.1.9": "Message relayed to non-compliant mailer",
    "X.1.10": "Recipient address has null MX",
    "X.2.0": "Other or undefined mailbox status",
    "X.2.1": "Mailbox disabled, not accepting messages",
    "X.2.2": "Mailbox full",
    "X.2.3": "Message length exceeds administrative limit",
    "X.2.4": "Mailing list expansion problem",
    "X.3.0": "Other or undefined mail system status",
    "X.3.1": "Mail system full",
    "X.3.2": "System not accepting network messages",
    "X.3.3": "System not capable of selected features",
    "X.3.4": "Message too big for system",
    "X.3.5": "System incorrectly configured",
    "X.4.0": "Other or undefined network or routing status",
    "X.4.1": "No answer from host",
    "X.4.2": "Bad connection",
    "X.4.3": "Directory server failure",
    "X.4.4": "Unable to route",
    "X.4.5": "Mail system congestion",
    "X.4.6": "Routing loop detected",
    "X.4.7": "Delivery time expired",
    "X.5.0": "Other or undefined protocol status",
    "X.5.1": "Invalid command",
    "X.5.2": "Syntax error",
    "X.5.3": "Too many recipients",
    "X.5.4": "Invalid command arguments",
    "X.5.5": "Wrong protocol version",
    "X.5.6": "Authentication exchange line is too long",
    "X.6.0": "Other or undefined media error",
    "X.6.1": "Media not supported",
    "X.6.2": "Conversion required and prohibited",
    "X.6.3": "Conversion required but not supported",
    "X.6.4": "Conversion with loss performed",
    "X.6.5": "Conversion failed",
    "X.6.6": "Message content not available",
    "X.6.7": "Non-ASCII addresses not permitted for that sender/recipient",
    "X.6.8": "UTF-8 string reply is required, but not permitted by the SMTP client",
    "X.6.9": "UTF-8 header message cannot be transferred to one or more recipients",
    "X.7.0": "Other or undefined security status",
    "X.7.1": "Delivery not authorized, message refused",
    "X.7.2": "Mailing list expansion prohibited",
    "X.7.3": "Security conversion required but not possible",
    "X.7.4": "Security features not supported",
    "X.7.5": "Cryptographic failure",
    "X.7.6": "Cryptographic algorithm not supported",
    "X.7.7": "Message integrity failure",
    "X.7.8": "Authentication credentials invalid",
    "X.7.9": "Authentication mechanism is too weak",
    "X.7.10": "Encryption needed",
    "X.7.11": "Encryption required for requested authentication mechanism",
    "X.7.12": "A password transition is needed",
    "X.7.13": "User account disabled",
    "X.7.14": "Trust relationship required",
    "X.7.15": "Priority level is too low",
    "X.7.16": "Message is too big for the specified priority",
    "X.7.17": "Mailbox owner has changed",
    "X.7.18": "Domain owner has changed",
    "X.7.19": "RRVS test cannot be completed",
    "X.7.20": "No passing DKIM signature found",
    "X.7.21": "No acceptable DKIM signature found",
    "X.7.22": "No valid author-matched DKIM signature found",
    "X.7.23": "SPF validation failed",
    "X.7.24": "SPF validation error",
    "X.7.25": "Reverse DNS validation failed",
    "X.7.26": "Multiple authentication checks failed",
    "X.7.27": "Sender address has null MX",
    "X.7.28": "Mail flood detected",
    "X.7.29": "ARC validation failure",
    "X.7.30": "REQUIRETLS support required",
}

# The usual reason of an enhanced status code, by "subject.detail" (any class).
_STATUS_REASONS: Mapping[str, str] = {
    "1.1": "userunknown",
    "1.2": "hostunknown",
    "1.3": "userunknown",
    "1.4": "userunknown",
    "1.6": "hasmoved",
    "1.7": "rejected",
    "1.8": "rejected",
    "1.9": "systemerror",
    "1.10": "notaccept",
    "2.0": "userunknown",
    "2.1": "suspend",
    "2.2": "mailboxfull",
    "2.3": "exceedlimit",
    "2.4": "systemerror",
    "3.0": "systemerror",
    "3.1": "systemfull",
    "3.2": "notaccept",
    "3.3": "systemerror",
    "3.4": "mesgtoobig",
    "3.5": "systemerror",
    "4.0": "networkerror",
    "4.1": "networkerror",
    "4.2": "networkerror",
    "4.3": "systemerror",
    "4.4": "hostunknown",
    "4.5": "networkerror",
    "4.6": "networkerror",
    "4.7": "expired",
    "5.0": "syntaxerror",
    "5.1": "syntaxerror",
    "5.2": "syntaxerror",
    "5.3": "syntaxerror",
    "5.4": "syntaxerror",
    "5.5": "syntaxerror",
    "5.6": "syntaxerror",
    "6.0": "contenterror",
    "6.1": "contenterror",
    "6.2": "contenterror",
    "6.3": "contenterror",
    "6.5": "contenterror",
    "7.0": "securityerror",
    "7.1": "rejected",
    "7.2": "securityerror",
    "7.3": "securityerror",
    "7.4": "securityerror",
    "7.5": "securityerror",
    "7.6": "securityerror",
    "7.7": "securityerror",
    "7.8": "authfailure",
    "7.9": "securityerror",
    "7.10": "failedstarttls",
    "7.11": "failedstarttls",
    "7.13": "suspend",
    "7.14": "securityerror",
    "7.17": "hasmoved",
    "7.18": "hasmoved",
    "7.20": "authfailure",
    "7.21": "authfailure",
    "7.22": "authfailure",
    "7.23": "authfailure",
    "7.24": "authfailure",
    "7.25": "requireptr",
    "7.26": "authfailure",
    "7.27": "notaccept",
    "7.28": "spamdetected",
    "7.30": "failedstarttls",
}

# Phrases that name a cause, lower-cased; the first reason whose phrase occurs wins,
# so the more specific reasons come first.
_TEXT_REASONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("virusdetected", ("virus", "malware", "infected")),
    ("spamdetected", ("spam", "junk mail", "unsolicited")),
    ("requireptr", ("reverse dns", "no ptr", "ptr record", "reverse lookup")),
    ("authfailure", ("spf", "dkim", "dmarc")),
    ("failedstarttls", ("starttls", "requiretls")),
    (
        "mailboxfull",
        (
            "mailbox full",
            "mailbox is full",
            "over quota",
            "quota exceeded",
            "disk quota",
            "exceeded storage",
            "insufficient storage",
            "is full",
        ),
    ),
    (
        "mesgtoobig",
        (
            "message too big",
            "message too large",
            "message size exceeds",
            "exceeds size limit",
            "too large",
        ),
    ),
    ("suspend", ("disabled", "suspended", "inactive", "deactivated")),
    ("hasmoved", ("has moved",)),
    (
        "userunknown",
        (
            "user unknown",
            "unknown user",
            "no such user",
            "mailbox unavailable",
            "does not exist",
            "no mailbox",
            "mailbox not found",
            "invalid recipient",
            "recipient unknown",
            "unknown recipient",
            "address rejected",
            "no such recipient",
            "user not found",
            "account does not exist",
        ),
    ),
    (
        "hostunknown",
        (
            "host unknown",
            "unknown host",
            "domain not found",
            "no such domain",
            "host not found",
            "name or service not known",
            "unrouteable",
        ),
    ),
    (
        "norelaying",
        ("relay access denied", "relaying denied", "not permitted to relay", "relay not permitted"),
    ),
    ("toomanyconn", ("too many connections",)),
    ("speeding", ("rate limit", "too many messages", "sending rate")),
    (
        "expired",
        (
            "retry timeout",
            "delivery time expired",
            "could not be delivered for",
            "expired",
            "gave up",
        ),
    ),
    ("blocked", ("blocked", "blacklist", "blocklist", "listed at", "listed in")),
    ("badreputation", ("reputation",)),
    ("policyviolation", ("policy",)),
    ("networkerror", ("connection timed out", "connection refused", "network")),
    ("filtered", ("filtered",)),
)


def is_reason(name: object) -> bool:
    """True when ``name`` is one of REASONS."""
    return isinstance(name, str) and name in REASONS


def _status_parts(status: str | None) -> tuple[str, str] | None:
    if not status:
        return None
    head = status.strip().split(None, 1)[0] if status.strip() else ""
    parts = head.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or parts[0] not in ("2", "4", "5"):
        return None
    return parts[0], f"{int(parts[1])}.{int(parts[2])}"


def describe_status(status: str | None) -> str:
    """``"5.2.2 Mailbox full"`` for an enhanced status code; ``""`` when unknown."""
    parts = _status_parts(status)
    if parts is None:
        return ""
    klass, rest = parts
    description = STATUS_DESCRIPTIONS.get(f"X.{rest}")
    if description is None:
        subject = rest.split(".", 1)[0]
        description = STATUS_DESCRIPTIONS.get(f"X.{subject}.0")
    if description is None:
        return ""
    return f"{klass}.{rest} {description}"


def _reason_from_text(text: str) -> str | None:
    lowered = text.lower()
    for reason, phrases in _TEXT_REASONS:
        if any(phrase in lowered for phrase in phrases):
            return reason
    return None


def _reason_from_reply(reply_code: str | None) -> str | None:
    if not reply_code:
        return None
    code = reply_code.strip()[:3]
    return {
        "421": "blocked",
        "450": "onhold",
        "451": "systemerror",
        "452": "mailboxfull",
        "550": "userunknown",
        "551": "hasmoved",
        "552": "mailboxfull",
        "553": "userunknown",
        "554": "rejected",
        "555": "syntaxerror",
        "500": "syntaxerror",
        "501": "syntaxerror",
        "502": "syntaxerror",
        "503": "syntaxerror",
        "504": "syntaxerror",
    }.get(code)


def classify_reason(status: str | None, reply_code: str | None = None, text: str = "") -> str:
    """The reason of one failure, always a name of REASONS.

    The text (diagnostic, explanation) decides where it names a cause; then
    the enhanced status code's usual meaning; then the reply code; else
    ``undefined``.
    """
    by_text = _reason_from_text(text) if text else None
    if by_text is not None:
        return by_text
    parts = _status_parts(status)
    if parts is not None:
        _, rest = parts
        by_status = _STATUS_REASONS.get(rest)
        if by_status is not None and rest != "0.0":
            return by_status
    if reply_code is None and status is not None and status.strip().isdigit():
        reply_code = status  # a bare reply code given where the status goes
    return _reason_from_reply(reply_code) or "undefined"
