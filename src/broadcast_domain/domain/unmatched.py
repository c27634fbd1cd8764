"""The unmatched log: raw failure reports that named no delivery of ours, kept for a retry.

One aggregate per distinct raw message (its id derives from the message's
SHA-256, so keeping the same message twice records nothing): ``BounceUnmatched``
keeps an excerpt of it, ``UnmatchedResolved`` closes it once a retry matched
every report in it. Correlation may succeed later (a projection that lagged, a
Message-ID recorded by another process), so what is kept must be enough to read
the reports again, but anyone can send a message of any size to the return
path: the log keeps :func:`report_excerpt` (the header block and the first
:data:`PART_EXCERPT_BYTES` of each MIME part, at most about
:data:`EXCERPT_BYTES` in all) plus the SHA-256 and the size of the whole
message, never the whole message.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

import attrs

from broadcast_domain.domain.base import DomainEvent

__all__ = [
    "EXCERPT_BYTES",
    "HEAD_EXCERPT_BYTES",
    "PART_EXCERPT_BYTES",
    "BounceUnmatched",
    "UnmatchedMessage",
    "UnmatchedResolved",
    "canonical_raw",
    "message_digest",
    "raw_digest",
    "report_excerpt",
    "unmatched_id",
    "unmatched_id_of_digest",
]

_UNMATCHED_NS = uuid5(NAMESPACE_URL, "urn:broadcast-domain:unmatched-report")


def canonical_raw(raw: bytes) -> bytes:
    """The message with LF line ends and no trailing blank lines.

    The same bounce read from a Maildir (CRLF) and from an mbox (LF, one
    trailing newline less) must be recognised as one message.
    """
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b"\n")


def raw_digest(raw: bytes) -> str:
    """The hex SHA-256 of the canonical form of a raw message."""
    return message_digest(raw)


_DIGEST_CHUNK = 1 << 20


def message_digest(raw: bytes, *, chunk: int = _DIGEST_CHUNK) -> str:
    """``sha256(canonical_raw(raw))`` computed a chunk at a time.

    A message can be tens of megabytes; canonicalising it whole would make two
    more copies of it. A CR at the end of a chunk waits for the next one (it may
    be half of a CRLF) and trailing newlines wait until something follows them
    (the canonical form drops them at the very end).
    """
    if chunk < 2:
        raise ValueError("chunk must be at least 2 bytes")
    h = hashlib.sha256()
    view = memoryview(raw)
    newlines = 0
    carry_cr = False
    for start in range(0, len(raw), chunk):
        piece = bytes(view[start : start + chunk])
        if carry_cr:
            piece = b"\r" + piece
        carry_cr = piece.endswith(b"\r")
        if carry_cr:
            piece = piece[:-1]
        text = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        kept = text.rstrip(b"\n")
        if kept:
            h.update(b"\n" * newlines)
            h.update(kept)
            newlines = len(text) - len(kept)
        else:
            newlines += len(text)
    # A last lone CR is a trailing newline too, which the canonical form drops.
    return h.hexdigest()


EXCERPT_BYTES = 64 * 1024
"""About the most :func:`report_excerpt` keeps of a message (plus closing delimiters)."""

HEAD_EXCERPT_BYTES = 16 * 1024
"""What is kept of the header block and the preamble before the first MIME part."""

PART_EXCERPT_BYTES = 16 * 1024
"""What is kept of each MIME part of a multipart message (its own headers included)."""

_MAX_BOUNDARY = 200


def _line_end(text: bytes) -> bytes:
    # A cut piece ends with a newline, so the next delimiter starts a line.
    return text if text.endswith(b"\n") else text + b"\n"


def _boundary(head: bytes) -> bytes | None:
    """The boundary parameter of the top-level Content-Type header, if multipart."""
    unfolded = head.replace(b"\n ", b" ").replace(b"\n\t", b" ")
    for line in unfolded.split(b"\n"):
        name, colon, value = line.partition(b":")
        if not colon or name.strip().lower() != b"content-type":
            continue
        if not value.strip().lower().startswith(b"multipart/"):
            return None
        lowered = value.lower()
        at = lowered.find(b"boundary=")
        if at < 0:
            return None
        rest = value[at + len(b"boundary=") :].strip()
        if rest.startswith(b'"'):
            found = rest[1:].partition(b'"')[0]
        else:
            found = rest.split(b";", 1)[0].strip()
        return found if 0 < len(found) <= _MAX_BOUNDARY else None
    return None


def _delimiters(raw: bytes, marker: bytes, limit: int) -> list[int]:
    """Offsets of up to ``limit`` lines starting with ``marker``, scanning once."""
    found: list[int] = []
    at = raw.find(marker)
    while at >= 0 and len(found) < limit:
        if at == 0 or raw[at - 1 : at] in (b"\n", b"\r"):
            found.append(at)
        at = raw.find(marker, at + len(marker))
    return found


def report_excerpt(raw: bytes) -> bytes:
    """What the unmatched log keeps of a message: enough to read its reports again.

    A message of at most :data:`EXCERPT_BYTES` is kept whole (in its canonical
    form). Of a larger one: the header block and preamble up to
    :data:`HEAD_EXCERPT_BYTES`, then, when it is a MIME multipart (a DSN, an
    ARF report), the first :data:`PART_EXCERPT_BYTES` of each top-level part
    (the notice, the delivery-status part, the returned message's headers) up to
    :data:`EXCERPT_BYTES` in all and a closing delimiter; when it is not, its
    first :data:`EXCERPT_BYTES`. Each piece is cut at a line end. The work is
    one forward scan, linear in the size of the message, and the result never
    depends on where the message was cut for reading.
    """
    if len(raw) <= EXCERPT_BYTES:
        return canonical_raw(raw)
    start = canonical_raw(raw[: HEAD_EXCERPT_BYTES + 1])
    blank = start.find(b"\n\n")
    boundary = _boundary(start[:blank]) if blank >= 0 else None
    if boundary is None:
        return _cut(canonical_raw(raw[:EXCERPT_BYTES]))
    marker = b"--" + boundary
    # One more delimiter than parts kept, so the last kept part has an end.
    offsets = _delimiters(raw, marker, EXCERPT_BYTES // 64)
    if not offsets:
        return _cut(canonical_raw(raw[:EXCERPT_BYTES]))
    pieces = [_line_end(_cut(canonical_raw(raw[: min(offsets[0], HEAD_EXCERPT_BYTES)])))]
    total = len(pieces[0])
    for i, at in enumerate(offsets):
        if raw[at + len(marker) : at + len(marker) + 2] == b"--":
            break  # the closing delimiter: no part after it
        end = offsets[i + 1] if i + 1 < len(offsets) else len(raw)
        room = min(end - at, PART_EXCERPT_BYTES, EXCERPT_BYTES - total)
        if room <= len(marker):
            break
        piece = canonical_raw(raw[at : at + room])
        piece = _line_end(_cut(piece) if room < end - at else piece)
        pieces.append(piece)
        total += len(piece)
    pieces.append(marker + b"--\n")
    return b"".join(pieces)


def _cut(text: bytes) -> bytes:
    """``text`` up to its last line end (all of it when it has none)."""
    end = text.rfind(b"\n")
    return text[: end + 1] if end > 0 else text


def unmatched_id(raw: bytes) -> UUID:
    """The unmatched-log aggregate id of a raw message."""
    return unmatched_id_of_digest(raw_digest(raw))


def unmatched_id_of_digest(digest: str) -> UUID:
    """The unmatched-log aggregate id of a message whose ``raw_digest`` is known."""
    return uuid5(_UNMATCHED_NS, digest)


@attrs.frozen(kw_only=True)
class BounceUnmatched(DomainEvent):
    """A raw report message was kept because a failure report in it matched no delivery.

    ``raw`` is the message's :func:`report_excerpt`; ``digest`` and ``size``
    describe the whole message (empty and 0 in events recorded when the log
    kept whole messages, whose ``raw`` is the whole canonical message).
    """

    raw: bytes
    received_at: datetime
    reason: str
    envelope_recipient: str | None = None
    digest: str = ""
    size: int = 0

    def apply(self, state: UnmatchedMessage | None) -> UnmatchedMessage:
        """The kept message."""
        return UnmatchedMessage(
            id=self.originator_id,
            version=self.originator_version,
            raw=self.raw,
            received_at=self.received_at,
            reason=self.reason,
            envelope_recipient=self.envelope_recipient,
            kept_at=self.timestamp,
            digest=self.digest or hashlib.sha256(self.raw).hexdigest(),
            size=self.size or len(self.raw),
        )


@attrs.frozen(kw_only=True)
class UnmatchedResolved(DomainEvent):
    """A retry matched every report of a kept message; ``outcome`` says how it ended."""

    outcome: str

    def apply(self, state: UnmatchedMessage | None) -> UnmatchedMessage | None:
        """A resolved message leaves the log."""
        return None


@attrs.frozen
class UnmatchedMessage:
    """One kept, unresolved raw report message (a row of the unmatched list).

    ``raw`` is what was kept (the whole message when it was small, else its
    :func:`report_excerpt`); ``digest`` is the SHA-256 of the whole canonical
    message and ``size`` its size in bytes as received.
    """

    id: UUID
    version: int
    raw: bytes
    received_at: datetime
    reason: str
    envelope_recipient: str | None
    kept_at: datetime
    digest: str = ""
    size: int = 0

    @property
    def truncated(self) -> bool:
        """Whether ``raw`` is an excerpt rather than the whole message."""
        return hashlib.sha256(self.raw).hexdigest() != self.digest
