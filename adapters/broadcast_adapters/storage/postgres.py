"""The projections in PostgreSQL tables, beside the events in the same database.

The same tables and semantics as the SQLite store: each batch of events is
applied in one transaction that first locks the tracking row
(``SELECT ... FOR UPDATE``) and checks it still holds the position the caller
read, then writes the changed rows and moves the position; so every event is
applied exactly once however many processes catch up at the same time. Rows
keep their whole state as a JSON blob plus the columns queries filter and sort
on. The schema is created on first open, under an advisory lock, so two
processes opening a fresh database at once do not trip over each other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, LiteralString
from uuid import UUID

import psycopg
from psycopg import sql

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
from broadcast_domain.errors import StoreUnavailable
from broadcast_domain.projections.views import (
    Counts,
    Views,
    project,
    recipient_reason,
    recipient_search_text,
)

__all__ = ["PostgresViewStore"]

# Shared with the event log's schema creation (broadcast_domain.application.eventlog),
# so events and projections are created one process at a time.
_SCHEMA_LOCK_KEY = 0x62645F736368

_SCHEMA: tuple[LiteralString, ...] = (
    """CREATE TABLE IF NOT EXISTS bd_tracking (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        position BIGINT NOT NULL)""",
    "INSERT INTO bd_tracking (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    """CREATE TABLE IF NOT EXISTS bd_recipients (
        id TEXT PRIMARY KEY,
        broadcast_id TEXT NOT NULL,
        position BIGINT NOT NULL,
        status TEXT NOT NULL,
        due_at TIMESTAMPTZ,
        unack BOOLEAN NOT NULL,
        error_pos BIGINT,
        search TEXT NOT NULL,
        state BYTEA NOT NULL,
        reason TEXT)""",
    # A store made before reasons existed: the column is filled by a rebuild.
    "ALTER TABLE bd_recipients ADD COLUMN IF NOT EXISTS reason TEXT",
    """CREATE INDEX IF NOT EXISTS bd_recipients_by_position
        ON bd_recipients (broadcast_id, position)""",
    """CREATE INDEX IF NOT EXISTS bd_recipients_by_status
        ON bd_recipients (broadcast_id, status, position)""",
    """CREATE INDEX IF NOT EXISTS bd_recipients_unack
        ON bd_recipients (broadcast_id, position) WHERE unack""",
    """CREATE TABLE IF NOT EXISTS bd_broadcasts (
        id TEXT PRIMARY KEY,
        inbox_id TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        scheduled_at TIMESTAMPTZ NOT NULL,
        state BYTEA NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS bd_broadcasts_by_inbox ON bd_broadcasts (inbox_id, created_at)",
    "CREATE INDEX IF NOT EXISTS bd_broadcasts_by_status ON bd_broadcasts (status, scheduled_at)",
    "CREATE TABLE IF NOT EXISTS bd_counts (broadcast_id TEXT PRIMARY KEY, state BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bd_accounts (account_id TEXT PRIMARY KEY, state BYTEA NOT NULL)",
    """CREATE TABLE IF NOT EXISTS bd_monthly (
        account_id TEXT NOT NULL,
        year INTEGER NOT NULL,
        month INTEGER NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (account_id, year, month))""",
    """CREATE TABLE IF NOT EXISTS bd_message_ids (
        message_id TEXT PRIMARY KEY, recipient_id TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS bd_unmatched (
        id TEXT PRIMARY KEY,
        received_at TIMESTAMPTZ NOT NULL,
        state BYTEA NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS bd_unmatched_by_received ON bd_unmatched (received_at, id)",
)

_TABLES: LiteralString = (
    "bd_recipients, bd_broadcasts, bd_counts, bd_accounts, bd_monthly, bd_message_ids, bd_unmatched"
)
_STREAM_CHUNK = 1000
_DUE_STATUSES = [
    BroadcastStatus.SCHEDULED.value,
    BroadcastStatus.SENDING.value,
    BroadcastStatus.PAUSED.value,
]


def _due_at(r: Recipient) -> datetime | None:
    if r.status is not DeliveryStatus.SENDING:
        return None
    return r.retry_at if r.retry_at is not None else r.lease_until


class PostgresViewStore:
    """A ViewStore in a PostgreSQL database (one connection, used under a lock)."""

    def __init__(
        self,
        *,
        dbname: str,
        host: str = "localhost",
        port: int | None = None,
        user: str = "",
        password: str = "",
        schema: str = "public",
        connect_timeout: int = 30,
    ) -> None:
        self.schema = schema
        self._lock = threading.RLock()
        params: dict[str, Any] = {
            "dbname": dbname,
            "host": host or "localhost",
            "port": port or 5432,
            "connect_timeout": connect_timeout,
            "autocommit": True,
        }
        if user:
            params["user"] = user
        if password:
            params["password"] = password
        try:
            self._conn: psycopg.Connection[Any] = psycopg.connect(**params)
        except psycopg.Error as e:
            raise StoreUnavailable(
                f"cannot open the PostgreSQL projections in {dbname!r} on "
                f"{params['host']}:{params['port']}: {e}"
            ) from e
        with self._lock, self._conn.transaction():
            c = self._conn
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            if schema != "public":
                c.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            c.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            for statement in _SCHEMA:
                c.execute(statement)

    @classmethod
    def from_url(cls, store: Any) -> PostgresViewStore:
        """Open the store a parsed ``postgresql://`` URL names (host, port, schema ...)."""
        return cls(
            dbname=store.dbname,
            host=store.host,
            port=store.port,
            user=store.user,
            password=store.password,
            schema=store.option("schema", "public") or "public",
            connect_timeout=int(store.option("connect_timeout", "30") or 30),
        )

    # --- writing -------------------------------------------------------------------------

    def position(self) -> int:
        row = self._one("SELECT position FROM bd_tracking WHERE id = 1", ())
        return int(row[0])

    def _load(self, batch: Sequence[tuple[int, DomainEvent]], position: int) -> Views:
        c = self._conn
        views = Views(position=position)
        recipient_ids: set[str] = set()
        broadcast_ids: set[str] = set()
        account_ids: set[str] = set()
        for _, event in batch:
            if isinstance(event, Scheduled):
                broadcast_ids.add(event.broadcast_id.hex)
                account_ids.add(event.account_id)
            elif isinstance(event, RecipientEvent):
                recipient_ids.add(event.originator_id.hex)
            elif isinstance(event, BroadcastEvent):
                if not isinstance(event, BroadcastScheduled):
                    broadcast_ids.add(event.originator_id.hex)
            elif isinstance(event, AccountConfigured):
                account_ids.add(event.account_id)
        # = ANY(array) takes any number of keys in one round trip.
        if recipient_ids:
            for error_pos, state in c.execute(
                "SELECT error_pos, state FROM bd_recipients WHERE id = ANY(%s)",
                (list(recipient_ids),),
            ):
                r = decode_state(bytes(state), Recipient)
                views.recipients[r.id] = r
                if error_pos is not None:
                    views.error_positions[r.id] = error_pos
                broadcast_ids.add(r.broadcast_id.hex)
                account_ids.add(r.account_id)
        keys = list(broadcast_ids)
        if keys:
            for bid, state in c.execute(
                "SELECT broadcast_id, state FROM bd_counts WHERE broadcast_id = ANY(%s)", (keys,)
            ):
                views.counts[UUID(bid)] = decode_state(bytes(state), Counts)
            for (state,) in c.execute(
                "SELECT state FROM bd_broadcasts WHERE id = ANY(%s)", (keys,)
            ):
                b = decode_state(bytes(state), Broadcast)
                views.broadcasts[b.id] = b
        if account_ids:
            for (state,) in c.execute(
                "SELECT state FROM bd_accounts WHERE account_id = ANY(%s)", (list(account_ids),)
            ):
                a = decode_state(bytes(state), Account)
                views.accounts[a.account_id] = a
        return views

    def _write(self, views: Views) -> None:
        c = self._conn
        recipients = [
            (
                rid.hex,
                r.broadcast_id.hex,
                r.position,
                r.status.value,
                _due_at(r),
                r.unacknowledged_error,
                views.error_positions.get(rid),
                recipient_search_text(r),
                encode_state(r),
                recipient_reason(r),
            )
            for rid, r in ((i, views.recipients[i]) for i in views.dirty_recipients)
        ]
        with c.cursor() as cur:
            if recipients:
                cur.executemany(
                    "INSERT INTO bd_recipients VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                    "ON CONFLICT (id) DO UPDATE SET broadcast_id = EXCLUDED.broadcast_id, "
                    "position = EXCLUDED.position, status = EXCLUDED.status, "
                    "due_at = EXCLUDED.due_at, unack = EXCLUDED.unack, "
                    "error_pos = EXCLUDED.error_pos, search = EXCLUDED.search, "
                    "state = EXCLUDED.state, reason = EXCLUDED.reason",
                    recipients,
                )
            broadcasts = [
                (
                    b.id.hex,
                    b.inbox_id,
                    b.status.value,
                    b.created_at,
                    b.scheduled_at,
                    encode_state(b),
                )
                for b in (views.broadcasts[i] for i in views.dirty_broadcasts)
            ]
            if broadcasts:
                cur.executemany(
                    "INSERT INTO bd_broadcasts VALUES (%s,%s,%s,%s,%s,%s) "
                    "ON CONFLICT (id) DO UPDATE SET inbox_id = EXCLUDED.inbox_id, "
                    "status = EXCLUDED.status, created_at = EXCLUDED.created_at, "
                    "scheduled_at = EXCLUDED.scheduled_at, state = EXCLUDED.state",
                    broadcasts,
                )
            counts = [(bid.hex, encode_state(views.counts[bid])) for bid in views.dirty_counts]
            if counts:
                cur.executemany(
                    "INSERT INTO bd_counts VALUES (%s,%s) "
                    "ON CONFLICT (broadcast_id) DO UPDATE SET state = EXCLUDED.state",
                    counts,
                )
            accounts = [(aid, encode_state(views.accounts[aid])) for aid in views.dirty_accounts]
            if accounts:
                cur.executemany(
                    "INSERT INTO bd_accounts VALUES (%s,%s) "
                    "ON CONFLICT (account_id) DO UPDATE SET state = EXCLUDED.state",
                    accounts,
                )
            monthly = [(a, y, m, n) for (a, y, m), n in views.monthly.items() if n]
            if monthly:
                cur.executemany(
                    "INSERT INTO bd_monthly VALUES (%s,%s,%s,%s) "
                    "ON CONFLICT (account_id, year, month) "
                    "DO UPDATE SET count = bd_monthly.count + EXCLUDED.count",
                    monthly,
                )
            message_ids = [(mid, rid.hex) for mid, rid in views.message_ids.items()]
            if message_ids:
                cur.executemany(
                    "INSERT INTO bd_message_ids VALUES (%s,%s) "
                    "ON CONFLICT (message_id) DO UPDATE SET recipient_id = EXCLUDED.recipient_id",
                    message_ids,
                )
            # A resolved message is no longer in the fold's working set: its row goes.
            kept = [views.unmatched[u] for u in views.dirty_unmatched if u in views.unmatched]
            gone = [(u.hex,) for u in views.dirty_unmatched if u not in views.unmatched]
            if kept:
                cur.executemany(
                    "INSERT INTO bd_unmatched VALUES (%s,%s,%s) "
                    "ON CONFLICT (id) DO UPDATE SET received_at = EXCLUDED.received_at, "
                    "state = EXCLUDED.state",
                    [(m.id.hex, m.received_at, encode_state(m)) for m in kept],
                )
            if gone:
                cur.executemany("DELETE FROM bd_unmatched WHERE id = %s", gone)

    def apply(self, batch: Sequence[tuple[int, DomainEvent]], *, expected_position: int) -> bool:
        if not batch:
            return True
        with self._lock, self._conn.transaction():
            c = self._conn
            # The row lock makes concurrent appliers queue here; the loser then sees
            # the winner's position and backs out without writing anything.
            row = c.execute("SELECT position FROM bd_tracking WHERE id = 1 FOR UPDATE").fetchone()
            if row is None or int(row[0]) != expected_position:
                return False
            views = self._load(batch, expected_position)
            for position, event in batch:
                project(views, event, position)
            self._write(views)
            c.execute("UPDATE bd_tracking SET position = %s WHERE id = 1", (views.position,))
            return True

    def reset(self) -> None:
        with self._lock, self._conn.transaction():
            c = self._conn
            c.execute("SELECT position FROM bd_tracking WHERE id = 1 FOR UPDATE")
            c.execute("TRUNCATE " + _TABLES)
            c.execute("UPDATE bd_tracking SET position = 0 WHERE id = 1")

    def dump(self) -> Views:
        with self._lock:
            c = self._conn
            # One snapshot for every table, so the dump is consistent with its position.
            c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                row = c.execute("SELECT position FROM bd_tracking WHERE id = 1").fetchone()
                views = Views(position=int(row[0]) if row else 0)
                for error_pos, state in c.execute("SELECT error_pos, state FROM bd_recipients"):
                    r = decode_state(bytes(state), Recipient)
                    views.recipients[r.id] = r
                    if error_pos is not None:
                        views.error_positions[r.id] = error_pos
                for (state,) in c.execute("SELECT state FROM bd_broadcasts"):
                    b = decode_state(bytes(state), Broadcast)
                    views.broadcasts[b.id] = b
                for bid, state in c.execute("SELECT broadcast_id, state FROM bd_counts"):
                    views.counts[UUID(bid)] = decode_state(bytes(state), Counts)
                for (state,) in c.execute("SELECT state FROM bd_accounts"):
                    a = decode_state(bytes(state), Account)
                    views.accounts[a.account_id] = a
                for a, y, m, n in c.execute(
                    "SELECT account_id, year, month, count FROM bd_monthly"
                ):
                    views.monthly[(a, y, m)] = int(n)
                for mid, rid in c.execute("SELECT message_id, recipient_id FROM bd_message_ids"):
                    views.message_ids[mid] = UUID(rid)
                for (state,) in c.execute("SELECT state FROM bd_unmatched"):
                    m = decode_state(bytes(state), UnmatchedMessage)
                    views.unmatched[m.id] = m
            finally:
                c.execute("COMMIT")
            return views

    # --- queries -------------------------------------------------------------------------

    def _one(self, query: Any, params: Iterable[Any]) -> Any:
        with self._lock:
            return self._conn.execute(query, tuple(params)).fetchone()

    def _all(self, query: Any, params: Iterable[Any]) -> list[Any]:
        with self._lock:
            return self._conn.execute(query, tuple(params)).fetchall()

    def account(self, account_id: str) -> Account | None:
        row = self._one("SELECT state FROM bd_accounts WHERE account_id = %s", (account_id,))
        return decode_state(bytes(row[0]), Account) if row else None

    def broadcast(self, broadcast_id: UUID) -> Broadcast | None:
        row = self._one("SELECT state FROM bd_broadcasts WHERE id = %s", (broadcast_id.hex,))
        return decode_state(bytes(row[0]), Broadcast) if row else None

    def counts(self, broadcast_id: UUID) -> Counts:
        row = self._one("SELECT state FROM bd_counts WHERE broadcast_id = %s", (broadcast_id.hex,))
        return decode_state(bytes(row[0]), Counts) if row else Counts()

    def recipient(self, recipient_id: UUID) -> Recipient | None:
        row = self._one("SELECT state FROM bd_recipients WHERE id = %s", (recipient_id.hex,))
        return decode_state(bytes(row[0]), Recipient) if row else None

    def recipient_by_message_id(self, message_id: str) -> UUID | None:
        row = self._one(
            "SELECT recipient_id FROM bd_message_ids WHERE message_id = %s", (message_id,)
        )
        return UUID(row[0]) if row else None

    def list_broadcasts(
        self, inbox_id: str, statuses: frozenset[BroadcastStatus] | None, offset: int, limit: int
    ) -> tuple[list[Broadcast], int]:
        where = "inbox_id = %s"
        params: list[Any] = [inbox_id]
        if statuses is not None:
            where += " AND status = ANY(%s)"
            params.append(sorted(s.value for s in statuses))
        total = self._one(f"SELECT COUNT(*) FROM bd_broadcasts WHERE {where}", params)[0]  # noqa: S608
        rows = self._all(
            f"SELECT state FROM bd_broadcasts WHERE {where} "  # noqa: S608 - placeholders only
            "ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        return [decode_state(bytes(r[0]), Broadcast) for r in rows], int(total)

    def due_broadcasts(self, now: datetime) -> list[Broadcast]:
        rows = self._all(
            "SELECT state FROM bd_broadcasts WHERE status = ANY(%s) AND scheduled_at <= %s "
            "ORDER BY scheduled_at, created_at, id",
            [_DUE_STATUSES, now],
        )
        return [decode_state(bytes(r[0]), Broadcast) for r in rows]

    def due_recipients(self, broadcast_id: UUID, now: datetime, limit: int) -> list[Recipient]:
        bid = broadcast_id.hex
        rows = self._all(
            "SELECT state FROM bd_recipients WHERE broadcast_id = %s AND status = 'scheduled' "
            "ORDER BY position LIMIT %s",
            (bid, limit),
        )
        # The first `limit` by position of the union is within the first `limit` of each part;
        # two index-ordered queries avoid scanning the rows already sent.
        rows += self._all(
            "SELECT state FROM bd_recipients WHERE broadcast_id = %s AND status = 'sending' "
            "AND due_at <= %s ORDER BY position LIMIT %s",
            (bid, now, limit),
        )
        found = [decode_state(bytes(r[0]), Recipient) for r in rows]
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
        where = "broadcast_id = %s"
        params: list[Any] = [broadcast_id.hex]
        if status is not None:
            where += " AND status = %s"
            params.append(status.value)
        if reason is not None:
            where += " AND reason = %s"
            params.append(reason)
        if keyword:
            # strpos, not LIKE: the keyword is matched literally (no % or _ wildcards).
            where += " AND strpos(search, %s) > 0"
            params.append(keyword)
        total = self._one(f"SELECT COUNT(*) FROM bd_recipients WHERE {where}", params)[0]  # noqa: S608
        rows = self._all(
            f"SELECT state FROM bd_recipients WHERE {where} "  # noqa: S608 - placeholders only
            "ORDER BY position LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        return [decode_state(bytes(r[0]), Recipient) for r in rows], int(total)

    def _stream(self, query: LiteralString, params: Sequence[Any]) -> Iterator[Recipient]:
        # Keyset pagination: no cursor or transaction is held between chunks.
        last = -1
        while True:
            rows = self._all(query, [*params, last, _STREAM_CHUNK])
            if not rows:
                return
            for position, state in rows:
                yield decode_state(bytes(state), Recipient)
                last = position

    def iter_recipients(self, broadcast_id: UUID) -> Iterator[Recipient]:
        return self._stream(
            "SELECT position, state FROM bd_recipients WHERE broadcast_id = %s AND position > %s "
            "ORDER BY position LIMIT %s",
            [broadcast_id.hex],
        )

    def error_page(
        self, broadcast_id: UUID, *, as_of: int, offset: int, limit: int
    ) -> tuple[list[Recipient], int]:
        params = (broadcast_id.hex, as_of)
        where = "broadcast_id = %s AND unack AND error_pos <= %s"
        total = self._one(f"SELECT COUNT(*) FROM bd_recipients WHERE {where}", params)[0]  # noqa: S608
        rows = self._all(
            f"SELECT state FROM bd_recipients WHERE {where} "  # noqa: S608 - placeholders only
            "ORDER BY position LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        return [decode_state(bytes(r[0]), Recipient) for r in rows], int(total)

    def iter_unacknowledged(self, broadcast_id: UUID, as_of: int) -> Iterator[Recipient]:
        return self._stream(
            "SELECT position, state FROM bd_recipients WHERE broadcast_id = %s AND unack "
            "AND error_pos <= %s AND position > %s ORDER BY position LIMIT %s",
            [broadcast_id.hex, as_of],
        )

    def monthly_count(self, account_id: str, year: int, month: int) -> int:
        row = self._one(
            "SELECT count FROM bd_monthly WHERE account_id = %s AND year = %s AND month = %s",
            (account_id, year, month),
        )
        return int(row[0]) if row else 0

    def unmatched_page(self, offset: int, limit: int) -> tuple[list[UnmatchedMessage], int]:
        total = self._one("SELECT COUNT(*) FROM bd_unmatched", ())[0]
        rows = self._all(
            "SELECT state FROM bd_unmatched ORDER BY received_at, id LIMIT %s OFFSET %s",
            (limit, offset),
        )
        return [decode_state(bytes(r[0]), UnmatchedMessage) for r in rows], int(total)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
