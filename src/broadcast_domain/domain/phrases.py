"""Many phrases looked up in one text, without one substring search per phrase.

A table of a few hundred phrases answered "which is the first phrase of the
table that the text contains?" with one substring search per phrase: a few
hundred searches for every text, most of them for phrases it does not hold.
:class:`PhraseTable` searches only for the phrases whose key the text holds.
The key comes from the phrase's words (``str.split``) and where white space
bounds them inside the phrase:

- a word with white space of the phrase on both sides is a whole word of any
  text that holds the phrase (``"822"`` of ``"rfc 822 "``): the key is that
  word, looked up among the text's words;
- else the last word, after white space of the phrase, starts a word of the
  text (``"detected"`` of ``"worm detected"``): the key is its first four
  characters, looked up among the first four characters of the text's words;
- else the first word, before white space, ends a word of the text: its last
  four characters among theirs;
- else (one word, or words too short) the phrase is always searched for.

A text's words, their heads and tails are read in a few C-level passes, so
the lookup is linear in the text, and every phrase is searched for at most
once. The answers are exactly those of the plain loops they replace (a
hypothesis property compares them on generated and real report text):
:meth:`PhraseTable.first` is the lowest index ``i`` with ``phrases[i] in text``.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

__all__ = ["PhraseTable"]

_PIECE = 4
_HEAD = itemgetter(slice(None, _PIECE))
_TAIL = itemgetter(slice(-_PIECE, None))


def _key(phrase: str) -> tuple[str, str] | None:
    """(kind, key) for a phrase: ``word``, ``head`` or ``tail``; None: always searched."""
    words = phrase.split()
    if not words:
        return None
    lead = phrase[:1].isspace()
    trail = phrase[-1:].isspace()
    last = len(words) - 1
    closed = [word for at, word in enumerate(words) if (at > 0 or lead) and (at < last or trail)]
    if closed:
        return "word", max(closed, key=len)
    if (last > 0 or lead) and len(words[-1]) >= _PIECE:
        # The last word follows white space and is not followed by any: it
        # starts a word of the text.
        return "head", words[-1][:_PIECE]
    if (last > 0 or trail) and len(words[0]) >= _PIECE:
        # The first word is followed by white space, not preceded by any.
        return "tail", words[0][-_PIECE:]
    return None


class PhraseTable:
    """A fixed sequence of phrases, looked up in a text together."""

    __slots__ = ("_always", "_heads", "_tails", "_words", "phrases")

    def __init__(self, phrases: Sequence[str]) -> None:
        self.phrases = tuple(phrases)
        tables: dict[str, dict[str, list[int]]] = {"word": {}, "head": {}, "tail": {}}
        always: list[int] = []
        for index, phrase in enumerate(self.phrases):
            found = _key(phrase)
            if found is None:
                always.append(index)
            else:
                kind, key = found
                tables[kind].setdefault(key, []).append(index)
        self._always = tuple(always)
        self._words = {key: tuple(indexes) for key, indexes in tables["word"].items()}
        self._heads = {key: tuple(indexes) for key, indexes in tables["head"].items()}
        self._tails = {key: tuple(indexes) for key, indexes in tables["tail"].items()}

    def _keyed(self, text: str) -> list[int]:
        """The indexes of the keyed phrases whose key ``text`` holds, in order."""
        found: list[int] = []
        words = set(text.split())
        table = self._words
        for key in table.keys() & words:
            found += table[key]
        table = self._heads
        for key in table.keys() & set(map(_HEAD, words)):
            found += table[key]
        table = self._tails
        for key in table.keys() & set(map(_TAIL, words)):
            found += table[key]
        found.sort()
        return found

    def candidates(self, text: str) -> list[int]:
        """The indexes of the phrases that may occur in ``text``, in order.

        Every phrase that occurs in ``text`` is among them.
        """
        return sorted(self._keyed(text) + list(self._always))

    def first(self, text: str) -> int | None:
        """The lowest index of a phrase that occurs in ``text``, or None."""
        phrases = self.phrases
        best = None
        for index in self._keyed(text):
            if phrases[index] in text:
                best = index
                break
        for index in self._always:
            if best is not None and index > best:
                break
            if phrases[index] in text:
                return index
        return best
