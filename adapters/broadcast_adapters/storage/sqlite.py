"""The projections in SQLite tables, beside the events in the same file.

Each batch of events is applied in one ``BEGIN IMMEDIATE`` transaction that
also moves the tracking position, and only if the position is still the one
the caller read: so every event is applied exactly once even with several
processes on one file. Rows keep their whole state as a JSON blob plus the
columns that queries filter and sort on.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from broadcast_domain.codec import decode_state, encode_state
from broadcast_domain.domain.account import Account
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import (
    AccountConfigured,
    BroadcastEvent,
    BroadcastScheduled,
    DomainEvent,
    RecipientEvent,
    Scheduled,
)
from broadcast_domain.domain.recipient import Recipient
from broadcast_domain.domain.unmatched import UnmatchedMessage
from broadcast_domain.domain.values import BroadcastStatus, DeliveryStatus
from broadcast_domain.projections.views import (
    Counts,
    Views,
    project,
    recipient_reason,
    recipient_search_text,
)

__all__ = ["SqliteViewStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bd_tracking (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);
INSERT OR IGNORE INTO bd_tracking (id, position) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS bd_recipients (
    id TEXT PRIMARY KEY,
    broadcast_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    due_at TEXT,
    unack INTEGER NOT NULL,
    error_pos INTEGER,
    search TEXT NOT NULL,
    state BLOB NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS bd_recipients_by_position ON bd_recipients (broadcast_id, position);
CREATE INDEX IF NOT EXISTS bd_recipients_by_status
    ON bd_recipients (broadcast_id, status, position);
CREATE INDEX IF NOT EXISTS bd_recipients_unack ON bd_recipients (broadcast_id, position)
    WHERE unack = 1;
CREATE TABLE IF NOT EXISTS bd_broadcasts (
    id TEXT PRIMARY KEY,
    inbox_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    scheduled_at TEXT NOT NULL,
    state BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS bd_broadcasts_by_inbox ON bd_broadcasts (inbox_id, created_at);
CREATE INDEX IF NOT EXISTS bd_broadcasts_by_status ON bd_broadcasts (status, scheduled_at);
CREATE TABLE IF NOT EXISTS bd_counts (broadcast_id TEXT PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bd_accounts (account_id TEXT PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bd_monthly (
    account_id TEXT NOT NULL,
    year INTEGER NOT NULL,
    month INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (account_id, year, month)
);
CREATE TABLE IF NOT EXISTS bd_message_ids (message_id TEXT PRIMARY KEY, recipient_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bd_unmatched (
    id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    state BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS bd_unmatched_by_received ON bd_unmatched (received_at, id);
"""

_TABLES = (
    "bd_recipients",
    "bd_broadcasts",
    "bd_counts",
    "bd_accounts",
    "bd_monthly",
    "bd_message_ids",
    "bd_unmatched",
)

_IN_CHUNK = 500
_CACHE_LIMIT = 100_000
_STREAM_CHUNK = 1000
_DUE_STATUSES = (
    BroadcastStatus.SCHEDULED.value,
    BroadcastStatus.SENDING.value,
    BroadcastStatus.PAUSED.value,
)


def ts(moment: datetime | None) -> str | None:
    """A sortable, fixed-width UTC text form of a moment."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _due_at(r: Recipient) -> str | None:
    if r.status is not DeliveryStatus.SENDING:
        return None
    return ts(r.retry_at if r.retry_at is not None else r.lease_until)


class SqliteViewStore:
    """A ViewStore on a SQLite file (or ``:memory:``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        # A "file:...?mode=ro" URI opens the store read-only (status, verify): no
        # schema or journal change is attempted then.
        read_only = path.startswith("file:") and "mode=ro" in path
        self._conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=60.0,
            uri=path.startswith("file:"),
        )
        if path != ":memory:" and not read_only:
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            if not read_only:
                self._conn.executescript(_SCHEMA)
                columns = {row[1] for row in self._conn.execute("PRAGMA table_info(bd_recipients)")}
                if "reason" not in columns:
                    # A store made before reasons existed: the column is filled by a rebuild.
                    self._conn.execute("ALTER TABLE bd_recipients ADD COLUMN reason TEXT")
        # Recipient rows as this store last wrote them, valid while the tracking
        # position is still the one it wrote (every change to the tables moves it):
        # a rebuild or a dispatch touches each recipient in several batches, and
        # decoding its row back each time cost more than the rest of the apply.
        self._cache: dict[UUID, tuple[Recipient, int | None]] = {}
        self._cache_position: int | None = None

    # --- writing -------------------------------------------------------------------------

    def position(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT position FROM bd_tracking WHERE id = 1").fetchone()
            return int(row[0])

    def _select_in(self, sql: str, keys: Sequence[str]) -> list[Any]:
        rows: list[Any] = []
        for chunk in _chunks(keys, _IN_CHUNK):
            marks = ",".join("?" * len(chunk))
            rows.extend(self._conn.execute(sql.format(marks=marks), list(chunk)).fetchall())
        return rows

    def _load(self, batch: Sequence[tuple[int, DomainEvent]], position: int) -> Views:
        views = Views(position=position)
        recipient_ids: set[UUID] = set()
        broadcast_ids: set[str] = set()
        account_ids: set[str] = set()
        for _, event in batch:
            if isinstance(event, Scheduled):
                broadcast_ids.add(event.broadcast_id.hex)
                account_ids.add(event.account_id)
            elif isinstance(event, RecipientEvent):
                recipient_ids.add(event.originator_id)
            elif isinstance(event, BroadcastEvent):
                if not isinstance(event, BroadcastScheduled):
                    broadcast_ids.add(event.originator_id.hex)
            elif isinstance(event, AccountConfigured):
                account_ids.add(event.account_id)
        if self._cache_position != position:
            self._forget()  # another writer moved on: our rows may be stale
        cache = self._cache
        wanted: list[str] = []
        for rid in recipient_ids:
            hit = cache.get(rid)
            if hit is None:
                wanted.append(rid.hex)
                continue
            r, error_pos = hit
            views.recipients[rid] = r
            if error_pos is not None:
                views.error_positions[rid] = error_pos
            broadcast_ids.add(r.broadcast_id.hex)
            account_ids.add(r.account_id)
        for error_pos, state in self._select_in(
            "SELECT error_pos, state FROM bd_recipients WHERE id IN ({marks})",
            sorted(wanted),
        ):
            r = decode_state(state, Recipient)
            views.recipients[r.id] = r
            if error_pos is not None:
                views.error_positions[r.id] = error_pos
            broadcast_ids.add(r.broadcast_id.hex)
            account_ids.add(r.account_id)
        keys = sorted(broadcast_ids)
        for bid, state in self._select_in(
            "SELECT broadcast_id, state FROM bd_counts WHERE broadcast_id IN ({marks})", keys
        ):
            views.counts[UUID(bid)] = decode_state(state, Counts)
        for state in self._select_in("SELECT state FROM bd_broadcasts WHERE id IN ({marks})", keys):
            b = decode_state(state[0], Broadcast)
            views.broadcasts[b.id] = b
        for state in self._select_in(
            "SELECT state FROM bd_accounts WHERE account_id IN ({marks})", sorted(account_ids)
        ):
            a = decode_state(state[0], Account)
            views.accounts[a.account_id] = a
        return views

    def _write(self, views: Views, existing: set[UUID]) -> None:
        c = self._conn
        rows = []
        updates = []
        for rid in views.dirty_recipients:
            r = views.recipients[rid]
            if rid in existing:
                # Names, address, broadcast and position never change after Scheduled,
                # so an update leaves them (and the costly search text) as they are.
                updates.append(
                    (
                        r.status.value,
                        _due_at(r),
                        1 if r.unacknowledged_error else 0,
                        views.error_positions.get(rid),
                        encode_state(r),
                        recipient_reason(r),
                        rid.hex,
                    )
                )
                continue
            rows.append(
                (
                    rid.hex,
                    r.broadcast_id.hex,
                    r.position,
                    r.status.value,
                    _due_at(r),
                    1 if r.unacknowledged_error else 0,
                    views.error_positions.get(rid),
                    recipient_search_text(r),
                    encode_state(r),
                    recipient_reason(r),
                )
            )
        c.executemany("INSERT OR REPLACE INTO bd_recipients VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        c.executemany(
            "UPDATE bd_recipients SET status = ?, due_at = ?, unack = ?, error_pos = ?, state = ?, "
            "reason = ? WHERE id = ?",
            updates,
        )
        c.executemany(
            "INSERT OR REPLACE INTO bd_broadcasts VALUES (?,?,?,?,?,?)",
            [
                (
                    b.id.hex,
                    b.inbox_id,
                    b.status.value,
                    ts(b.created_at),
                    ts(b.scheduled_at),
                    encode_state(b),
                )
                for b in (views.broadcasts[i] for i in views.dirty_broadcasts)
            ],
        )
        c.executemany(
            "INSERT OR REPLACE INTO bd_counts VALUES (?,?)",
            [(bid.hex, encode_state(views.counts[bid])) for bid in views.dirty_counts],
        )
        c.executemany(
            "INSERT OR REPLACE INTO bd_accounts VALUES (?,?)",
            [(aid, encode_state(views.accounts[aid])) for aid in views.dirty_accounts],
        )
        c.executemany(
            "INSERT INTO bd_monthly VALUES (?,?,?,?) ON CONFLICT (account_id, year, month) "
            "DO UPDATE SET count = count + excluded.count",
            [(a, y, m, n) for (a, y, m), n in views.monthly.items() if n],
        )
        c.executemany(
            "INSERT OR REPLACE INTO bd_message_ids VALUES (?,?)",
            [(mid, rid.hex) for mid, rid in views.message_ids.items()],
        )
        self._write_unmatched(views)

    def _write_unmatched(self, views: Views) -> None:
        # A resolved message is no longer in the fold's working set: its row goes.
        kept = [views.unmatched[u] for u in views.dirty_unmatched if u in views.unmatched]
        gone = [(u.hex,) for u in views.dirty_unmatched if u not in views.unmatched]
        self._conn.executemany(
            "INSERT OR REPLACE INTO bd_unmatched VALUES (?,?,?)",
            [(m.id.hex, ts(m.received_at), encode_state(m)) for m in kept],
        )
        self._conn.executemany("DELETE FROM bd_unmatched WHERE id = ?", gone)

    def apply(self, batch: Sequence[tuple[int, DomainEvent]], *, expected_position: int) -> bool:
        if not batch:
            return True
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute("SELECT position FROM bd_tracking WHERE id = 1").fetchone()
                if int(row[0]) != expected_position:
                    c.execute("ROLLBACK")
                    return False
                views = self._load(batch, expected_position)
                existing = set(views.recipients)
                for position, event in batch:
                    project(views, event, position)
                self._write(views, existing)
                c.execute("UPDATE bd_tracking SET position = ? WHERE id = 1", (views.position,))
                c.execute("COMMIT")
            except BaseException:
                self._forget()
                c.execute("ROLLBACK")
                raise
            self._remember(views)
            return True

    def _remember(self, views: Views) -> None:
        cache = self._cache
        if len(cache) + len(views.dirty_recipients) > _CACHE_LIMIT:
            cache.clear()
        errors = views.error_positions
        for rid in views.dirty_recipients:
            cache[rid] = (views.recipients[rid], errors.get(rid))
        self._cache_position = views.position

    def _forget(self) -> None:
        self._cache.clear()
        self._cache_position = None

    def reset(self) -> None:
        with self._lock:
            self._forget()
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                for table in _TABLES:
                    c.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
                c.execute("UPDATE bd_tracking SET position = 0 WHERE id = 1")
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def dump(self) -> Views:
        with self._lock:
            c = self._conn
            c.execute("BEGIN")
            try:
                views = Views(
                    position=int(c.execute("SELECT position FROM bd_tracking").fetchone()[0])
                )
                for error_pos, state in c.execute("SELECT error_pos, state FROM bd_recipients"):
                    r = decode_state(state, Recipient)
                    views.recipients[r.id] = r
                    if error_pos is not None:
                        views.error_positions[r.id] = error_pos
                for (state,) in c.execute("SELECT state FROM bd_broadcasts"):
                    b = decode_state(state, Broadcast)
                    views.broadcasts[b.id] = b
                for bid, state in c.execute("SELECT broadcast_id, state FROM bd_counts"):
                    views.counts[UUID(bid)] = decode_state(state, Counts)
                for (state,) in c.execute("SELECT state FROM bd_accounts"):
                    a = decode_state(state, Account)
                    views.accounts[a.account_id] = a
                for a, y, m, n in c.execute(
                    "SELECT account_id, year, month, count FROM bd_monthly"
                ):
                    views.monthly[(a, y, m)] = n
                for mid, rid in c.execute("SELECT message_id, recipient_id FROM bd_message_ids"):
                    views.message_ids[mid] = UUID(rid)
                for (state,) in c.execute("SELECT state FROM bd_unmatched"):
                    m = decode_state(state, UnmatchedMessage)
                    views.unmatched[m.id] = m
            finally:
                c.execute("COMMIT")
            return views

    # --- queries -------------------------------------------------------------------------

    def _one(self, sql: str, params: Iterable[Any]) -> Any:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchone()

    def _all(self, sql: str, params: Iterable[Any]) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def account(self, account_id: str) -> Account | None:
        row = self._one("SELECT state FROM bd_accounts WHERE account_id = ?", (account_id,))
        return decode_state(row[0], Account) if row else None

    def broadcast(self, broadcast_id: UUID) -> Broadcast | None:
        row = self._one("SELECT state FROM bd_broadcasts WHERE id = ?", (broadcast_id.hex,))
        return decode_state(row[0], Broadcast) if row else None

    def counts(self, broadcast_id: UUID) -> Counts:
        row = self._one("SELECT state FROM bd_counts WHERE broadcast_id = ?", (broadcast_id.hex,))
        return decode_state(row[0], Counts) if row else Counts()

    def recipient(self, recipient_id: UUID) -> Recipient | None:
        row = self._one("SELECT state FROM bd_recipients WHERE id = ?", (recipient_id.hex,))
        return decode_state(row[0], Recipient) if row else None

    def recipient_by_message_id(self, message_id: str) -> UUID | None:
        row = self._one(
            "SELECT recipient_id FROM bd_message_ids WHERE message_id = ?", (message_id,)
        )
        return UUID(row[0]) if row else None

    def list_broadcasts(
        self, inbox_id: str, statuses: frozenset[BroadcastStatus] | None, offset: int, limit: int
    ) -> tuple[list[Broadcast], int]:
        where = "inbox_id = ?"
        params: list[Any] = [inbox_id]
        if statuses is not None:
            where += f" AND status IN ({','.join('?' * len(statuses))})"
            params.extend(sorted(s.value for s in statuses))
        total = self._one(f"SELECT COUNT(*) FROM bd_broadcasts WHERE {where}", params)[0]  # noqa: S608
        rows = self._all(
            f"SELECT state FROM bd_broadcasts WHERE {where} "  # noqa: S608 - placeholders only
            "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [decode_state(r[0], Broadcast) for r in rows], int(total)

    def due_broadcasts(self, now: datetime) -> list[Broadcast]:
        rows = self._all(
            "SELECT state FROM bd_broadcasts WHERE status IN (?,?,?) AND scheduled_at <= ? "
            "ORDER BY scheduled_at, created_at, id",
            [*_DUE_STATUSES, ts(now)],
        )
        return [decode_state(r[0], Broadcast) for r in rows]

    def due_recipients(self, broadcast_id: UUID, now: datetime, limit: int) -> list[Recipient]:
        bid = broadcast_id.hex
        rows = self._all(
            "SELECT state FROM bd_recipients WHERE broadcast_id = ? AND status = 'scheduled' "
            "ORDER BY position LIMIT ?",
            (bid, limit),
        )
        # The first `limit` by position of the union is within the first `limit` of each part;
        # two index-ordered queries avoid scanning the rows already sent.
        rows += self._all(
            "SELECT state FROM bd_recipients WHERE broadcast_id = ? AND status = 'sending' "
            "AND due_at <= ? ORDER BY position LIMIT ?",
            (bid, ts(now), limit),
        )
        found = [decode_state(r[0], Recipient) for r in rows]
        found.sort(key=lambda r: r.position)
        return found[:limit]

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
        where = "broadcast_id = ?"
        params: list[Any] = [broadcast_id.hex]
        if status is not None:
            where += " AND status = ?"
            params.append(status.value)
        if reason is not None:
            where += " AND reason = ?"
            params.append(reason)
        if keyword:
            where += " AND instr(search, ?) > 0"
            params.append(keyword)
        total = self._one(f"SELECT COUNT(*) FROM bd_recipients WHERE {where}", params)[0]  # noqa: S608
        rows = self._all(
            f"SELECT state FROM bd_recipients WHERE {where} "  # noqa: S608 - placeholders only
            "ORDER BY position LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [decode_state(r[0], Recipient) for r in rows], int(total)

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[Recipient]:
        # Keyset pagination: no cursor or lock is held between chunks.
        last = -1
        while True:
            with self._lock:
                c = self._conn
                c.execute("BEGIN")
                try:
                    # Rows this store wrote are still in memory when nobody has moved the
                    # position since: use them rather than decoding the JSON again.
                    now_at = c.execute("SELECT position FROM bd_tracking WHERE id = 1").fetchone()
                    cache = self._cache if self._cache_position == now_at[0] else {}
                    rows = c.execute(sql, [*params, last, _STREAM_CHUNK]).fetchall()
                finally:
                    c.execute("COMMIT")
            if not rows:
                return
            for position, rid, state in rows:
                hit = cache.get(UUID(rid)) if cache else None
                yield hit[0] if hit is not None else decode_state(state, Recipient)
                last = position

    def iter_recipients(self, broadcast_id: UUID) -> Iterator[Recipient]:
        return self._stream(
            "SELECT position, id, state FROM bd_recipients WHERE broadcast_id = ? AND position > ? "
            "ORDER BY position LIMIT ?",
            [broadcast_id.hex],
        )

    def error_page(
        self, broadcast_id: UUID, *, as_of: int, offset: int, limit: int
    ) -> tuple[list[Recipient], int]:
        params = (broadcast_id.hex, as_of)
        where = "broadcast_id = ? AND unack = 1 AND error_pos <= ?"
        total = self._one(f"SELECT COUNT(*) FROM bd_recipients WHERE {where}", params)[0]  # noqa: S608
        rows = self._all(
            f"SELECT state FROM bd_recipients WHERE {where} "  # noqa: S608 - placeholders only
            "ORDER BY position LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [decode_state(r[0], Recipient) for r in rows], int(total)

    def iter_unacknowledged(self, broadcast_id: UUID, as_of: int) -> Iterator[Recipient]:
        return self._stream(
            "SELECT position, id, state FROM bd_recipients WHERE broadcast_id = ? AND unack = 1 "
            "AND error_pos <= ? AND position > ? ORDER BY position LIMIT ?",
            [broadcast_id.hex, as_of],
        )

    def monthly_count(self, account_id: str, year: int, month: int) -> int:
        row = self._one(
            "SELECT count FROM bd_monthly WHERE account_id = ? AND year = ? AND month = ?",
            (account_id, year, month),
        )
        return int(row[0]) if row else 0

    def unmatched_page(self, offset: int, limit: int) -> tuple[list[UnmatchedMessage], int]:
        total = self._one("SELECT COUNT(*) FROM bd_unmatched", ())[0]
        rows = self._all(
            "SELECT state FROM bd_unmatched ORDER BY received_at, id LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [decode_state(r[0], UnmatchedMessage) for r in rows], int(total)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
