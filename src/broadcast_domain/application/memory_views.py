"""An in-memory view store: the fold's working set kept in dicts, for ``memory://``."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from uuid import UUID

import attrs

from broadcast_domain.domain.account import Account
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.domain.recipient import Recipient
from broadcast_domain.domain.unmatched import UnmatchedMessage
from broadcast_domain.domain.values import BroadcastStatus, DeliveryStatus
from broadcast_domain.projections.views import (
    Counts,
    Views,
    project,
    recipient_reason,
    recipient_search_text,
    unmatched_order,
)

__all__ = ["InMemoryViewStore"]

_DUE_BROADCAST = (BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING, BroadcastStatus.PAUSED)


class InMemoryViewStore:
    """Views in process memory; thread-safe; lost when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._views = Views()
        self._by_broadcast: dict[UUID, list[UUID]] = {}
        self._search: dict[UUID, str] = {}

    def position(self) -> int:
        return self._views.position

    def apply(self, batch: Sequence[tuple[int, DomainEvent]], *, expected_position: int) -> bool:
        with self._lock:
            views = self._views
            if views.position != expected_position:
                return False
            for position, event in batch:
                project(views, event, position)
            touched: set[UUID] = set()
            for rid in views.dirty_recipients:
                r = views.recipients[rid]
                if rid not in self._search:
                    self._by_broadcast.setdefault(r.broadcast_id, []).append(rid)
                    touched.add(r.broadcast_id)
                self._search[rid] = recipient_search_text(r)
            for bid in touched:
                # Stable order: the order recipients were added (their position).
                self._by_broadcast[bid].sort(key=lambda rid: views.recipients[rid].position)
            views.clear_dirty()
            return True

    def reset(self) -> None:
        with self._lock:
            self._views = Views()
            self._by_broadcast = {}
            self._search = {}

    def dump(self) -> Views:
        with self._lock:
            v = self._views
            return Views(
                recipients=dict(v.recipients),
                error_positions=dict(v.error_positions),
                broadcasts=dict(v.broadcasts),
                counts={k: attrs.evolve(c) for k, c in v.counts.items()},
                accounts=dict(v.accounts),
                monthly=dict(v.monthly),
                message_ids=dict(v.message_ids),
                unmatched=dict(v.unmatched),
                position=v.position,
            )

    def account(self, account_id: str) -> Account | None:
        return self._views.accounts.get(account_id)

    def broadcast(self, broadcast_id: UUID) -> Broadcast | None:
        return self._views.broadcasts.get(broadcast_id)

    def counts(self, broadcast_id: UUID) -> Counts:
        with self._lock:
            c = self._views.counts.get(broadcast_id)
            return attrs.evolve(c) if c else Counts()

    def recipient(self, recipient_id: UUID) -> Recipient | None:
        return self._views.recipients.get(recipient_id)

    def recipient_by_message_id(self, message_id: str) -> UUID | None:
        return self._views.message_ids.get(message_id)

    def list_broadcasts(
        self, inbox_id: str, statuses: frozenset[BroadcastStatus] | None, offset: int, limit: int
    ) -> tuple[list[Broadcast], int]:
        with self._lock:
            rows = [
                b
                for b in self._views.broadcasts.values()
                if b.inbox_id == inbox_id and (statuses is None or b.status in statuses)
            ]
        rows.sort(key=lambda b: (b.created_at, b.id.hex), reverse=True)
        return rows[offset : offset + limit], len(rows)

    def due_broadcasts(self, now: datetime) -> list[Broadcast]:
        with self._lock:
            rows = [
                b
                for b in self._views.broadcasts.values()
                if b.status in _DUE_BROADCAST and b.scheduled_at <= now
            ]
        rows.sort(key=lambda b: (b.scheduled_at, b.created_at, b.id.hex))
        return rows

    def _rows(self, broadcast_id: UUID) -> list[Recipient]:
        with self._lock:
            recipients = self._views.recipients
            return [recipients[rid] for rid in self._by_broadcast.get(broadcast_id, ())]

    def due_recipients(self, broadcast_id: UUID, now: datetime, limit: int) -> list[Recipient]:
        out: list[Recipient] = []
        for r in self._rows(broadcast_id):
            if r.is_due(now):
                out.append(r)
                if len(out) >= limit:
                    break
        return out

    def recipient_page(
        self,
        broadcast_id: UUID,
        *,
        keyword: str | None,
        status: DeliveryStatus | None,
        offset: int,
        limit: int,
        reason: str | None = None,
    ) -> tuple[list[Recipient], int]:
        search = self._search
        rows = [
            r
            for r in self._rows(broadcast_id)
            if (status is None or r.status is status)
            and (reason is None or recipient_reason(r) == reason)
            and (not keyword or keyword in search[r.id])
        ]
        return rows[offset : offset + limit], len(rows)

    def iter_recipients(self, broadcast_id: UUID) -> Iterator[Recipient]:
        return iter(self._rows(broadcast_id))

    def _errors(self, broadcast_id: UUID, as_of: int) -> list[Recipient]:
        positions = self._views.error_positions
        return [
            r
            for r in self._rows(broadcast_id)
            if r.unacknowledged_error and positions.get(r.id, 0) <= as_of
        ]

    def error_page(
        self, broadcast_id: UUID, *, as_of: int, offset: int, limit: int
    ) -> tuple[list[Recipient], int]:
        rows = self._errors(broadcast_id, as_of)
        return rows[offset : offset + limit], len(rows)

    def iter_unacknowledged(self, broadcast_id: UUID, as_of: int) -> Iterator[Recipient]:
        return iter(self._errors(broadcast_id, as_of))

    def monthly_count(self, account_id: str, year: int, month: int) -> int:
        return self._views.monthly.get((account_id, year, month), 0)

    def unmatched_page(self, offset: int, limit: int) -> tuple[list[UnmatchedMessage], int]:
        with self._lock:
            rows = sorted(self._views.unmatched.values(), key=unmatched_order)
        return rows[offset : offset + limit], len(rows)

    def close(self) -> None:
        return None
