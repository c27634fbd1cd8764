"""Phrase lookups give the answers of the plain loops of substring searches they replace.

``PhraseTable.first`` is the lowest index of a phrase the text contains,
checked on drawn phrase tables and texts (words, white space of every kind,
non-ASCII, phrases planted in the text); ``names_a_cause`` and
``smtp_command`` (the mark whose last occurrence starts furthest, the first
in the table on a tie) on drawn text and on every message of the bounce corpus.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import given, settings

from broadcast_domain.domain.phrases import PhraseTable
from broadcast_domain.domain.reasons import (
    SMTP_COMMANDS,
    TEXT_REASONS,
    names_a_cause,
    smtp_command,
)

_ALPHABET = "abcde 12\t\n\x1c\xa0.:->é日"
_PIECES = st.text(alphabet=_ALPHABET, max_size=9)

REASON_PHRASES = [phrase for _, phrases in TEXT_REASONS for phrase in phrases]
COMMAND_MARKS = [(command, mark) for command, marks in SMTP_COMMANDS for mark in marks]


def plain_first(phrases: Sequence[str], text: str) -> int | None:
    for index, phrase in enumerate(phrases):
        if phrase in text:
            return index
    return None


def plain_command(text: str) -> str | None:
    lowered = text.lower()
    best, found = -1, None
    for command, mark in COMMAND_MARKS:
        at = lowered.rfind(mark)
        if at > best:
            best, found = at, command
    return found


@st.composite
def tables_and_texts(draw: st.DrawFn) -> tuple[list[str], str]:
    phrases = draw(st.lists(_PIECES, max_size=12))
    parts = draw(
        st.lists(
            st.one_of(_PIECES, st.sampled_from(phrases) if phrases else _PIECES),
            max_size=10,
        )
    )
    return phrases, draw(st.sampled_from(["", " ", "\n", "x"])).join(parts)


@settings(max_examples=400)
@given(tables_and_texts())
def test_first_is_the_plain_loop(table_text: tuple[list[str], str]) -> None:
    phrases, text = table_text
    table = PhraseTable(phrases)
    assert table.first(text) == plain_first(phrases, text)
    candidates = table.candidates(text)
    assert candidates == sorted(set(candidates))
    assert {i for i, p in enumerate(phrases) if p in text} <= set(candidates)


REASON_TABLE = PhraseTable(REASON_PHRASES)
_WORDS = st.sampled_from(
    [w for phrase in REASON_PHRASES + [m for _, m in COMMAND_MARKS] for w in phrase.split()]
    + ["550", "5.1.1", "user", "<a@b.example>", "x", ":", "\n", "  "]
)
_REPORT_TEXT = st.lists(
    st.one_of(
        _WORDS,
        st.sampled_from(REASON_PHRASES),
        st.sampled_from([m for _, m in COMMAND_MARKS]),
        st.text(alphabet=_ALPHABET, max_size=5),
    ),
    max_size=14,
).map(" ".join)


@settings(max_examples=400)
@given(_REPORT_TEXT, st.sampled_from(["", " ", "x", "\t"]))
def test_the_reason_and_command_tables_are_the_plain_loops(text: str, glue: str) -> None:
    for candidate in (text, text.replace(" ", glue), text.upper()):
        lowered = candidate.lower()
        expected = plain_first(REASON_PHRASES, lowered)
        assert REASON_TABLE.first(lowered) == expected
        assert names_a_cause(candidate) is (expected is not None)
        assert smtp_command(candidate) == plain_command(candidate)


def _corpus() -> Path | None:
    configured = os.environ.get("BROADCAST_CORPUS")
    root = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
    folder = Path(configured) if configured else root.parent / "shared" / "corpus"
    return folder if (folder / "set-of-emails").is_dir() else None


def test_the_tables_are_the_plain_loops_on_the_corpus() -> None:
    folder = _corpus()
    if folder is None:
        # Without the corpus, the drawn texts above still pin the tables.
        return
    files = sorted(p for p in (folder / "set-of-emails").rglob("*") if p.is_file())
    assert files
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        # Whole messages, and the short stretches the parser classifies.
        for piece in [text, *(text[at : at + 300] for at in range(0, min(len(text), 6000), 150))]:
            lowered = piece.lower()
            assert REASON_TABLE.first(lowered) == plain_first(REASON_PHRASES, lowered), path
            assert smtp_command(piece) == plain_command(piece), path
