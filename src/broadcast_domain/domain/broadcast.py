"""The Broadcast aggregate: one e-mail to many recipients, and its life cycle.

SCHEDULED -> SENDING -> SENT; CANCELLED before sending starts; PAUSED (with a
reason) while the monthly allowance is used up, then back to SCHEDULED or
SENDING when resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from broadcast_domain.domain.base import DomainEvent, existing
from broadcast_domain.domain.values import (
    AddressBookSource,
    BroadcastStatus,
    CsvSource,
    Source,
)
from broadcast_domain.errors import InvalidTransition

__all__ = [
    "Broadcast",
    "BroadcastCancelled",
    "BroadcastCompleted",
    "BroadcastEvent",
    "BroadcastPaused",
    "BroadcastResumed",
    "BroadcastScheduled",
    "ResultsExported",
    "SendingStarted",
    "mutate",
]


# --- events ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BroadcastEvent(DomainEvent):
    """An event of a broadcast."""

    def apply(self, state: Broadcast | None) -> Broadcast:
        """The broadcast's state after this event (see :func:`mutate`)."""
        return _MUTATORS[type(self)](self, state)


@attrs.frozen(kw_only=True)
class BroadcastScheduled(BroadcastEvent):
    """A broadcast was created and scheduled (its recipients were recorded before it)."""

    account_id: str
    inbox_id: str
    sender: str
    subject: str
    text_body: str
    html_body: str | None
    source_kind: str
    source_ref: str
    scheduled_at: datetime
    created_by: str
    recipient_count: int


@attrs.frozen(kw_only=True)
class SendingStarted(BroadcastEvent):
    """The first message of the broadcast is being handed over."""


@attrs.frozen(kw_only=True)
class BroadcastCompleted(BroadcastEvent):
    """No recipient is still scheduled or sending: the broadcast is SENT."""


@attrs.frozen(kw_only=True)
class BroadcastCancelled(BroadcastEvent):
    """The broadcast was cancelled before sending started."""

    cancelled_by: str


@attrs.frozen(kw_only=True)
class BroadcastPaused(BroadcastEvent):
    """Sending stopped because the monthly allowance is used up."""

    reason: str


@attrs.frozen(kw_only=True)
class BroadcastResumed(BroadcastEvent):
    """Sending may go on: the limit was raised or the month turned."""


@attrs.frozen(kw_only=True)
class ResultsExported(BroadcastEvent):
    """Somebody downloaded the results (or the error list) of the broadcast."""

    exported_by: str
    kind: str
    as_of: int
    rows: int


@attrs.frozen
class Broadcast:
    """The state of one broadcast."""

    id: UUID
    version: int
    account_id: str
    inbox_id: str
    sender: str
    subject: str
    text_body: str
    html_body: str | None
    source_kind: str
    source_ref: str
    scheduled_at: datetime
    created_at: datetime
    created_by: str
    recipient_count: int
    status: BroadcastStatus = BroadcastStatus.SCHEDULED
    started_at: datetime | None = None
    completed_at: datetime | None = None
    paused_reason: str | None = None
    exports: int = 0

    @property
    def source(self) -> Source:
        """Where the recipients came from."""
        if self.source_kind == "csv":
            return CsvSource(self.source_ref)
        return AddressBookSource(self.source_ref)

    @classmethod
    def started(cls, e: BroadcastScheduled) -> Broadcast:
        """The state created by BroadcastScheduled."""
        return cls(
            id=e.originator_id,
            version=e.originator_version,
            account_id=e.account_id,
            inbox_id=e.inbox_id,
            sender=e.sender,
            subject=e.subject,
            text_body=e.text_body,
            html_body=e.html_body,
            source_kind=e.source_kind,
            source_ref=e.source_ref,
            scheduled_at=e.scheduled_at,
            created_at=e.timestamp,
            created_by=e.created_by,
            recipient_count=e.recipient_count,
        )

    @classmethod
    def fold(cls, events: Iterable[BroadcastEvent]) -> Broadcast | None:
        """Replay events from the start."""
        state: Broadcast | None = None
        for event in events:
            state = event.apply(state)
        return state

    def on_sending_started(self, e: SendingStarted) -> Broadcast:
        return attrs.evolve(
            self,
            version=e.originator_version,
            status=BroadcastStatus.SENDING,
            started_at=e.timestamp,
        )

    def on_completed(self, e: BroadcastCompleted) -> Broadcast:
        return attrs.evolve(
            self,
            version=e.originator_version,
            status=BroadcastStatus.SENT,
            completed_at=e.timestamp,
        )

    def on_cancelled(self, e: BroadcastCancelled) -> Broadcast:
        return attrs.evolve(self, version=e.originator_version, status=BroadcastStatus.CANCELLED)

    def on_paused(self, e: BroadcastPaused) -> Broadcast:
        return attrs.evolve(
            self,
            version=e.originator_version,
            status=BroadcastStatus.PAUSED,
            paused_reason=e.reason,
        )

    def on_resumed(self, e: BroadcastResumed) -> Broadcast:
        status = BroadcastStatus.SENDING if self.started_at else BroadcastStatus.SCHEDULED
        return attrs.evolve(self, version=e.originator_version, status=status, paused_reason=None)

    def on_exported(self, e: ResultsExported) -> Broadcast:
        return attrs.evolve(self, version=e.originator_version, exports=self.exports + 1)

    # --- commands ------------------------------------------------------------------------

    def _next(self) -> tuple[UUID, int]:
        return self.id, self.version + 1

    def cancel(self, *, by: str, now: datetime) -> list[BroadcastEvent]:
        """Cancel before sending starts; cancelling a cancelled broadcast records nothing."""
        if self.status is BroadcastStatus.CANCELLED:
            return []
        if self.status is not BroadcastStatus.SCHEDULED or self.started_at is not None:
            raise InvalidTransition(
                f"broadcast {self.id} is {self.status.value}: only a broadcast whose "
                "sending has not started can be cancelled"
            )
        oid, v = self._next()
        return [
            BroadcastCancelled(
                originator_id=oid, originator_version=v, timestamp=now, cancelled_by=by
            )
        ]

    def start_sending(self, *, now: datetime) -> list[BroadcastEvent]:
        """SCHEDULED -> SENDING (nothing when already sending)."""
        if self.status is BroadcastStatus.SENDING:
            return []
        if self.status is not BroadcastStatus.SCHEDULED:
            raise InvalidTransition(
                f"broadcast {self.id} is {self.status.value}; cannot start sending"
            )
        oid, v = self._next()
        return [SendingStarted(originator_id=oid, originator_version=v, timestamp=now)]

    def complete(self, *, now: datetime) -> list[BroadcastEvent]:
        """SENDING -> SENT, once no recipient is scheduled or sending."""
        if self.status is BroadcastStatus.SENT:
            return []
        if self.status not in (BroadcastStatus.SENDING, BroadcastStatus.SCHEDULED):
            raise InvalidTransition(f"broadcast {self.id} is {self.status.value}; cannot complete")
        oid, v = self._next()
        return [BroadcastCompleted(originator_id=oid, originator_version=v, timestamp=now)]

    def pause(self, *, reason: str, now: datetime) -> list[BroadcastEvent]:
        """Pause for the monthly allowance (nothing when already paused for that reason)."""
        if self.status is BroadcastStatus.PAUSED and self.paused_reason == reason:
            return []
        if self.status not in (
            BroadcastStatus.SCHEDULED,
            BroadcastStatus.SENDING,
            BroadcastStatus.PAUSED,
        ):
            raise InvalidTransition(f"broadcast {self.id} is {self.status.value}; cannot pause")
        oid, v = self._next()
        return [
            BroadcastPaused(originator_id=oid, originator_version=v, timestamp=now, reason=reason)
        ]

    def resume(self, *, now: datetime) -> list[BroadcastEvent]:
        """PAUSED -> SCHEDULED or SENDING."""
        if self.status is not BroadcastStatus.PAUSED:
            return []
        oid, v = self._next()
        return [BroadcastResumed(originator_id=oid, originator_version=v, timestamp=now)]

    def record_export(
        self, *, by: str, kind: str, as_of: int, rows: int, now: datetime
    ) -> list[BroadcastEvent]:
        """Record who downloaded what, as of which position."""
        oid, v = self._next()
        return [
            ResultsExported(
                originator_id=oid,
                originator_version=v,
                timestamp=now,
                exported_by=by,
                kind=kind,
                as_of=as_of,
                rows=rows,
            )
        ]


# --- the one mutator ---------------------------------------------------------------------

_MUTATORS: dict[type[BroadcastEvent], Callable[[Any, Broadcast | None], Broadcast]] = {
    BroadcastScheduled: lambda e, _: Broadcast.started(e),
    SendingStarted: lambda e, s: existing(s).on_sending_started(e),
    BroadcastCompleted: lambda e, s: existing(s).on_completed(e),
    BroadcastCancelled: lambda e, s: existing(s).on_cancelled(e),
    BroadcastPaused: lambda e, s: existing(s).on_paused(e),
    BroadcastResumed: lambda e, s: existing(s).on_resumed(e),
    ResultsExported: lambda e, s: existing(s).on_exported(e),
}


def mutate(event: BroadcastEvent, state: Broadcast | None) -> Broadcast:
    """The broadcast aggregate's one mutator: its state after ``event``.

    ``BroadcastScheduled`` starts a broadcast; every other event evolves an existing one.
    """
    return _MUTATORS[type(event)](event, state)
