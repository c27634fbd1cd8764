"""The unmatched log: raw failure reports that named no delivery of ours, kept for a retry.

One aggregate per distinct raw message (its id derives from the message's
SHA-256, so keeping the same message twice records nothing): ``BounceUnmatched``
keeps the bytes, ``UnmatchedResolved`` closes it once a retry matched every
report in it. The raw bytes are kept whole because correlation may succeed
later (a projection that lagged, a Message-ID recorded by another process) and
a host may want to read the message itself.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

import attrs

from broadcast_domain.domain.base import DomainEvent

__all__ = [
    "BounceUnmatched",
    "UnmatchedMessage",
    "UnmatchedResolved",
    "canonical_raw",
    "raw_digest",
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
    return hashlib.sha256(canonical_raw(raw)).hexdigest()


def unmatched_id(raw: bytes) -> UUID:
    """The unmatched-log aggregate id of a raw message."""
    return unmatched_id_of_digest(raw_digest(raw))


def unmatched_id_of_digest(digest: str) -> UUID:
    """The unmatched-log aggregate id of a message whose ``raw_digest`` is known."""
    return uuid5(_UNMATCHED_NS, digest)


@attrs.frozen(kw_only=True)
class BounceUnmatched(DomainEvent):
    """A raw report message was kept because a failure report in it matched no delivery."""

    raw: bytes
    received_at: datetime
    reason: str
    envelope_recipient: str | None = None

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
    """One kept, unresolved raw report message (a row of the unmatched list)."""

    id: UUID
    version: int
    raw: bytes
    received_at: datetime
    reason: str
    envelope_recipient: str | None
    kept_at: datetime
