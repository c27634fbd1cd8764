"""The bounce parser's faster scans give the answers of the plain expressions they replace.

- ``reply_code`` looks for the code's first digit and looks back one
  character, and tries the labelled form only when the text says "code":
  the same code as the original expression (a delimiter or a line start, then
  the code) followed by the labelled one.
- ``original_marker_at`` tries the marker at the start and after each newline,
  where the line's words start with a letter one of the markers starts with:
  where ``ORIGINAL_MARKER.search`` matches.
- ``ENHANCED`` and ``FIVE_XX`` look behind after their first digit: the
  matches of the expressions that look behind before it.
- ``find_addresses`` tries the address expression at the start of the run
  before each ``@``: the matches of ``ADDRESS.finditer``.
- VERP tokens: the MAC is HMAC-SHA256 as ``hmac.new`` computes it, and
  ``verify`` (base32 read as one integer) accepts exactly what decoding with
  ``base64.b32decode`` and checking the MAC and the canonical spelling accepts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any
from uuid import UUID

import hypothesis.strategies as st
from hypothesis import given, settings

from broadcast_adapters.bounces._plain import FIVE_XX, ORIGINAL_MARKER, original_marker_at
from broadcast_adapters.bounces._scan import (
    ADDRESS,
    ENHANCED,
    all_enhanced,
    collapse,
    find_addresses,
    has_enhanced,
    reply_code,
)
from broadcast_domain.domain.verp import Verp

PLAIN_REPLY = re.compile(
    r"(?:^|[\s:;(\[<\"'#=])([245][0-9][0-9])(?=[ \t\n-]{1,16}[A-Za-z0-9<#(\[:]|[ \t-]{0,16}$)",
    re.MULTILINE,
)
LABELLED = re.compile(
    r"(?:error_code|responsecode|reply code|smtp code)[ \t]{0,4}[:=]?[ \t]{0,4}([245]\d\d)\b",
    re.IGNORECASE,
)


def plain_reply_code(text: str) -> str | None:
    match = PLAIN_REPLY.search(text) or LABELLED.search(text)
    return match.group(1) if match else None


_CODE_TEXT = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "550",
                "421",
                "250",
                "5.1.1",
                "1550",
                "5500",
                "reply code",
                "SMTP Code:",
                "error_code=",
                "ResponseCode",
                "CODE",
                "code",
                "\u017fmtp code",
                "user unknown",
                "x",
                "-",
                " ",
                "\t",
                "\n",
                "\u2028",
                "\xa0",
            ]
        ),
        st.sampled_from(list("\n\t :;([<\"'#=-,.a5A0")),
        st.text(max_size=4),
    ),
    max_size=16,
).map("".join)


@settings(max_examples=600)
@given(_CODE_TEXT)
def test_reply_code_is_the_plain_expressions(text: str) -> None:
    assert reply_code(text) == plain_reply_code(text)


_BEFORE = st.sampled_from([*"\n\t :;([<\"'#=-,.a5_>)]", "", "\u2028", "\xa0", "\x1c"])
_AFTER = st.sampled_from(["", " ", " x", "\tUser", "-5.1.1", "\n", ".", "5", " (", "-", "  :", "x"])


@settings(max_examples=600)
@given(
    st.lists(
        st.tuples(
            st.text(max_size=3), _BEFORE, st.sampled_from(["550", "421", "250", "199"]), _AFTER
        ),
        min_size=1,
        max_size=4,
    )
)
def test_reply_code_after_every_delimiter(pieces: list[tuple[str, str, str, str]]) -> None:
    text = "".join("".join(piece) for piece in pieces)
    assert reply_code(text) == plain_reply_code(text)


PLAIN_ENHANCED = re.compile(r"(?<![\w.@])([245])\.(\d{1,3})\.(\d{1,3})(?!\w|\.\w)")
PLAIN_FIVE_XX = re.compile(r"(?<![\w.])5\d\d(?![\w.])")
_CODES = st.lists(
    st.one_of(
        st.sampled_from(
            ["5.1.1", "4.7.0", "2.0.0", "550", "5.1", "10.5.1.1", "x5.1.1", "_550", "@5.0.0.com"]
        ),
        st.sampled_from([*" .\n:;(a5_-@", "\u0665", "\xb2", "é"]),
    ),
    max_size=14,
).map("".join)


@settings(max_examples=800)
@given(_CODES)
def test_status_and_five_hundred_codes_are_the_plain_expressions(text: str) -> None:
    def spans(pattern: re.Pattern[str]) -> list[tuple[tuple[int, int], tuple[str | Any, ...]]]:
        return [(m.span(), m.groups()) for m in pattern.finditer(text)]

    assert spans(ENHANCED) == spans(PLAIN_ENHANCED)
    assert spans(FIVE_XX) == spans(PLAIN_FIVE_XX)
    assert has_enhanced(text) is bool(all_enhanced(text))


_MARKER_PHRASES = [
    "----- Original message -----",
    "Below this line is a copy of the message.",
    "original message follows",
    "> RETURNED MAIL:",
    "Copy of the message was sent",
    "headers of the original message",
    "The header of the original message is following.",
    "--- Below this line is a copy of the message.",
    "Bounced e-mail:",
    "original mail as follows:",
    "message headers follow",
    "unsent message below",
    "undelivered message",
    "orıgınal meſſage follows",
    "ſtart of original message",
    "START OF RETURNED MAIL",
    "Begin original message:",
    "This is a copy of the message, including all the headers.",
    "Message headers follow:",
    "Headers are attached",
    "The original message was below",
    "hello",
    "   ",
    ">>",
]
_MARKER_TEXT = st.lists(
    st.one_of(
        st.sampled_from(_MARKER_PHRASES),
        st.sampled_from(["\n", "\n\n", " ", "-", "=", "\t"]),
        st.text(max_size=5),
    ),
    max_size=12,
).map("".join)


def _plain_marker(text: str) -> int | None:
    match = ORIGINAL_MARKER.search(text)
    return match.start() if match else None


@settings(max_examples=600)
@given(_MARKER_TEXT)
def test_the_marker_is_found_where_the_expression_finds_it(text: str) -> None:
    assert original_marker_at(text) == _plain_marker(text)


_MARKER_LINES = st.lists(
    st.tuples(
        st.sampled_from(["", " ", "> ", "-- ", "\t", "=== "]),
        st.one_of(st.sampled_from(_MARKER_PHRASES), _MARKER_TEXT),
        st.sampled_from(["", ":", " ", " ---", "x"]),
    ).map("".join),
    max_size=6,
).map("\n".join)


@settings(max_examples=600)
@given(_MARKER_LINES)
def test_marker_lines_are_found_where_the_expression_finds_them(text: str) -> None:
    assert original_marker_at(text) == _plain_marker(text)


_ADDRESS_TEXT = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "user@example.com",
                "a.b+c@mail.example.org",
                "@",
                "@@",
                "x" * 63,
                "y" * 64,
                "z" * 70,
                "y" * 64 + "@example.com",
                "x" * 63 + "@b.co",
                "z" * 65 + "@c.org",
                "d" * 254 + ".com",
                "[192.0.2.1]",
                "[IPv6:2001:db8::1]",
                "mailto:",
                "<",
                ">",
                " ",
                "\n",
                ".",
                "-",
                "é",
                "'",
            ]
        ),
        st.text(alphabet="ab.@-_ <>[]:1'", max_size=6),
    ),
    max_size=12,
).map("".join)


def _spans(matches: object) -> list[tuple[tuple[int, int], str, str]]:
    return [(m.span(), m.group(1), m.group(2)) for m in matches]  # type: ignore[attr-defined]


@settings(max_examples=800)
@given(_ADDRESS_TEXT)
def test_addresses_are_found_where_the_expression_finds_them(text: str) -> None:
    assert _spans(find_addresses(text)) == _spans(ADDRESS.finditer(text))
    # Padded, so that the share of "@" is low and the @-driven search runs.
    padded = f"{'word ' * len(text)}{text}{' tail' * len(text)}"
    assert _spans(find_addresses(padded)) == _spans(ADDRESS.finditer(padded))


KEY = b"verp-signing-key-0123456789abcdef"


@given(st.uuids())
def test_tokens_carry_the_hmac_sha256_of_the_id(rid: UUID) -> None:
    verp = Verp("bounces@mail.example.com", KEY)
    mac = hmac.new(KEY, rid.bytes, hashlib.sha256).digest()[:10]
    expected = base64.b32encode(rid.bytes + mac).decode("ascii").rstrip("=").lower()
    token = verp.token(rid)
    assert token == expected
    assert verp.verify(token) == rid
    assert verp.verify(token.upper()) == rid
    assert verp.verify(f"  {token} ") == rid


@given(st.uuids(), st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567=ıſK ", max_size=3))
def test_only_the_canonical_spelling_verifies(rid: UUID, extra: str) -> None:
    verp = Verp("bounces@mail.example.com", KEY)
    token = verp.token(rid)
    changed = token + extra
    if changed.strip().upper() != token.upper():
        assert verp.verify(changed) is None


def plain_verify(token: str) -> UUID | None:
    text = token.strip().upper()
    if not text or len(text) > 64:
        return None
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 26:
        return None
    payload, mac = raw[:16], raw[16:]
    if not hmac.compare_digest(mac, hmac.new(KEY, payload, hashlib.sha256).digest()[:10]):
        return None
    canonical = base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    return UUID(bytes=payload) if canonical == text.lower() else None


@settings(max_examples=500)
@given(
    st.uuids(),
    st.lists(
        st.tuples(st.integers(0, 60), st.sampled_from([*"abz27AZ=8 \u0131\u017fKß", "", "=="])),
        max_size=3,
    ),
    st.sampled_from(["", " ", "=", "======", "a", "\t"]),
)
def test_verify_accepts_what_decoding_accepts(
    rid: UUID, edits: list[tuple[int, str]], tail: str
) -> None:
    verp = Verp("bounces@mail.example.com", KEY)
    token = verp.token(rid)
    for where, text in edits:
        at = where % (len(token) + 1)
        token = token[:at] + text + token[at + 1 :]
    for candidate in (token, token + tail, token.upper()):
        assert verp.verify(candidate) == plain_verify(candidate)


@given(st.uuids(), st.integers(1, 3))
def test_a_token_with_unused_bits_set_does_not_verify(rid: UUID, low: int) -> None:
    verp = Verp("bounces@mail.example.com", KEY)
    token = verp.token(rid)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    # Same bytes when decoded: only the last character's two unused bits differ.
    variant = token[:-1] + alphabet[alphabet.index(token[-1]) | low]
    assert plain_verify(variant) is None
    assert verp.verify(variant) is None


@settings(max_examples=500)
@given(st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2028\u3000\u200bab.", max_size=20))
def test_collapse_is_the_whitespace_substitution(text: str) -> None:
    assert collapse(text) == re.sub(r"\s+", " ", text).strip()
