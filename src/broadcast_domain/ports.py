"""Ports: the small protocols through which the core talks to the outside world.

Adapters under ``broadcast_adapters`` implement them; the core never imports an
adapter. Hosts may write their own and check them with the contract tests in
``broadcast_domain.testing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable
from uuid import UUID

import attrs

from broadcast_domain.domain.account import Account
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.domain.unmatched import UnmatchedMessage
from broadcast_domain.domain.values import BroadcastStatus, Contact, DeliveryStatus
from broadcast_domain.projections.replay import SentMessage
from broadcast_domain.projections.rows import RecipientRow, ResultCells
from broadcast_domain.projections.views import BulkAcknowledgement, Counts, Views

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
    "ViewReplacement",
    "ViewStore",
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
    # Why it failed, a name of REASONS ("undefined" when nothing decides).
    reason: str = "undefined"
    # What a person reads about the failure; never empty for a failed report.
    detail: str = ""
    # The Original-Recipient the report gives beside ``recipient`` (list expansion).
    original_recipient: str | None = None


@attrs.frozen
class ParsedMessage:
    """What a BounceParser found in one raw message, including correlation hints."""

    reports: tuple[ParsedReport, ...]
    envelope_candidates: tuple[str, ...]
    original_message_ids: tuple[str, ...]
    message_id: str | None
    date: datetime | None
    # Set when the parser would not read the message (e.g. over its size limit):
    # the reason, for an ``ignored`` outcome that records nothing.
    refused: str | None = None


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


class ViewReplacement(Protocol):
    """What :meth:`ViewStore.replacing` yields: a new set of views being written."""

    def add(self, rows: Sequence[RecipientRow], sent: Sequence[SentMessage]) -> None:
        """Write recipient rows (none written before) and Message-IDs with the positions
        of their Sent events (of several Sent events with one id, the latest wins)."""
        ...

    def commit(self, views: Views) -> None:
        """Put the replacement in place of the live views, with ``views``' broadcasts,
        counts, accounts, monthly totals and unmatched messages and its position."""
        ...


class ViewStore(Protocol):
    """Where the projections live: applied in batches with a tracking position, and queried.

    ``apply`` must write the batch's view changes and the new tracking position in
    one transaction, and do nothing (returning False) when the stored position is
    not ``expected_position`` (another process got there first): so every event is
    applied exactly once.
    """

    def position(self) -> int:
        """The position of the last event applied (0 when none)."""
        ...

    def apply(self, batch: Sequence[tuple[int, DomainEvent]], *, expected_position: int) -> bool:
        """Apply (position, event) pairs, in order, atomically with the tracking position."""
        ...

    def apply_acknowledgements(self, bulk: BulkAcknowledgement, *, expected_position: int) -> bool:
        """Apply a bulk acknowledgement's events (``bulk.events()``) as ``apply`` would.

        Only when every row is what the acknowledgement read (an unacknowledged
        error of the broadcast, at the version before its event: see
        :class:`~broadcast_domain.projections.views.BulkAcknowledgement`), which
        lets a store write the rows' columns and the counts without folding each
        event; False, and nothing applied, otherwise or when the stored position
        is not ``expected_position``.
        """
        ...

    def reset(self) -> None:
        """Drop every view and the tracking position: the store then takes the log anew."""
        ...

    def replacing(self) -> AbstractContextManager[ViewReplacement]:
        """A whole new set of views, written beside the live ones, for a rebuild.

        The :class:`ViewReplacement` it yields takes the recipient rows (each
        once) and the Message-IDs in as many calls as the caller likes, then the
        other views and their position in :meth:`ViewReplacement.commit`, which
        puts everything in place of the live views in one transaction. Until then
        the live views answer as before (readers and other appliers go on); if the
        block ends without a commit, nothing of the replacement is kept.
        """
        ...

    def dump(self) -> Views:
        """Every view's whole content, for comparison with a fold."""
        ...

    def account(self, account_id: str) -> Account | None:
        """An account's configuration."""
        ...

    def broadcast(self, broadcast_id: UUID) -> Broadcast | None:
        """A broadcast's state."""
        ...

    def counts(self, broadcast_id: UUID) -> Counts:
        """A broadcast's counts (zeros when unknown)."""
        ...

    def recipient(self, recipient_id: UUID) -> RecipientRow | None:
        """A recipient's row (what the list shows; the aggregate is in the event log)."""
        ...

    def recipient_by_message_id(self, message_id: str) -> UUID | None:
        """The recipient a Message-ID was sent to."""
        ...

    def list_broadcasts(
        self, inbox_id: str, statuses: frozenset[BroadcastStatus] | None, offset: int, limit: int
    ) -> tuple[list[Broadcast], int]:
        """An inbox's broadcasts, newest created first, and their total."""
        ...

    def due_broadcasts(self, now: datetime) -> list[Broadcast]:
        """Broadcasts scheduled, sending or paused whose time has come, oldest first."""
        ...

    def due_recipients(
        self, broadcast_id: UUID, now: datetime, limit: int, *, after: int = -1
    ) -> list[RecipientRow]:
        """Rows of recipients a dispatcher may claim now, in position order, from the
        first position greater than ``after``.

        The rows say who; the dispatcher decides from the aggregates in the event log.
        """
        ...

    def recipient_page(
        self,
        broadcast_id: UUID,
        *,
        keyword: str | None,
        status: DeliveryStatus | None,
        offset: int,
        limit: int,
        reason: str | None = None,
    ) -> tuple[list[RecipientRow], int]:
        """A page of recipients (keyword already normalised by ``keyword_key``) and the total.

        ``reason`` keeps only errors of that reason (``recipient_reason`` of the row).
        """
        ...

    def iter_recipients(self, broadcast_id: UUID) -> Iterator[RecipientRow]:
        """Every recipient row in position order, streamed (columns, no decoding of state)."""
        ...

    def iter_result_cells(
        self, broadcast_id: UUID, *, unacknowledged_as_of: int | None = None
    ) -> Iterator[ResultCells]:
        """The result CSV values of every recipient in position order, streamed.

        With ``unacknowledged_as_of``, only the unacknowledged errors recorded at
        or before that position (what ``iter_unacknowledged`` streams).
        """
        ...

    def error_page(
        self, broadcast_id: UUID, *, as_of: int, offset: int, limit: int
    ) -> tuple[list[RecipientRow], int]:
        """Unacknowledged errors recorded at or before ``as_of``, in position order, and total."""
        ...

    def iter_unacknowledged(self, broadcast_id: UUID, as_of: int) -> Iterator[RecipientRow]:
        """Every unacknowledged error recorded at or before ``as_of``, streamed."""
        ...

    def iter_unacknowledged_versions(
        self, broadcast_id: UUID, as_of: int
    ) -> Iterator[tuple[UUID, int]]:
        """(recipient id, aggregate version) of what ``iter_unacknowledged`` streams."""
        ...

    def monthly_count(self, account_id: str, year: int, month: int) -> int:
        """Recipients whose first outcome fell in that month (account's time zone)."""
        ...

    def unmatched_page(self, offset: int, limit: int) -> tuple[list[UnmatchedMessage], int]:
        """Kept, unresolved report messages, oldest received first, and their total."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class SeenTokens(Protocol):
    """One-time webhook tokens (Mailgun's), each bound to the request it came with.

    A provider's retry of a request that was never recorded must still be
    accepted, while the same token carrying other content is a replay. So a
    token is remembered with a digest of what it authenticated, until it
    expires: ``claim`` answers True for a new (or expired) token and for the
    same token with the same digest, False for the same token with another
    digest. Share one store between every worker that receives the webhook.
    """

    def claim(self, token: str, digest: str, *, expires_at: datetime, now: datetime) -> bool:
        """Remember ``token`` with ``digest`` until ``expires_at``; False if it is live with
        another digest. Must be atomic (check and record in one step)."""
        ...


__all__ += ["SeenTokens"]
