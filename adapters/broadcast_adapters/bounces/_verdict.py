"""What a person reads about a failure (the detail) and why it happened (the reason).

The detail of a failure is never empty. In this order (SPEC section 2): the
``Diagnostic-Code`` text; the explanation the human-readable part gives for
that recipient (its paragraph, or a ``Reason:`` line); the comment on the
``Status:`` line; the standard description of the status code (RFC 3463).
Boilerplate that names no cause ("Your message could not be delivered.") is
not an explanation. The reason comes from
:func:`broadcast_domain.domain.reasons.classify_reason` over the same texts.

Warnings and challenge/response mails are told apart here too, with phrase
lists matched by substring search (linear, no regular expressions).
"""

from __future__ import annotations

from broadcast_domain.domain.reasons import (
    classify_reason,
    describe_status,
    names_a_cause,
    smtp_command,
)

from ._scan import address_positions, collapse, has_any, has_enhanced, reply_code

__all__ = ["EXPLANATION_LIMIT", "Notice", "decide", "is_challenge", "is_warning"]

EXPLANATION_LIMIT = 1000
"""Characters of an explanation kept as a detail."""
NOTICE_LIMIT = 64 * 1024
"""Characters of a notice searched for the SMTP step a refusal came at."""

# Sentences every failure notice carries: they say that it failed, not why.
_BOILERPLATE = (
    "could not be delivered",
    "couldn't be delivered",
    "was not delivered",
    "delivery has failed",
    "delivery failed",
    "undeliverable",
    "permanent error",
    "permanent fatal error",
    "failed permanently",
    "the following address",
    "the following recipient",
    "this is an automatically generated",
    "this message was created automatically",
    "returned to sender",
    "unable to deliver",
    "delivery to the following",
)

# A notice that delivery is still being tried (a warning, not a failure).
_WARNING = (
    "not yet been delivered",
    "has not been delivered yet",
    "not been delivered yet",
    "will continue to try",
    "will keep trying",
    "will keep on trying",
    "still trying",
    "will retry",
    "will be retried",
    "will try again",
    "will try to deliver",
    "this is a warning message only",
    "warning message only",
    "delivery attempts will continue",
    "continue delivery attempts",
    "no action is required on your part",
    "you do not need to resend",
    "do not need to resend your message",
    "delivery is delayed",
    "delivery has been delayed",
    "is delayed",
)
# Words that a warning has turned into a final failure.
_GAVE_UP = (
    "giving up",
    "given up",
    "gave up",
    "will not be retried",
    "won't be retried",
    "no further attempts",
    "will not try again",
    "permanently",
    "retry timeout exceeded",
    "could not be delivered for",
)

# Challenge/response systems ask the sender to prove itself before delivery.
_CHALLENGE = (
    "confirm you are human",
    "confirm that you are human",
    "confirm you are a human",
    "verify you are human",
    "verify that you are human",
    "verify you are a human",
    "prove you are human",
    "not a robot",
    "challenge/response",
    "challenge-response",
    "challenge response",
    "verify your email address by",
    "confirm your message",
    "confirm that you sent",
    "please confirm your e-mail",
    "please confirm your email",
    "whitelist request",
    "spam protection system",
)

# Reasons of a temporary condition; a final failure with a 4.x.x code and one
# of these has expired in the queue.
_GIVEN_UP_AS = frozenset({"onhold", "undefined"})

_REASON_LABELS = (
    "reason:",
    "error:",
    "diagnostic:",
    "remote server said:",
    "the error that the other server returned was:",
    "server replied:",
    "technical details:",
    "error details:",
    "diagnostic information:",
)


def is_warning(text: str) -> bool:
    """The text says that delivery is still being tried and has not given up."""
    lowered = text.lower()
    return has_any(lowered, _WARNING) and not has_any(lowered, _GAVE_UP)


def is_challenge(text: str) -> bool:
    """The text is a challenge/response request to the sender."""
    return has_any(text.lower(), _CHALLENGE)


def informative(text: str) -> bool:
    """The text gives a cause: it names one, or quotes a server's code."""
    if not text:
        return False
    # The codes first: a regular-expression search is cheaper than the phrase tables.
    return reply_code(text) is not None or has_enhanced(text) or names_a_cause(text)


def _substantive(text: str) -> bool:
    """A diagnostic worth showing: not empty, and not only a sentence of boilerplate."""
    if not text.strip():
        return False
    if informative(text):
        return True
    return not has_any(text.lower(), _BOILERPLATE)


def _masked(text: str, address: str | None) -> str:
    """``text`` with ``address`` (any case) replaced by a neutral one, so that the
    words of its local part or domain (``blocked.example``) are not read as a cause."""
    if not address or not text:
        return text
    lowered, key = text.lower(), address.lower()
    out: list[str] = []
    at = 0
    while True:
        found = lowered.find(key, at)
        if found < 0:
            break
        out += [text[at:found], "rcpt@example"]
        at = found + len(key)
    out.append(text[at:])
    return "".join(out)


class Notice:
    """The human-readable part of a report, searched for what it says about each recipient."""

    __slots__ = ("_lowered", "_positions", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._lowered: str | None = None
        self._positions: dict[str, int] | None = None

    def _index(self) -> tuple[str, dict[str, int]]:
        if self._lowered is None or self._positions is None:
            self._lowered = self.text.lower()
            self._positions = address_positions(self._lowered)
        return self._lowered, self._positions

    def about(self, *recipients: str | None) -> str:
        """The paragraph that names the recipient, from its line to the next blank line."""
        if not self.text:
            return ""
        _, positions = self._index()
        for recipient in recipients:
            if not recipient:
                continue
            at = positions.get(recipient.lower())
            if at is None:
                continue
            start = self.text.rfind("\n", 0, at) + 1
            end = self.text.find("\n\n", at)
            paragraph = self.text[start : end if end >= 0 else start + EXPLANATION_LIMIT]
            return collapse(paragraph[: 2 * EXPLANATION_LIMIT])[:EXPLANATION_LIMIT]
        return ""

    def command_for(self, recipient: str | None) -> str | None:
        """The SMTP command a transcript (``>>> DATA``) shows before the recipient's reply."""
        return transcript_command(self.text, recipient)

    def reason_line(self) -> str:
        """A labelled explanation line (``Reason: ...``) that names a cause, if any."""
        if not self.text:
            return ""
        lowered, _ = self._index()
        for label in _REASON_LABELS:
            at = lowered.find(label)
            while at >= 0:
                end = lowered.find("\n", at)
                line = collapse(self.text[at + len(label) : end if end >= 0 else len(self.text)])
                if not line:
                    # The explanation is on the lines below the label.
                    stop = lowered.find("\n\n", end + 1) if end >= 0 else -1
                    line = collapse(self.text[end + 1 : stop if stop >= 0 else end + 400])
                if informative(line):
                    return line[:EXPLANATION_LIMIT]
                at = lowered.find(label, at + len(label))
        return ""


# Hosts that refuse in their own words, in any language, with no code: a
# failure for one of their addresses means what the host always means.
_HOST_REASONS = {
    # Google Groups: the group does not exist or does not take posts from you.
    "googlegroups.com": "rejected",
}


def _on_host(recipient: str, hosts: tuple[str, ...]) -> bool:
    domain = recipient.rpartition("@")[2].lower()
    return any(domain == host or domain.endswith("." + host) for host in hosts)


def _host_reason(recipient: str) -> str | None:
    for host, reason in _HOST_REASONS.items():
        if _on_host(recipient, (host,)):
            return reason
    return None


def transcript_command(text: str, recipient: str | None) -> str | None:
    """The last ``>>> COMMAND`` of a session transcript before the reply about ``recipient``.

    Without the recipient in the transcript, the transcript's last command.
    """
    first = text.find(">>> ")
    if first < 0:
        return None
    head = text[first : first + NOTICE_LIMIT].lower()
    at = head.find(recipient.lower()) if recipient else -1
    window = head[max(0, at - 400) : at] if at >= 0 else head[:2000]
    if ">>> " not in window:
        window = head[: at if at >= 0 else 2000]
    return smtp_command(window)


def decide(
    *,
    action: str,
    status: str | None,
    reply: str | None,
    diagnostic: str,
    explanation: str,
    comment: str,
    command: str | None = None,
    recipient: str | None = None,
) -> tuple[str, str]:
    """(detail, reason) of one report; for a failure, the detail is never empty.

    ``command`` is the SMTP step the refusal came at, as a session transcript
    elsewhere in the report shows it, when the recipient's own lines do not say.
    """
    if action not in ("failed", "delayed"):
        return diagnostic, "undefined"
    explained = explanation if informative(_masked(explanation, recipient)) else ""
    own = _masked(" ".join(t for t in (diagnostic, explained, comment) if t), recipient)
    reason = classify_reason(status, reply, own, command=smtp_command(own) or command)
    outlasted = reason in _GIVEN_UP_AS or (
        reason == "networkerror" and classify_reason(status) == "expired"
    )
    if action == "failed" and status and status[0] == "4" and outlasted:
        # A temporary condition that outlasted the retries (no answer from the
        # host, x.4.1; time expired, x.4.7): the message expired.
        reason = "expired"
    elif action == "delayed" and reason in _GIVEN_UP_AS:
        # Still queued for no stated cause: it is waiting out its retry period.
        reason = "expired"
    if reason in _GIVEN_UP_AS and recipient:
        reason = _host_reason(recipient) or reason

    for candidate in (diagnostic if _substantive(diagnostic) else "", explained, comment):
        if candidate:
            return candidate[:EXPLANATION_LIMIT], reason
    described = describe_status(status)
    if described:
        return described, reason
    if reply:
        return f"{reply} {describe_status(reply[0] + '.0.0').split(' ', 1)[1]}", reason
    fallback = "5.0.0" if action == "failed" else "4.0.0"
    return describe_status(fallback), reason
