"""Why a delivery failed: the fixed reason vocabulary, RFC 3463 descriptions, the classifier.

The vocabulary is Sisimai's, so a host can compare our verdicts with the
reference analyser's. Everything here is plain data a person can read and
extend, and pure functions over it: no I/O, no regular expressions over
untrusted text (phrase lookup is substring search, linear in the text: a
:class:`~broadcast_domain.domain.phrases.PhraseTable` searches only for the
phrases whose words the text holds).

What decides a reason (SPEC section 2, "Why an error happened"): the
diagnostic and explanation text first where it names a cause, then the
enhanced status code's usual meaning, then the SMTP reply code; when nothing
decides, ``undefined``.
"""

from __future__ import annotations

from collections.abc import Mapping

from broadcast_domain.domain.phrases import PhraseTable

__all__ = [
    "REASONS",
    "SMTP_COMMANDS",
    "STATUS_DESCRIPTIONS",
    "TEXT_REASONS",
    "classify_reason",
    "describe_status",
    "is_reason",
    "names_a_cause",
    "smtp_command",
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

# The usual reason of an enhanced status code. A key "5.2.1" (one class) wins
# over "2.1" (both classes): some codes mean one thing when final and another
# when temporary (a 4.7.1 is a refused connection, a 5.7.1 a security refusal).
_STATUS_REASONS: Mapping[str, str] = {
    "1.0": "userunknown",
    "1.1": "userunknown",
    "1.2": "hostunknown",
    "1.3": "userunknown",
    "1.4": "filtered",
    "1.6": "hasmoved",
    "1.7": "rejected",
    "1.8": "rejected",
    "1.9": "systemerror",
    "1.10": "notaccept",
    "4.2.1": "suspend",
    "5.2.0": "filtered",
    "5.2.1": "filtered",
    "2.2": "mailboxfull",
    "2.3": "exceedlimit",
    "2.4": "filtered",
    "3.0": "systemerror",
    "3.1": "systemfull",
    "3.2": "notaccept",
    "3.3": "systemerror",
    "3.4": "mesgtoobig",
    "3.5": "systemerror",
    "4.0": "networkerror",
    "4.1": "expired",
    "4.2": "networkerror",
    "4.3": "systemerror",
    "4.4.4": "networkerror",
    "5.4.4": "hostunknown",
    "4.5": "systemfull",
    "4.6": "networkerror",
    "4.7": "expired",
    "5.3": "toomanyconn",
    "5.4": "systemerror",
    "5.5": "systemerror",
    "5.6": "securityerror",
    "6.0": "contenterror",
    "6.1": "contenterror",
    "6.2": "contenterror",
    "6.3": "contenterror",
    "6.5": "contenterror",
    "6.6": "contenterror",
    "6.7": "contenterror",
    "6.8": "contenterror",
    "6.9": "contenterror",
    "7.0": "securityerror",
    "4.7.1": "blocked",
    "5.7.1": "securityerror",
    "4.7.2": "blocked",
    "5.7.2": "securityerror",
    "7.3": "securityerror",
    "7.4": "securityerror",
    "7.5": "securityerror",
    "7.6": "securityerror",
    "7.7": "securityerror",
    "7.8": "securityerror",
    "7.9": "securityerror",
    "7.10": "failedstarttls",
    "7.11": "failedstarttls",
    "7.12": "securityerror",
    "7.13": "suspend",
    "7.14": "securityerror",
    "7.15": "securityerror",
    "7.16": "mesgtoobig",
    "7.17": "hasmoved",
    "7.18": "hasmoved",
    "7.19": "securityerror",
    "7.20": "authfailure",
    "7.21": "authfailure",
    "7.22": "authfailure",
    "7.23": "authfailure",
    "7.24": "authfailure",
    "7.25": "requireptr",
    "7.26": "authfailure",
    "7.27": "notaccept",
    "7.28": "speeding",
    "7.29": "authfailure",
    "7.30": "failedstarttls",
}

# Codes whose meaning is precise enough to decide before the text does: the
# text of a size refusal says "too large" whatever limit was hit, the code
# says which limit.
_DECISIVE_STATUS = frozenset({"1.6", "1.7", "1.8", "2.3", "7.13", "7.27"})

# Phrases that name a cause, lower-cased, tried in this order; the first reason
# with a phrase in the text wins, so the narrower causes come first (a
# "mailbox full" notice may also say "rejected"; a "spam" filter may also say
# "blocked"). Each phrase is what servers really write, in their own words.
TEXT_REASONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "virusdetected",
        (
            "virus",
            "malware",
            "infected",
            "trojan",
            "worm detected",
            "malicious attachment",
        ),
    ),
    (
        "notcompliantrfc",
        (
            "rfc 5322",
            "rfc5322",
            "rfc 2822",
            "rfc2822",
            "rfc 822 ",
            "not rfc",
            "rfc compliant",
            "multiple addresses in from",
            "duplicate header",
            "multiple subject",
            "multiple message-id",
            "missing required header",
            "header is missing",
            "no date header",
            "invalid message-id",
            "bare lf",
            "bare linefeed",
        ),
    ),
    (
        "policyviolation",
        (
            "policy violation",
            "violates our policy",
            "violation of policy",
            "protocol violation",
            "content presents a potential",
            "header error",
            "prohibited attachment",
            "attachment is not allowed",
            "not allowed by policy",
            "by policy",
            "host network not allowed",
            "against our policy",
            "policy reasons",
            "message rejected due to local policy",
            "local policy",
        ),
    ),
    (
        "mailboxfull",
        (
            "mailbox full",
            "mailbox is full",
            "mailbox quota",
            "mailbox size limit",
            "mailbox exceeds",
            "over quota",
            "overquota",
            "quota exceeded",
            "exceeded quota",
            "exceeds quota",
            "disk quota",
            "quota full",
            "user quota",
            "storage quota",
            "out of storage",
            "exceeded storage",
            "storage space",
            "inbox is full",
            "mailbox has exceeded",
            "recipient's mailbox is full",
            "number of messages in recipient's mailbox",
            "too many messages in",
            "mailfolder is full",
            "box is full",
            "is over its quota",
            "mail quota",
            "reached disk quota",
            "exceeds its storage",
        ),
    ),
    (
        "systemfull",
        (
            "insufficient disk space",
            "insufficient system storage",
            "mail system full",
            "system storage",
            "disk full",
            "not enough space",
            "out of disk space",
        ),
    ),
    (
        "exceedlimit",
        (
            "exceeds administrative limit",
            "message length exceeds",
            "exceeded the maximum size",
            "size exceeds the limit for this recipient",
            "recipsizelimit",
        ),
    ),
    (
        "mesgtoobig",
        (
            "message too big",
            "message too large",
            "message is too big",
            "message is too large",
            "message size exceeds",
            "size limit exceeded",
            "exceeds size limit",
            "mail size limit",
            "message size limit",
            "line limit exceeded",
            "line too long",
            "message exceeds the maximum",
            "too much mail data",
            "message length limit",
        ),
    ),
    (
        "contenterror",
        (
            "headers too large",
            "improper use of 8-bit",
            "8-bit data",
            "illegal character",
            "invalid mime",
            "mime error",
            "media error",
            "content error",
        ),
    ),
    ("userunknown", ("recipient address rejected: access denied",)),
    # A carrier's answer after DATA with the address left out ("550 : User
    # unknown"): the subscriber's refuse-this-sender setting, not a bad mailbox.
    ("filtered", ("550 : user unknown", "550: : user unknown")),
    (
        "blocked",
        (
            "banned sending ip",
            "dnsbl",
            "client host blocked",
            "spamhaus.org",
            "spamcop.net",
            "bloquee pour incident de spam",
        ),
    ),
    (
        "spamdetected",
        (
            "spam",
            "unsolicited",
            "blacklisted url",
            "uribl",
            " ube",
            "ube,",
            "junk mail",
            "bulk mail",
            "content rejected",
            "message content rejected",
            "looks like spam",
            "suspicious content",
            "mail rejete",
            "mail rejected. ofr",
        ),
    ),
    (
        "authfailure",
        (
            "spf",
            "dkim",
            "dmarc",
            "authentication checks failed",
            "does not have authentication information",
            "unauthenticated email",
            "fails to pass authentication",
            "sender authentication",
        ),
    ),
    (
        "failedstarttls",
        ("starttls", "requiretls", "tls negotiation", "tls is required", "must issue a starttls"),
    ),
    (
        "securityerror",
        (
            "authentication required",
            "authentication is required",
            "auth required",
            "unauthenticated senders",
            "authentication failed",
            "not authenticated",
            "security policies",
            "security policy",
            "smtp authentication",
            "delivery not authorized",
        ),
    ),
    (
        "requireptr",
        (
            "reverse dns",
            "rdns",
            "ptr record",
            "no ptr",
            "ptr resource record",
            "reverse lookup",
            "ip name lookup failed",
            "name lookup failed",
            "mismatches client ip",
            "cannot find your hostname",
            "cannot find your reverse",
            "no reverse",
            "not resolve your",
            "reverse hostname",
            "reverse name",
        ),
    ),
    (
        "speeding",
        (
            "receiving mail at a rate",
            "sent to too many recipients",
            "too many recipients this hour",
            "sending rate",
            "too many messages from",
            "messages per hour",
            "try again later, closing",
        ),
    ),
    (
        "badreputation",
        (
            "reputation",
            "likely suspicious due to",
            "sender score",
        ),
    ),
    (
        "toomanyconn",
        (
            "too many connections",
            "too many concurrent",
            "too many recipients",
            "connection rate limit",
            "frequency limited",
            "connection limit",
            "too many simultaneous",
        ),
    ),
    (
        "notaccept",
        (
            "not accepting network messages",
            "indicated no smtp service",
            "doesn't receive email",
            "does not receive email",
            "doesn't receive mail",
            "does not receive mail",
            "no mx record",
            "couldn't find a mail exchanger",
            "could not find a mail exchanger",
            "null mx",
            "does not accept mail",
            "not accepting mail",
            "accepts no mail",
            "malformed or unexpected name server",
            "no mail server",
        ),
    ),
    (
        "networkerror",
        (
            "dns error",
            "dns type 'mx' lookup",
            "dns lookup error",
            "dns query failed",
            "host name lookup failure",
        ),
    ),
    (
        "expired",
        (
            "retry timeout exceeded",
            "delivery time expired",
            "could not be delivered for",
            "could not deliver for",
            "not going to try again",
            "in the queue too long",
            "too long in queue",
            "message expired",
            "retry time not reached",
            "failing for a long time",
            "delivery expired",
            "queue lifetime",
            "was not delivered within",
            "has been delayed for",
            "delivery period expired",
            "did not accept our requests to connect",
            "envelope expired",
            "connection timed out",
            "timed out",
            "host not reachable",
        ),
    ),
    (
        "suspend",
        (
            "account suspended",
            "account has been suspended",
            "mailbox suspended",
            "is suspended",
            "has been suspended",
            "account disabled",
            "account is disabled",
            "mailbox disabled",
            "mailbox is disabled",
            "has been disabled",
            "account has been disabled",
            "deactivated",
            "inactive user",
            "inactive account",
            "account is inactive",
            "mailbox is inactive",
            "and inactive",
            "account is locked",
            "temporary locked",
            "temporarily locked",
            "mailbox is frozen",
            "account is frozen",
            "no longer in use",
            "account is blocked",
            "compte du destinataire est bloque",
            "recipient account is blocked",
            "mailbox unavailable: disabled",
            "not active",
            "is disabled",
            "is inactive",
        ),
    ),
    (
        "hasmoved",
        (
            "has moved",
            "user has moved",
            "address has changed",
            "moved permanently",
            "no longer on server",
            "not our customer",
        ),
    ),
    (
        "norelaying",
        (
            "relay access denied",
            "relaying denied",
            "relay denied",
            "not permitted to relay",
            "relay not permitted",
            "unable to relay",
            "relaying not allowed",
            "no relaying",
            "not allowed to relay",
            "we do not relay",
            "relay prohibited",
            "relaying prohibited",
            "not a gateway",
            "relaying is not allowed",
            "is not local",
        ),
    ),
    (
        "rejected",
        (
            "sender address rejected",
            "sender rejected",
            "sender denied",
            "unroutable sender",
            "sender verify failed",
            "sender domain",
            "domain of sender",
            "from: domain is invalid",
            "invalid sender",
            "sender is not allowed",
            "sender not allowed",
            "sender blocked",
            "address that has been blacklisted",
            "envelope sender",
            "sender address is invalid",
            "sender unknown",
            "unknown sender",
            "bad sender",
            "permission to post",
            "not have permission to post",
            "purported responsible address",
            "access denied",
            "unexpected volume or user complaints",
        ),
    ),
    (
        "userunknown",
        (
            "user unknown",
            "nonexistent user",
            "non-existent user",
            "nonexistent mailbox",
            "non-existent mailbox",
            "mailbox here by that name",
            "unknown user",
            "no such user",
            "no such mailbox",
            "no such recipient",
            "no such account",
            "user not found",
            "user doesn't exist",
            "user does not exist",
            "user not exist",
            "mailbox not found",
            "mailbox unavailable",
            "mailbox does not exist",
            "mailbox doesn't exist",
            "no mailbox",
            "invalid recipient",
            "invalid mailbox",
            "recipient unknown",
            "unknown recipient",
            "recipient not found",
            "recipientnotfound",
            "account does not exist",
            "account that you tried to reach does not exist",
            "does not have a",
            "doesn't have a",
            "not listed in",
            "couldn't be found",
            "could not be found",
            "unknown address",
            "address unknown",
            "invalid address",
            "bad destination mailbox",
            "no longer valid",
            "unknown local part",
            "unknown or illegal alias",
            "not a valid mailbox",
            "invalid final delivery userid",
            "userid",
            "addressee unknown",
            "unknown account",
            "no valid recipients",
            "recipient no longer",
            "is not a known user",
            "account unavailable",
            "no such person",
            "undeliverable address",
            "mailbox not available",
            "destination mailbox",
            "user invalid",
            "recipient name is not recognized",
            "please check if address is correct",
            "address is possibly incorrect",
            "not a registered",
            "no such address",
        ),
    ),
    (
        "hostunknown",
        (
            "bad destination system address",
            "host unknown",
            "unknown host",
            "domain not found",
            "no such domain",
            "host not found",
            "name or service not known",
            "domain does not exist",
            "domain is not reachable",
            "dns lookup failure",
            "unrouteable address",
            "unroutable address",
            "unknown domain",
            "domain name not found",
            "no route to host",
            "nxdomain",
            "invalid domain",
            "does not exist",
            "domain could not be found",
            "host or domain name not found",
        ),
    ),
    (
        "blocked",
        (
            "blocked",
            "blacklist",
            "blocklist",
            "block list",
            "black list",
            "listed at",
            "listed in",
            "spamhaus",
            "spamcop",
            "dnsbl",
            "rbl",
            "client host rejected",
            "refused to talk to me",
            "could not initiate smtp conversation",
            "connection was dropped by remote host",
            "service refuse",
            "not accepting connections",
            "weren't sent",
            "were not sent",
            "invalid ip",
            "please use the smtp server of your isp",
            "bloquee",
            "connection refused",
            "banned",
            "denied by",
            "your ip",
            "your host",
            "refused",
            "relay quota",
            "dynamic ip",
            "dial-up",
        ),
    ),
    (
        "mailererror",
        (
            "mailer error",
            "pipe to |",
            "procmail",
            "command not found",
            "exit status",
            "x-unix",
            "local delivery failed",
        ),
    ),
    (
        "networkerror",
        (
            "hop count exceeded",
            "routing loop",
            "mail loop",
            "loop detected",
            "loops back to myself",
            "too many hops",
            "dns error",
            "name service error",
            "connection reset",
            "network is unreachable",
            "lost connection",
            "connection dropped",
            "temporary lookup failure",
        ),
    ),
    (
        "systemerror",
        (
            "system error",
            "internal error",
            "transaction failed",
            "service unavailable",
            "service currently unavailable",
            "temporarily unavailable",
            "server error",
            "mail system problem",
            "configuration error",
            "misconfigur",
            "local error",
            "temporary failure",
            "resources temporarily",
        ),
    ),
    (
        "syntaxerror",
        (
            "syntax error",
            "syntactically",
            "command unrecognized",
            "command not recognized",
            "unrecognized command",
            "invalid command",
            "bad sequence of commands",
        ),
    ),
    (
        "filtered",
        (
            "filtered",
            "filter",
            "not authorized to receive",
            "refused by recipient",
            "has rejected address",
        ),
    ),
    ("onhold", ("on hold", "onhold")),
)

# Where in the SMTP dialogue a reply came, from the words a report uses for it;
# the last one named is the one that failed (on a tie, the first in this order).
SMTP_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "DATA",
        (
            "end of data",
            ">>> data",
            "data command",
            "for text command",
            "after data",
            "in reply to data",
            "after end of data",
        ),
    ),
    (
        "RCPT",
        (
            ">>> rcpt",
            "rcpt to command",
            "rcpt command",
            "after rcpt",
            "in reply to rcpt",
            "[rcpt_to]",
            "smtp:rcpt",
            "rcpt to response",
            "rcpt to:",
            "does not like recipient",
        ),
    ),
    (
        "MAIL",
        (
            ">>> mail from",
            "mail from command",
            "mail command",
            "after mail from",
            "in reply to mail",
        ),
    ),
    (
        "HELO",
        (
            ">>> ehlo",
            ">>> helo",
            "ehlo command",
            "helo command",
            "after ehlo",
            "after helo",
            "smtp greeting",
            "initial connection",
        ),
    ),
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


# The phrase tables flattened in their order. The reason is the first phrase's
# that the text contains: a PhraseTable searches only for the phrases whose
# words the text holds (the same answer as a loop of substring tests).
_PHRASE_REASONS: tuple[str, ...] = tuple(
    reason for reason, phrases in TEXT_REASONS for _ in phrases
)
_PHRASE_TABLE = PhraseTable([phrase for _, phrases in TEXT_REASONS for phrase in phrases])
_MARKS: tuple[tuple[str, str], ...] = tuple(
    (mark, command) for command, marks in SMTP_COMMANDS for mark in marks
)
# Every mark holds one of these words: a mark is searched for only when the
# text holds its word (the first of these it holds; "" for none: always).
_MARK_WORDS = (
    "rcpt",
    "data",
    "mail",
    "helo",
    "ehlo",
    "greeting",
    "connection",
    "text",
    "recipient",
)


def _mark_word(mark: str) -> str:
    return next((word for word in _MARK_WORDS if word in mark), "")


_MARK_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = tuple(
    (word, tuple(i for i, (mark, _) in enumerate(_MARKS) if _mark_word(mark) == word))
    for word in dict.fromkeys(_mark_word(mark) for mark, _ in _MARKS)
)


def _reason_from_text(lowered: str) -> str | None:
    index = _PHRASE_TABLE.first(lowered)
    return None if index is None else _PHRASE_REASONS[index]


def names_a_cause(text: str) -> bool:
    """True when ``text`` names a cause of failure that decides a reason."""
    return _reason_from_text(text.lower()) is not None


def smtp_command(text: str) -> str | None:
    """The SMTP command a report says failed (``DATA``, ``RCPT``, ``MAIL``, ``HELO``), if any."""
    # The mark that occurs last decides; on a tie, the first in the table's order.
    lowered = text.lower()
    best, first = -1, len(_MARKS)
    for word, members in _MARK_GROUPS:
        if word not in lowered:
            continue
        for index in members:
            at = lowered.rfind(_MARKS[index][0])
            if at > best or (at == best and at >= 0 and index < first):
                best, first = at, index
    return _MARKS[first][1] if best >= 0 else None


def _reason_from_status(status: str | None) -> str | None:
    parts = _status_parts(status)
    if parts is None:
        return None
    klass, rest = parts
    if rest == "0.0":
        return None
    return _STATUS_REASONS.get(f"{klass}.{rest}") or _STATUS_REASONS.get(rest)


_REPLY_REASONS: Mapping[str, str] = {
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
    "521": "notaccept",
    "556": "notaccept",
}


def _reason_from_reply(reply_code: str | None) -> str | None:
    if not reply_code:
        return None
    return _REPLY_REASONS.get(reply_code.strip()[:3])


def classify_reason(
    status: str | None,
    reply_code: str | None = None,
    text: str = "",
    *,
    command: str | None = None,
) -> str:
    """The reason of one failure, always a name of REASONS.

    The text (diagnostic, explanation) decides where it names a cause, except
    for the few status codes precise enough to decide first (a 5.2.3 is the
    recipient's size limit, whatever words come with it); then the enhanced
    status code's usual meaning; then the reply code; else ``undefined``.
    Where the text says the refusal came at the SMTP ``DATA`` step, an unknown
    user is a filter's verdict (``filtered``: the address was accepted, the
    message was not); at ``MAIL FROM`` it is the sender that was refused
    (``rejected``); at the greeting it is the connection (``blocked``).
    ``command`` names that step when the caller knows it better than the text.
    """
    if reply_code is None and status is not None and status.strip().isdigit():
        reply_code = status  # a bare reply code given where the status goes
    parts = _status_parts(status)
    if parts is not None and parts[1] in _DECISIVE_STATUS:
        decided = _reason_from_status(status)
        if decided is not None:
            return decided
    lowered = text.lower() if text else ""
    command = (command or (smtp_command(lowered) if lowered else None) or "").upper() or None
    reason = _reason_from_text(lowered) if lowered else None
    if reason is None:
        reason = _reason_from_status(status)
    if reason is None and command == "HELO":
        reason = "blocked"
    if reason is None:
        reason = _reason_from_reply(reply_code)
    if reason in ("userunknown", "hostunknown") and command == "MAIL":
        reason = "rejected"
    elif reason == "userunknown" and command != "RCPT":
        # "Unknown user" is the recipient's mailbox where the address was
        # refused (RCPT TO) or the code says so (x.1.1); said after the message
        # content, or with a code of a mailbox that refused it, it is a
        # filter's refusal.
        by_status = _reason_from_status(status)
        if (
            by_status == "filtered"
            or (command == "DATA" and by_status != "userunknown")
            or (command is None and parts is None and reply_code is not None)
        ):
            reason = "filtered"
    if reason is None and lowered.strip():
        reason = "onhold"
    return reason or "undefined"
