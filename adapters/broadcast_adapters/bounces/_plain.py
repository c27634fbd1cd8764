"""Plain-text bounces: Postfix, qmail, Exim, Sendmail transcripts, Exchange, Gmail and the rest.

Recipients are found where those formats put them (a line of their own,
optionally labelled, quoted or followed by a reason), and each recipient's
status and reply codes come from the text that follows it up to the next
recipient. Everything is line scanning and ``str.find``: a line longer than
``LINE_LIMIT`` characters is never taken for a recipient line, and the
whole-notice fallbacks are computed once per message, not once per recipient.
"""

from __future__ import annotations

import bisect
import re
from itertools import islice

from broadcast_domain.domain.reasons import smtp_command
from broadcast_domain.ports import ParsedReport

from . import _verdict
from ._dsn import MAX_REPORTS, permanent
from ._mime import Part, read_message
from ._scan import addresses, collapse, enhanced, find_addresses, has_any, reply_code

__all__ = [
    "FIVE_XX",
    "LINE_LIMIT",
    "NOTICE_LIMIT",
    "ORIGINAL_MARKER",
    "original_marker_at",
    "split_original",
    "text_reports",
]

LINE_LIMIT = 1000
"""Characters of a line that can name a failed recipient."""
NOTICE_LIMIT = 64 * 1024
"""Characters of a notice searched for codes and words when a recipient's own lines have none."""

_LABELS = (
    "original-recipient",
    "original recipient",
    "final-recipient",
    "final recipient",
    "failed recipient",
    "recipient address",
    "recipient(s)",
    "recipients",
    "recipient",
    "rcpt to",
    "address",
    "e-mail",
    "email",
    "destinataire",
    "empfänger",
    "unknown user",
    "user",
    "to",
)

_DAEMON_LOCALPARTS = frozenset(
    {
        "mailer-daemon",
        "mailer_daemon",
        "mailerdaemon",
        "postmaster",
        "post_master",
        "double-bounce",
        "bounce",
        "bounces",
        "nobody",
        "noreply",
        "no-reply",
        "daemon",
        "mail-daemon",
        "mdaemon",
        "mail_daemon",
        "abuse",
        "root",
    }
)

# Where the copy of the original message begins in a plain-text bounce: a line
# that is one of these (ORIGINAL_MARKER, anchored at a line start).
_MARKER_LINE = (
    r"[ \t>|*=_-]{0,40}(?:"
    r"(?:below this line is a copy of the message|this is a copy of the message|"
    r"the header of the original message is following|"
    r"(?:the )?(?:original )?(?:message|headers?) (?:of the original message )?"
    r"(?:is|are|was|were) (?:following|attached|below)|"
    r"headers of the original message|copy of (?:the )?(?:original )?message"
    r"(?! (?:was|has|could)))[^\n]*"
    r"|(?:(?:begin|start) (?:of )?)?(?:original|returned|unsent|undelivered) "
    r"(?:message|mail|e-mail)(?: (?:headers?|follows|below|text)){0,3}"
    r"(?: follows?| below| is below)?[ \t:.=_-]{0,80}"
    r"|message headers? follows?[ \t:.-]{0,80}|original mail as follows:?|bounced e-?mail:?"
    r")$"
)
ORIGINAL_MARKER = re.compile("^" + _MARKER_LINE, re.IGNORECASE | re.MULTILINE)
# The same line, faster: tried after each newline (the engine finds each by a
# fast scan instead of trying the pattern at every character), and only where
# the words start with a letter that starts one of them (b, t, o, m, h, c, s, r,
# u: ignoring case as the expression does), so most lines are refused at once.
_MARKER_PREFIX = r"[ \t>|*=_-]{0,40}"
_FAST_MARKER = _MARKER_PREFIX + "(?=[btomhcsru])" + _MARKER_LINE.removeprefix(_MARKER_PREFIX)
_MARKER_AT_START = re.compile(_FAST_MARKER, re.IGNORECASE | re.MULTILINE)
_MARKER_AFTER_NEWLINE = re.compile("\n(?:" + _FAST_MARKER + ")", re.IGNORECASE | re.MULTILINE)


def original_marker_at(text: str) -> int | None:
    """Where ``ORIGINAL_MARKER.search(text)`` matches, or None (the same answer, faster)."""
    if _MARKER_AT_START.match(text) is not None:
        return 0
    match = _MARKER_AFTER_NEWLINE.search(text)
    return match.start() + 1 if match is not None else None


_INLINE_HEADERS = (
    "return-path:",
    "received:",
    "message-id:",
    "from:",
    "date:",
    "to:",
    "subject:",
    "dkim-signature:",
    "mime-version:",
    "content-type:",
)
_HEADERISH = ("received:", "return-path:", "message-id:", "from:", "to:", "subject:", "date:")
# A recipient given up because its retry period ran out (Exim's words): the
# condition was temporary, only the patience was final.
_RETRIES_EXHAUSTED = (
    "retry timeout exceeded",
    "retry time not reached",
    "failing for a long time",
)
# Words of a final or of a temporary condition in a notice without codes,
# lower-cased, matched as substrings.
_PERMANENT_WORDS = (
    "permanent error",
    "permanent fatal",
    "permanent failure",
    "permanently failed",
    "permanently error",
    "i've given up",
    "ive given up",
    "giving up",
    "failed permanently",
    "will not redeliver",
    "will not try to redeliver",
    "could not be delivered",
    "undeliverable",
    "has been rejected",
    "unknown user",
    "user unknown",
    "does not exist",
    "no such user",
    "unrouteable",
)
_TEMPORARY_WORDS = (
    "temporary",
    "temporarily",
    "will be retr",
    "will retr",
    "still trying",
    "not yet been delivered",
    "will continue to try",
    "retry for",
    "retry until",
    "delayed",
    "try again later",
    "warning message only",
)
# A 5xx code standing alone (the look-behind after the 5: the engine scans for 5s).
FIVE_XX = re.compile(r"5(?<![\w.]5)\d\d(?![\w.])")


def is_daemon(address: str) -> bool:
    """A mail system's own address (mailer-daemon, postmaster, ...)."""
    return address.split("@", 1)[0].lower() in _DAEMON_LOCALPARTS


def _header_block_at(text: str, at: int) -> Part | None:
    """The header block starting on the first field line at or after ``at``."""
    line_start = at
    scanned = 0
    while line_start < len(text) and scanned < 20:
        line_end = text.find("\n", line_start)
        line = text[line_start : line_end if line_end >= 0 else len(text)]
        name, sep, _ = line.lstrip("> ").partition(":")
        if sep and name and " " not in name and len(name) < 60:
            block_end = text.find("\n\n", line_start)
            block = text[line_start : block_end if block_end >= 0 else len(text)]
            lines = [ln[2:] if ln.startswith("> ") else ln for ln in block.split("\n")]
            return read_message("\n".join(lines) + "\n\n")
        if line_end < 0:
            break
        line_start = line_end + 1
        scanned += 1
    return None


def split_original(text: str) -> tuple[str, Part | None]:
    """The bounce text without its quoted original message, and that original's headers."""
    cut = original_marker_at(text)
    if cut is None:
        # No marker: an inline header block (Received:/Return-Path: lines at the
        # start of a line after a blank line) starts the original.
        at = text.find("\n\n")
        while at >= 0:
            nxt = text[at + 2 : at + 2 + 40].lower()
            if nxt.startswith(_HEADERISH) or nxt.startswith(_INLINE_HEADERS):
                block = text[at + 2 : at + 2 + 4000]
                if block.count("\n", 0, block.find("\n\n") if "\n\n" in block else None) >= 2:
                    cut = at
                    break
            at = text.find("\n\n", at + 2)
    if cut is None:
        return text, None
    first_line_end = text.find("\n", cut)
    original = _header_block_at(text, first_line_end + 1) if first_line_end >= 0 else None
    return text[:cut], original


def _recipient_on(line: str) -> str | None:
    """The address a line names as a failed recipient, or None."""
    if len(line) > LINE_LIMIT or "@" not in line:
        return None
    for match in find_addresses(line):
        before = line[: match.start()].lstrip(" \t>*-")
        if len(before) > 100:
            return None
        lowered = before.lower()
        for label in _LABELS:
            if lowered.startswith(label):
                rest = before[len(label) :].lstrip()
                before = rest[1:].lstrip() if rest.startswith(":") else rest
                break
        lowered = before.lower()
        if lowered.endswith("mailto:"):
            before = before[:-7]
        before = before.rstrip().removesuffix("<").rstrip()
        name = before.strip("\"'").strip()
        if len(name) > 60 or "<" in name or ">" in name or '"' in name:
            continue
        tail = line[match.end() :].lstrip(">")
        if not _tail_ok(tail):
            continue
        address = match.group(0).strip(".'")
        return address[7:] if address.lower().startswith("mailto:") else address
    return None


def _tail_ok(tail: str) -> bool:
    if not tail.strip() or tail.startswith((":", "...")):
        return True
    if tail[0] in ",;.":
        tail = tail[1:]
    spaced = tail[:1] in (" ", "\t")
    tail = tail.strip()
    if not tail:
        return True
    lowered = tail.lower()
    return (
        lowered.startswith(("on ", "on\t", "...", ":"))
        or (tail[0] == "(" and tail.endswith(")"))
        or (tail[0] == "[" and tail.endswith("]"))
        or (spaced and tail[0] in "-#(")
    )


def _text_recipients(body: str, exclude: set[str]) -> list[tuple[str, int]]:
    """Recipients named on their own line, with the offset of that line."""
    found: list[tuple[str, int]] = []
    seen: set[str] = set()
    offset = 0
    for line in body.split("\n"):
        address = _recipient_on(line) if "@" in line else None
        if address is not None:
            key = address.lower()
            if key not in exclude and key not in seen and not is_daemon(address):
                seen.add(key)
                found.append((address, offset))
                if len(found) >= MAX_REPORTS:
                    break
        offset += len(line) + 1
    return found


class _Body:
    """Facts about the whole notice, each computed at most once."""

    __slots__ = ("_cache", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._cache: dict[str, object] = {}

    def codes(self) -> tuple[str | None, str | None]:
        if "codes" not in self._cache:
            head = self.text[:NOTICE_LIMIT]
            self._cache["codes"] = (enhanced(head), reply_code(head))
        return self._cache["codes"]  # type: ignore[return-value]

    def collapsed(self) -> str:
        if "collapsed" not in self._cache:
            self._cache["collapsed"] = collapse(_drop_rules(self.text[: 4 * 1000]))
        return self._cache["collapsed"]  # type: ignore[return-value]

    def permanent_by_words(self) -> bool | None:
        if "words" not in self._cache:
            self._cache["words"] = _words(self.text[:NOTICE_LIMIT])
        return self._cache["words"]  # type: ignore[return-value]


def _words(text: str) -> bool | None:
    lowered = text.lower()
    if has_any(lowered, _TEMPORARY_WORDS):
        return False
    if has_any(lowered, _PERMANENT_WORDS) or FIVE_XX.search(text):
        return True
    return None


def _drop_rules(text: str) -> str:
    """Lines made only of rules (``-----``, ``=====``) removed."""
    return "\n".join(
        line for line in text.split("\n") if line.strip(" \t#*=_-") or not line.strip()
    )


def _few_letters(text: str, least: int) -> bool:
    """Fewer than ``least`` letters in ``text`` (counted in C, up to ``least``)."""
    return len(list(islice(filter(str.isalpha, text), least))) < least


def _code_paragraph(segment: str) -> str:
    """From the first line of ``segment`` that carries an SMTP reply code to its paragraph's end."""
    offset = 0
    for line in segment.split("\n"):
        if reply_code(line) is not None:
            end = segment.find("\n\n", offset)
            return collapse(segment[offset : end if end >= 0 else len(segment)])
        offset += len(line) + 1
    return ""


def text_reports(
    body_text: str,
    exclude: set[str],
    header_rcpts: list[str],
    original_rcpts: list[str],
    delayed: bool,
) -> list[ParsedReport]:
    """One report per failed recipient a plain-text notice names."""
    body = _Body(body_text)
    located = _text_recipients(body_text, exclude) or [
        # The only recipient line names the bounce's own addressee: a message
        # someone sent to themselves, or a list. It is the failed recipient.
        (addr, pos)
        for addr, pos in _text_recipients(body_text, set())[:1]
    ]
    if header_rcpts:
        # X-Failed-Recipients is authoritative for who failed.
        wanted = {a.lower() for a in header_rcpts}
        positions = {addr.lower(): pos for addr, pos in located}
        ordered = [(addr, pos) for addr, pos in located if addr.lower() in wanted]
        known = {addr.lower() for addr, _ in ordered}
        ordered += [
            (addr, positions.get(addr.lower(), -1))
            for addr in header_rcpts
            if addr.lower() not in known
        ]
        located = ordered
    if not located:
        loose = [a for a in addresses(body_text) if a.lower() not in exclude and not is_daemon(a)]
        if loose:
            located = [(loose[0], body_text.lower().find(loose[0].lower()))]
        elif original_rcpts:
            located = [(original_rcpts[0], -1)]
        else:
            return []
    challenge = _verdict.is_challenge(body_text[:20_000])
    reports: list[ParsedReport] = []
    starts = sorted(pos for _, pos in located if pos >= 0)
    for addr, pos in located[:MAX_REPORTS]:
        if pos >= 0:
            nxt = bisect.bisect_right(starts, pos)
            segment = body_text[pos : starts[nxt] if nxt < len(starts) else len(body_text)]
            segment = segment[: 20 * LINE_LIMIT]
        else:
            segment = body_text[: 20 * LINE_LIMIT]
        status = enhanced(segment)
        reply = reply_code(segment)
        if status is None and reply is None:
            # Codes printed once for several recipients (above or below the list).
            status, reply = body.codes()
        first, _, rest = segment.partition("\n")
        at = first.lower().find(addr.lower())
        # What follows the address on its own line ("user@host: Domain does not
        # exist"), then the lines below it.
        tail = first[at + len(addr) :].lstrip(">:;,. \t") if at >= 0 else ""
        diag_source = f"{tail}\n{rest}" if rest.strip() else segment
        diagnostic = collapse(_drop_rules(diag_source))
        if _few_letters(diagnostic.replace(addr, ""), 8):
            # Nothing but the address and rules: the reason is elsewhere in the notice.
            diagnostic = body.collapsed()
        diagnostic = diagnostic[: _verdict.EXPLANATION_LIMIT]
        if status and reply and status[0] != reply[0]:
            # A code of the other class in the prose is not the server's verdict.
            status = status if status[0] == "5" else None
        words = _words(segment)
        if words is None:
            words = body.permanent_by_words()
        # A notice that gave up (retry timeout, expired in the queue) reports a
        # final failure, so only words of a temporary condition make it temporary.
        # Without a code, a warning notice is temporary whatever else its prose
        # says; any other notice is final unless its words say temporary.
        is_permanent = permanent(
            status,
            reply,
            fallback=False if delayed or challenge else (True if words is None else words),
        )
        if status is None and reply is None and has_any(segment.lower(), _RETRIES_EXHAUSTED):
            # Given up after the retry period with no code at all: what failed
            # was temporary (the queue's patience ran out, not the address).
            is_permanent = False
        action = "delayed" if (delayed or challenge) and not is_permanent else "failed"
        transcript = _code_paragraph(segment)
        detail, reason = _verdict.decide(
            action=action,
            status=status,
            reply=reply,
            diagnostic=transcript or diagnostic,
            explanation=diagnostic,
            comment="",
            command=smtp_command(segment) or _verdict.transcript_command(body_text, addr),
            recipient=addr,
        )
        reports.append(
            ParsedReport(
                action=action,
                recipient=addr,
                status=status,
                reply_code=reply,
                diagnostic=diagnostic,
                permanent=is_permanent if action == "failed" else False,
                reason=reason,
                detail=detail,
            )
        )
    return reports
