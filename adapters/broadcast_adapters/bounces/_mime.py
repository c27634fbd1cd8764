"""A small MIME reader in linear time, with limits: headers, parts, decoded text.

The standard library's ``email`` parser checks every line against every open
boundary (time grows with nesting depth times length) and its encoded-word and
address grammars backtrack on hostile headers. A bounce parser needs much less
than the whole of MIME: the header fields, the tree of parts, and each leaf's
decoded text. This reader gives exactly that, each step a ``str.find`` scan:

- the message is read as Latin-1 text (one byte, one character), so each
  part's bytes are recovered exactly for decoding in its own charset;
- a header block is read up to ``HEADER_LIMIT`` characters, a header value is
  decoded up to ``VALUE_LIMIT`` characters;
- a multipart body is cut at its boundary lines, at most ``PART_LIMIT`` parts a
  message, at most ``DEPTH_LIMIT`` levels deep (deeper parts are not read);
- a leaf's text is decoded (base64, quoted-printable, charset) from at most
  ``TEXT_LIMIT`` characters of its body: a report's explanation, its status
  fields and the copy of the original's headers all come first.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re

__all__ = [
    "DEPTH_LIMIT",
    "HEADER_LIMIT",
    "PART_LIMIT",
    "TEXT_LIMIT",
    "VALUE_LIMIT",
    "Part",
    "decode_bytes",
    "decode_header",
    "read_message",
]

HEADER_LIMIT = 256 * 1024
"""Characters of one header block that are read; the rest of the block is skipped."""
VALUE_LIMIT = 16 * 1024
"""Characters of one header value that are decoded."""
PART_LIMIT = 256
"""Parts read in one message, all levels together."""
DEPTH_LIMIT = 12
"""Levels of nesting read (multipart inside multipart, or a returned message)."""
TEXT_LIMIT = 512 * 1024
"""Characters of one part's body that are decoded into text."""

_FIELD_BREAK = re.compile(r"\n(?![ \t])")
_CONTAINERS = frozenset({"message/rfc822", "message/global", "message/partial"})
_HEADER_ONLY = frozenset(
    {"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}
)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """``data`` in its charset, else UTF-8, else Latin-1; never raises."""
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return data.decode("latin-1")


def _raw_bytes(text: str) -> bytes:
    # Header and body text is Latin-1 over the original bytes, except where a
    # caller handed in real text (a nested decode): then UTF-8 is the truth.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _b64(data: bytes) -> bytes:
    cleaned = data.translate(None, b" \t\n\r")
    try:
        return base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4), validate=False)
    except (binascii.Error, ValueError):
        cut = len(cleaned) - len(cleaned) % 4
        try:
            return base64.b64decode(cleaned[:cut], validate=False)
        except (binascii.Error, ValueError):
            return b""


def _encoded_word(charset: str, encoding: str, payload: str) -> str | None:
    data = _raw_bytes(payload)
    decoded = _b64(data) if encoding in "bB" else binascii.a2b_qp(data.replace(b"_", b" "))
    charset = charset.split("*", 1)[0]  # RFC 2231 language suffix
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return decode_bytes(decoded, charset)


def decode_header(value: str) -> str:
    """An RFC 2047 header value decoded, folded to one line; up to ``VALUE_LIMIT`` characters.

    One pass over the value: each ``=?`` is looked at once and the search for
    its ``?=`` ends the decoding when there is none.
    """
    value = value[:VALUE_LIMIT]
    if "=?" not in value:
        return " ".join(value.split())
    out: list[str] = []
    at = 0
    previous_word = False
    while True:
        start = value.find("=?", at)
        if start < 0:
            break
        q1 = value.find("?", start + 2)
        if q1 < 0:
            break
        if (
            q1 - start > 42
            or q1 + 2 >= len(value)
            or value[q1 + 1] not in "bBqQ"
            or value[q1 + 2] != "?"
        ):
            out.append(value[at : start + 2])
            at = start + 2
            previous_word = False
            continue
        end = value.find("?=", q1 + 3)
        if end < 0:
            break
        between = value[at:start]
        if not (previous_word and not between.strip()):
            out.append(between)
        word = _encoded_word(value[start + 2 : q1], value[q1 + 1], value[q1 + 3 : end])
        out.append(word if word is not None else value[start : end + 2])
        at = end + 2
        previous_word = True
    out.append(value[at:])
    return " ".join("".join(out).split())


def _unfold(value: str) -> str:
    """A folded field value on one line, up to ``VALUE_LIMIT`` characters."""
    value = value[:VALUE_LIMIT]
    return " ".join(value.split()) if "\n" in value else value.strip()


def _params(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype; name=value; ...`` -> (lower-cased type, parameters)."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        name, sep, val = item.partition("=")
        if not sep:
            continue
        val = val.strip()
        if val.startswith('"'):
            close = val.find('"', 1)
            val = val[1:close] if close > 0 else val[1:]
        params.setdefault(name.strip().lower(), val)
    return head.strip().lower(), params


class Part:
    """One MIME entity: its header fields, its content type, its leaf text or its sub-parts."""

    __slots__ = ("_text", "body", "children", "content_type", "fields", "params")

    def __init__(self, fields: dict[str, list[str]], body: str) -> None:
        self.fields = fields
        self.body = body
        ctype, self.params = _params(self.first("content-type"))
        self.content_type = ctype if "/" in ctype else "text/plain"
        self.children: list[Part] = []
        self._text: str | None = None

    def first(self, name: str) -> str:
        """The value of the first field called ``name`` (lower case), unfolded, or ``""``."""
        values = self.fields.get(name)
        return _unfold(values[0]) if values else ""

    def header(self, name: str) -> str:
        """The first field called ``name``, RFC 2047 decoded, on one line."""
        return decode_header(self.first(name))

    def headers(self, name: str) -> list[str]:
        """Every field called ``name``, decoded."""
        return [decode_header(_unfold(v)) for v in self.fields.get(name, ())]

    @property
    def charset(self) -> str | None:
        """The ``charset`` parameter, if any."""
        return self.params.get("charset") or None

    def text(self) -> str:
        """The decoded text of a leaf, LF line ends, up to ``TEXT_LIMIT`` characters of body."""
        if self._text is None:
            body = self.body[:TEXT_LIMIT]
            encoding = self.first("content-transfer-encoding").strip().lower()
            data = _raw_bytes(body)
            if encoding == "base64":
                data = _b64(data)
            elif encoding == "quoted-printable":
                data = binascii.a2b_qp(data)
            text = decode_bytes(data, self.charset)
            if "\r" in text:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            self._text = text
        return self._text

    def walk(self) -> list[Part]:
        """This part and every part below it, depth first."""
        out: list[Part] = []
        stack = [self]
        while stack:
            part = stack.pop()
            out.append(part)
            stack.extend(reversed(part.children))
        return out


def _read_fields(text: str) -> tuple[dict[str, list[str]], str]:
    """The header fields at the start of ``text`` and the body after the blank line."""
    if text.startswith("\n"):
        return {}, text[1:]
    end = text.find("\n\n")
    head, body = (text, "") if end < 0 else (text[:end], text[end + 2 :])
    if len(head) > HEADER_LIMIT:
        head = head[:HEADER_LIMIT]
    fields: dict[str, list[str]] = {}
    # One field per chunk: a line break not followed by white space ends a
    # field. The values stay folded until someone reads them (most never are).
    for chunk in _FIELD_BREAK.split(head):
        key, sep, value = chunk.partition(":")
        if sep and key and len(key) < 80 and " " not in key.strip() and "\n" not in key:
            fields.setdefault(key.strip().lower(), []).append(value)
    return fields, body


class _Budget:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def _split_multipart(body: str, boundary: str, limit: int) -> list[str] | None:
    """The bodies between boundary lines (at most ``limit``); None when there is no boundary."""
    delimiter = "\n--" + boundary
    text = "\n" + body
    at = text.find(delimiter)
    if at < 0:
        return None
    parts: list[str] = []
    while at >= 0 and len(parts) < limit:
        line_end = text.find("\n", at + len(delimiter))
        closing = text.startswith("--", at + len(delimiter))
        if closing or line_end < 0:
            break
        nxt = text.find(delimiter, line_end)
        parts.append(text[line_end + 1 : nxt if nxt >= 0 else len(text)])
        at = nxt
    return parts


def _build(text: str, depth: int, budget: _Budget) -> Part:
    fields, body = _read_fields(text)
    part = Part(fields, body)
    budget.parts += 1
    if depth >= DEPTH_LIMIT:
        return part
    ctype = part.content_type
    if ctype.startswith("multipart/"):
        boundary = part.params.get("boundary", "")
        pieces = _split_multipart(body, boundary, PART_LIMIT - budget.parts) if boundary else None
        if pieces is None:
            # A multipart whose boundary never appears: read it as text.
            part.content_type = "text/plain"
            return part
        part.body = ""
        for piece in pieces:
            if budget.parts >= PART_LIMIT:
                break
            part.children.append(_build(piece, depth + 1, budget))
    elif ctype in _CONTAINERS or ctype in _HEADER_ONLY:
        inner = body
        encoding = part.first("content-transfer-encoding").strip().lower()
        if encoding in ("base64", "quoted-printable"):
            inner = part.text()
        if ctype in _HEADER_ONLY:
            inner = inner.lstrip("\n")
            end = inner.find("\n\n")
            inner = inner if end < 0 else inner[: end + 1]
        if budget.parts < PART_LIMIT:
            # Only the returned message's header fields matter (its Message-ID,
            # its To); its body is neither split nor decoded.
            fields, _ = _read_fields(inner.lstrip("\n"))
            part.children.append(Part(fields, ""))
            budget.parts += 1
    return part


def read_message(text: str) -> Part:
    """The MIME tree of a message given as Latin-1 text with LF line ends."""
    return _build(text, 0, _Budget())
