"""The event-store gateway: load aggregates, record events, retry on a version conflict.

Every write of the application layer goes through :class:`Gateway`: a use case
loads the aggregates it decides on from the event store (never from a view),
asks the domain for events and records them with :meth:`Gateway.decide_and_put`,
which decides again on fresh state when another writer took a version first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from broadcast_domain.application.eventlog import EventLog, VersionConflict
from broadcast_domain.application.validation import require_broadcast_id, require_text
from broadcast_domain.domain.account import Account, account_aggregate_id
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import (
    AccountConfigured,
    BroadcastEvent,
    DomainEvent,
    RecipientEvent,
)
from broadcast_domain.domain.recipient import Recipient, recipient_id
from broadcast_domain.errors import ConcurrencyConflict, UnknownBroadcast, UnknownRecipient

__all__ = ["MAX_RETRIES", "Gateway"]

T = TypeVar("T")

MAX_RETRIES = 20
"""How many version conflicts in a row a decision survives before ConcurrencyConflict."""


class Gateway:
    """Aggregates in and events out, over one :class:`EventLog`."""

    def __init__(self, log: EventLog, *, max_retries: int = MAX_RETRIES) -> None:
        self.log = log
        self.max_retries = max_retries

    # --- loading -------------------------------------------------------------------------

    def broadcast(self, broadcast_id: object) -> Broadcast:
        """The broadcast's current state; UnknownBroadcast when it was never scheduled."""
        bid = require_broadcast_id(broadcast_id)
        state = Broadcast.fold(e for e in self.log.get(bid) if isinstance(e, BroadcastEvent))
        if state is None:
            raise UnknownBroadcast(f"no broadcast has id {bid}")
        return state

    def recipient(self, rid: UUID) -> Recipient | None:
        """The recipient's current state (None when it has no events)."""
        return Recipient.fold(e for e in self.log.get(rid) if isinstance(e, RecipientEvent))

    def recipients(self, rids: Iterable[UUID]) -> dict[UUID, Recipient]:
        """Several recipients' current states, read together (absent: no events)."""
        states: dict[UUID, Recipient] = {}
        for rid, events in self.log.get_many(rids).items():
            state = Recipient.fold(e for e in events if isinstance(e, RecipientEvent))
            if state is not None:
                states[rid] = state
        return states

    def account(self, account_id: str) -> Account | None:
        """The account's configuration (None when never configured)."""
        state: Account | None = None
        for e in self.log.get(account_aggregate_id(account_id)):
            if isinstance(e, AccountConfigured):
                state = e.apply(state)
        return state

    def recipient_events(self, broadcast_id: object, address: str) -> list[DomainEvent]:
        """One recipient's events, oldest first; UnknownRecipient (or UnknownBroadcast)."""
        bid = require_broadcast_id(broadcast_id)
        require_text(address, "address")
        events = self.log.get(recipient_id(bid, address))
        if not events:
            self.broadcast(bid)
            raise UnknownRecipient(f"broadcast {bid} has no recipient {address!r}")
        return events

    def position_at(self, moment: datetime) -> int:
        """The log position of the last event recorded at or before ``moment`` (0: none).

        A binary search over the log (events are recorded in time order, each
        stamped by the clock that recorded it): about log2(positions) reads of one
        event each.
        """
        low, high = 0, self.log.max_position()
        while low < high:
            middle = (low + high + 1) // 2
            found = self.log.read(middle - 1, 1)
            if found and found[0][1].timestamp <= moment:
                low = found[0][0]
            else:
                high = middle - 1
        return low

    # --- recording -----------------------------------------------------------------------

    def put(self, events: Sequence[DomainEvent]) -> Sequence[int] | None:
        """Record events in one transaction; VersionConflict when a version is taken.

        Returns their positions when the store tells them (SQLite), else None.
        """
        return self.log.put(events)

    def put_rows(self, rows: Sequence[tuple[str, int, str, bytes]]) -> Sequence[int] | None:
        """Record rows already encoded by the codec in one transaction (see EventLog.put_rows).

        Returns their positions when the store tells them (SQLite), else None.
        """
        return self.log.put_rows(rows)

    def decide_and_put(self, decide: Callable[[], tuple[T, Sequence[DomainEvent]]]) -> T:
        """Run ``decide`` (result, events) and record the events, deciding again on a conflict.

        Optimistic concurrency: ``decide`` loads fresh state each time, so after
        another writer took a version first the decision is made on its outcome.
        """
        for _ in range(self.max_retries):
            result, events = decide()
            try:
                self.log.put(events)
            except VersionConflict:
                continue
            return result
        raise ConcurrencyConflict(
            f"gave up after {self.max_retries} version conflicts; another process keeps "
            "writing the same aggregate: try again"
        )
