"""Linear-time scanners over untrusted text: addresses, status and reply codes, Message-IDs, HTML.

Everything here runs in time proportional to its input, whatever the input:
each regular expression has only bounded repetitions (``{1,64}``) or a single
unambiguous quantifier, and a lookbehind makes an address match start only at
the beginning of a run of address characters, so no position is tried twice
over a long run. Where a regular expression could backtrack (HTML tags, the
``<`` of a hostile part without its ``>``), a ``str.find`` loop does the work.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

__all__ = [
    "ADDRESS",
    "ENHANCED",
    "REPLY",
    "address_positions",
    "addresses",
    "all_enhanced",
    "collapse",
    "enhanced",
    "find_addresses",
    "has_any",
    "has_enhanced",
    "html_to_text",
    "message_ids",
    "reply_code",
]

_LOCAL_CHARS = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~.-"
# A local part of at most 64 characters (RFC 5321), starting where a run of
# local-part characters starts; a domain of at most 255 characters or an
# address literal. The pieces are checked in Python after the match.
ADDRESS = re.compile(
    rf"(?<![{_LOCAL_CHARS}])([{_LOCAL_CHARS}]{{1,64}})@"
    r"([A-Za-z0-9.-]{1,255}|\[(?:IPv6:)?[0-9A-Fa-f.:]{2,45}\])"
)
# Enhanced status code (RFC 3463); the look-arounds keep IP addresses, version
# numbers and host names out (``user@5.0.0.com``: no ``@`` before, no ``.`` and
# a letter or digit after). The look-behind (no word character, dot or ``@``
# before the class digit) is written after that digit, so that the engine skips
# every position without a 2, 4 or 5 instead of trying the pattern there.
ENHANCED = re.compile(r"([245])(?<![\w.@][245])\.(\d{1,3})\.(\d{1,3})(?!\w|\.\w)")
# SMTP reply code, only where servers print one (at the start of a line, or
# after white space or one of ``:;([<"'#=``), so that sizes, dates and counts in
# the prose are not taken for codes. The expression starts with the code's first
# digit and looks back one character (none at the start of the text; a line
# start follows a newline, which is white space): the regular expression engine
# then skips every position that holds no 2, 4 or 5 without trying the pattern.
REPLY = re.compile(
    r"([245](?<![^\s:;(\[<\"'#=][245])[0-9][0-9])"
    r"(?=[ \t\n-]{1,16}[A-Za-z0-9<#(\[:]|[ \t-]{0,16}$)",
    re.MULTILINE,
)
# Servers that label the code instead of starting the line with it (Zoho).
_LABELLED_REPLY = re.compile(
    r"(?:error_code|responsecode|reply code|smtp code)[ \t]{0,4}[:=]?[ \t]{0,4}([245]\d\d)\b",
    re.IGNORECASE,
)
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,998})>")


def has_any(text: str, phrases: tuple[str, ...]) -> bool:
    """Whether any of ``phrases`` occurs in ``text`` (plain substring search)."""
    return any(phrase in text for phrase in phrases)


def collapse(text: str) -> str:
    """Whitespace runs folded to one space, ends trimmed.

    ``str.split()`` splits at the characters ``\\s`` matches (``str.isspace``),
    so this is ``re.sub(r"\\s+", " ", text).strip()`` in two C calls.
    """
    return " ".join(text.split())


_LOCAL_SET = "".join(
    [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    + [chr(c) for c in range(ord("0"), ord("9") + 1)]
    + list("!#$%&'*+/=?^_`{|}~.-")
)
# Below this length, or above this share of "@" characters, the expression's own
# scan is cheaper.
_SHORT = 256
_AT_SHARE = 64


def find_addresses(text: str) -> Iterator[re.Match[str]]:
    """The matches of ``ADDRESS.finditer(text)``, found from each ``@`` in a long text.

    Every match holds exactly one ``@`` and starts where the run of local-part
    characters before it starts (the look-behind), so for each ``@`` after the
    previous match the run is measured (``rstrip`` of up to 65 characters) and
    the expression is tried at its start only: the same matches, without trying
    the expression at every character of a long notice. Short text, and text
    with many ``@`` characters (hostile input), take the expression's own scan.
    """
    if len(text) < _SHORT or text.count("@") * _AT_SHARE > len(text):
        return ADDRESS.finditer(text)
    return _from_each_at(text)


def _from_each_at(text: str) -> Iterator[re.Match[str]]:
    pos = 0
    at = text.find("@")
    while at >= 0:
        window = text[max(0, at - 65) : at]
        run = len(window) - len(window.rstrip(_LOCAL_SET))
        start = at - run
        # A run of 1-64 characters that starts at or after the previous match's
        # end (a run longer than 64 names no address; the window is 65 long).
        if 0 < run <= 64 and start >= pos:
            match = ADDRESS.match(text, start)
            if match is not None:
                yield match
                pos = match.end()
                at = text.find("@", pos)
                continue
        at = text.find("@", at + 1)


def addresses(text: str) -> list[str]:
    """Addresses in a header value or a line of text, as written, in order, each once.

    Two spellings that differ only in case are one address (the first is kept).
    """
    found: list[str] = []
    seen: set[str] = set()
    for match in find_addresses(text):
        local, domain = match.group(1), match.group(2)
        local = local.lstrip(".'")
        if local.lower().startswith("mailto:"):
            local = local[7:]
        if not local:
            continue
        if not domain.startswith("["):
            domain = domain.strip(".-")
            labels = domain.split(".")
            if len(labels) < 2 or len(labels[-1]) < 2 or "" in labels:
                continue
        address = f"{local}@{domain}"
        key = address.lower()
        if key not in seen:
            seen.add(key)
            found.append(address)
    return found


def address_positions(text: str) -> dict[str, int]:
    """Each address in ``text``, lower-cased, with the offset of its first occurrence."""
    found: dict[str, int] = {}
    for match in find_addresses(text):
        local = match.group(1).lstrip(".'").lower().removeprefix("mailto:")
        domain = match.group(2).strip(".-").lower()
        found.setdefault(f"{local}@{domain}", match.start())
    return found


def enhanced(text: str) -> str | None:
    """The first enhanced status code in ``text``, canonical (``5.1.1``)."""
    match = ENHANCED.search(text)
    if match is None:
        return None
    return f"{match.group(1)}.{int(match.group(2))}.{int(match.group(3))}"


def has_enhanced(text: str) -> bool:
    """Whether ``text`` holds an enhanced status code (``bool(all_enhanced(text))``)."""
    return ENHANCED.search(text) is not None


def all_enhanced(text: str) -> list[str]:
    """Every enhanced status code in ``text``, canonical, in order."""
    return [f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}" for m in ENHANCED.finditer(text)]


def reply_code(text: str) -> str | None:
    """The first SMTP reply code printed as servers print one."""
    match = REPLY.search(text)
    if match is None and "code" in text.lower():
        # Every label ends in "code"; no character but c, o, d and e (any case)
        # matches those letters ignoring case, so a text without it has no label.
        match = _LABELLED_REPLY.search(text)
    return match.group(1) if match else None


def message_ids(value: str) -> list[str]:
    """``<id>`` tokens in a header value; a bare ``id@host`` value counts as one."""
    ids = [f"<{m.group(1)}>" for m in _MESSAGE_ID.finditer(value)]
    if ids:
        return ids
    value = value.strip()
    return [f"<{value}>"] if value and " " not in value and "@" in value else []


def _drop_blocks(text: str, lowered: str, tag: str) -> tuple[str, str]:
    """``text`` without its ``<script>``/``<style>`` elements (an unclosed one runs to the end)."""
    if f"<{tag}" not in lowered:
        return text, lowered
    kept: list[str] = []
    kept_lower: list[str] = []
    at = 0
    while True:
        start = lowered.find(f"<{tag}", at)
        if start < 0:
            break
        kept.append(text[at:start])
        kept_lower.append(lowered[at:start])
        end = lowered.find(f"</{tag}", start)
        if end < 0:
            at = len(text)
            break
        close = lowered.find(">", end)
        at = len(text) if close < 0 else close + 1
    kept.append(text[at:])
    kept_lower.append(lowered[at:])
    return "".join(kept), "".join(kept_lower)


_BREAKS = ("br", "p", "/p", "div", "/div", "tr", "/tr", "li", "/li", "h1", "h2", "h3", "h4")


def html_to_text(text: str) -> str:
    """The text of an HTML part: tags dropped, block ends as new lines, mailto links kept."""
    lowered = text.lower()
    text, lowered = _drop_blocks(text, lowered, "script")
    text, lowered = _drop_blocks(text, lowered, "style")
    out: list[str] = []
    at = 0
    while True:
        start = text.find("<", at)
        if start < 0:
            out.append(text[at:])
            break
        end = text.find(">", start)
        if end < 0:
            # No tag closes: the rest is text, not one endless tag.
            out.append(text[at:])
            break
        out.append(text[at:start])
        tag = lowered[start + 1 : end]
        name = tag.split(None, 1)[0] if tag.strip() else ""
        href = tag.find('href="mailto:')
        if href >= 0:
            close = tag.find('"', href + 13)
            out.append(
                f" {text[start + 1 + href + 13 : start + 1 + (close if close >= 0 else end)]} "
            )
        out.append("\n" if name in _BREAKS or name.rstrip("/") in _BREAKS else " ")
        at = end + 1
    return html.unescape("".join(out))
