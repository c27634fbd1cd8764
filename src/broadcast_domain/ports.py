"""Ports: the small protocols through which the core talks to the outside world.

Adapters under ``broadcast_adapters`` implement them; the core never imports an
adapter. Hosts may write their own and check them with the contract tests in
``broadcast_domain.testing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

import attrs

from broadcast_domain.domain.values import Contact

__all__ = [
    "AddressBook",
    "BounceParser",
    "BounceSource",
    "Clock",
    "IncomingBounce",
    "MailTransport",
    "OutgoingMessage",
    "ParsedReport",
    "TransportReply",
]

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware."""


@attrs.frozen
class OutgoingMessage:
    """One message for one recipient, ready to hand over.

    ``key`` is opaque to the transport and comes back in its reply.
    ``data`` is the whole RFC 5322 message (headers and body) as bytes.
    """

    key: str
    envelope_from: str
    recipient: str
    message_id: str
    data: bytes


@attrs.frozen
class TransportReply:
    """The receiving server's answer for one message.

    ``code`` is the SMTP reply code for the recipient (or for DATA when the
    recipient was accepted); 0 means no reply at all (connection dropped,
    timeout, refused), which the dispatcher treats like a 4xx.
    """

    key: str
    code: int
    text: str

    @property
    def accepted(self) -> bool:
        """2xx: the server took the message."""
        return 200 <= self.code < 300

    @property
    def rejected(self) -> bool:
        """5xx: a permanent refusal."""
        return 500 <= self.code < 600

    @property
    def deferred(self) -> bool:
        """4xx or no reply: try again later."""
        return not (self.accepted or self.rejected)


@runtime_checkable
class MailTransport(Protocol):
    """Hands messages over and returns one reply per message, in the same order."""

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        """Hand over every message; never raise for a per-message failure."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@attrs.frozen
class IncomingBounce:
    """A raw report message from a bounce source, with the source's key for it."""

    key: str
    raw: bytes
    envelope_recipient: str | None = None


@runtime_checkable
class BounceSource(Protocol):
    """Yields raw failure reports; a message is marked done only after it is recorded."""

    def __iter__(self) -> Iterator[IncomingBounce]:
        """Messages not yet done."""
        ...

    def mark_done(self, key: str) -> None:
        """The message's events are committed: never yield it again."""
        ...

    def set_aside(self, key: str, reason: str) -> None:
        """The message could not be handled: move it aside, never delete it."""
        ...


@attrs.frozen
class ParsedReport:
    """One per-recipient report found in a raw bounce message by a BounceParser."""

    action: str  # failed | delayed | delivered | relayed | expanded | autoreply | complaint
    recipient: str | None
    status: str | None
    reply_code: str | None
    diagnostic: str
    permanent: bool
    remote_mta: str | None = None
    feedback_type: str | None = None


@attrs.frozen
class ParsedMessage:
    """What a BounceParser found in one raw message, including correlation hints."""

    reports: tuple[ParsedReport, ...]
    envelope_candidates: tuple[str, ...]
    original_message_ids: tuple[str, ...]
    message_id: str | None
    date: datetime | None


class BounceParser(Protocol):
    """Turns raw message bytes into per-recipient reports; never raises on bad input."""

    def __call__(self, raw: bytes) -> ParsedMessage:
        """Parse one message."""
        ...


class AddressBook(Protocol):
    """Gives the contacts of an address book."""

    def contacts(self, address_book_id: str) -> Iterable[Contact]:
        """Every contact of the book, in the book's order."""
        ...


class CsvCodec(Protocol):
    """Reads recipient CSV files and writes result CSV files."""

    def parse_recipients(self, data: bytes, *, max_rows: int, max_bytes: int) -> ImportedCsv:
        """Parse a recipient file; raise CsvImportError for a fatal problem."""
        ...

    def write_rows(
        self,
        rows: Iterable[Sequence[str]],
        out: BinaryIO,
        *,
        header: Sequence[str],
        encoding: str,
    ) -> int:
        """Stream rows (already formatted strings) to ``out``; return the data row count."""
        ...


@attrs.frozen
class CsvProblem:
    """A bad row of an imported file: its line number (header is line 1) and why."""

    line: int
    reason: str


@attrs.frozen
class ImportedCsv:
    """The good contacts of an imported file and every problem found.

    ``ignored_columns`` names the header cells that matched no known field
    (their data was not imported), in file order.
    """

    contacts: tuple[Contact, ...]
    problems: tuple[CsvProblem, ...]
    duplicates: int = 0
    ignored_columns: tuple[str, ...] = ()
