"""An in-memory view store: the fold's working set kept in dicts, for ``memory://``."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from uuid import UUID

import attrs

from broadcast_domain.domain.account import Account
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.domain.unmatched import UnmatchedMessage
from broadcast_domain.domain.values import BroadcastStatus, DeliveryStatus
from broadcast_domain.projections.replay import SentMessage
from broadcast_domain.projections.rows import ResultCells, cells_of
from broadcast_domain.projections.views import (
    BulkAcknowledgement,
    Counts,
    RecipientRow,
    Views,
    acknowledgeable,
    project,
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
        self._known: set[UUID] = set()

    def position(self) -> int:
        return self._views.position

    def apply(self, batch: Sequence[tuple[int, DomainEvent]], *, expected_position: int) -> bool:
        with self._lock:
            views = self._views
            if views.position != expected_position:
                return False
            for position, event in batch:
                project(views, event, position)
            known = self._known
            touched: set[UUID] = set()
            for rid in views.dirty_recipients:
                if rid not in known:
                    known.add(rid)
                    bid = views.recipients[rid].broadcast_id
                    self._by_broadcast.setdefault(bid, []).append(rid)
                    touched.add(bid)
            for bid in touched:
                # Stable order: the order recipients were added (their position).
                self._by_broadcast[bid].sort(key=lambda rid: views.recipients[rid].position)
            views.clear_dirty()
            return True

    def apply_acknowledgements(self, bulk: BulkAcknowledgement, *, expected_position: int) -> bool:
        with self._lock:
            if self._views.position != expected_position or not acknowledgeable(self._views, bulk):
                return False
            return self.apply(bulk.events(), expected_position=expected_position)

    def replacing(self) -> contextlib.AbstractContextManager[_Replacement]:
        return contextlib.nullcontext(_Replacement(self._install))

    def _install(self, views: Views) -> None:
        by_broadcast: dict[UUID, list[RecipientRow]] = {}
        for row in views.recipients.values():
            by_broadcast.setdefault(row.broadcast_id, []).append(row)
        with self._lock:
            self._views = views
            self._by_broadcast = {
                bid: [row.id for row in sorted(rows, key=lambda row: row.position)]
                for bid, rows in by_broadcast.items()
            }
            self._known = set(views.recipients)

    def reset(self) -> None:
        self._install(Views())

    def dump(self) -> Views:
        with self._lock:
            v = self._views
            return Views(
                recipients=dict(v.recipients),
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

    def recipient(self, recipient_id: UUID) -> RecipientRow | None:
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

    def _rows(self, broadcast_id: UUID) -> list[RecipientRow]:
        with self._lock:
            recipients = self._views.recipients
            return [recipients[rid] for rid in self._by_broadcast.get(broadcast_id, ())]

    def due_recipients(
        self, broadcast_id: UUID, now: datetime, limit: int, *, after: int = -1
    ) -> list[RecipientRow]:
        out: list[RecipientRow] = []
        for r in self._rows(broadcast_id):
            if r.position > after and r.is_due(now):
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
    ) -> tuple[list[RecipientRow], int]:
        rows = [
            r
            for r in self._rows(broadcast_id)
            if (status is None or r.status is status)
            and (reason is None or r.reason == reason)
            and (not keyword or keyword in r.search)
        ]
        return rows[offset : offset + limit], len(rows)

    def iter_recipients(self, broadcast_id: UUID) -> Iterator[RecipientRow]:
        return iter(self._rows(broadcast_id))

    def iter_result_cells(
        self, broadcast_id: UUID, *, unacknowledged_as_of: int | None = None
    ) -> Iterator[ResultCells]:
        if unacknowledged_as_of is None:
            rows = self._rows(broadcast_id)
        else:
            rows = self._errors(broadcast_id, unacknowledged_as_of)
        return map(cells_of, rows)

    def _errors(self, broadcast_id: UUID, as_of: int) -> list[RecipientRow]:
        return [
            r
            for r in self._rows(broadcast_id)
            if r.unacknowledged_error and (r.error_position or 0) <= as_of
        ]

    def error_page(
        self, broadcast_id: UUID, *, as_of: int, offset: int, limit: int
    ) -> tuple[list[RecipientRow], int]:
        rows = self._errors(broadcast_id, as_of)
        return rows[offset : offset + limit], len(rows)

    def iter_unacknowledged(self, broadcast_id: UUID, as_of: int) -> Iterator[RecipientRow]:
        return iter(self._errors(broadcast_id, as_of))

    def iter_unacknowledged_versions(
        self, broadcast_id: UUID, as_of: int
    ) -> Iterator[tuple[UUID, int]]:
        return iter([(r.id, r.version) for r in self._errors(broadcast_id, as_of)])

    def monthly_count(self, account_id: str, year: int, month: int) -> int:
        return self._views.monthly.get((account_id, year, month), 0)

    def unmatched_page(self, offset: int, limit: int) -> tuple[list[UnmatchedMessage], int]:
        with self._lock:
            rows = sorted(self._views.unmatched.values(), key=unmatched_order)
        return rows[offset : offset + limit], len(rows)

    def close(self) -> None:
        return None


class _Replacement:
    """A new set of views collected in dicts, installed whole by commit()."""

    def __init__(self, install: Callable[[Views], None]) -> None:
        self._install = install
        self._rows: dict[UUID, RecipientRow] = {}
        self._sent: dict[str, tuple[int, UUID]] = {}

    def add(self, rows: Sequence[RecipientRow], sent: Sequence[SentMessage]) -> None:
        self._rows.update((row.id, row) for row in rows)
        latest = self._sent
        for message_id, rid, position in sent:
            seen = latest.get(message_id)
            if seen is None or position > seen[0]:
                latest[message_id] = (position, rid)

    def commit(self, views: Views) -> None:
        self._install(
            Views(
                recipients=self._rows,
                broadcasts=dict(views.broadcasts),
                counts={k: attrs.evolve(c) for k, c in views.counts.items()},
                accounts=dict(views.accounts),
                monthly=dict(views.monthly),
                message_ids={mid: rid for mid, (_, rid) in self._sent.items()},
                unmatched=dict(views.unmatched),
                position=views.position,
            )
        )
