"""The projections in SQL tables (SQLite or PostgreSQL), beside the events.

One implementation for both databases; a :class:`~.dialects.Dialect` holds
what differs. Each batch of events is applied in one transaction that first
takes the tracking row and checks it still holds the position the caller
read, then loads the rows the batch needs (:class:`Needs`, decided beside the
fold), folds the batch, writes the changed rows and moves the position: so
every event is applied exactly once however many processes catch up at once.

Recipient rows are columns (:class:`RecipientRow`), not a snapshot of the
aggregate: the list, the exports and the error worklist read them as they
are. Broadcasts, accounts, counts and kept report messages are small and
read whole, so they keep their state as one encoded value beside the columns
queries use.
"""

from __future__ import annotations

import contextlib
import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from itertools import compress, islice
from operator import is_not
from typing import Any, TypeVar
from uuid import UUID

import orjson

from broadcast_adapters.storage.dialects import POSTGRES, SQLITE, Dialect
from broadcast_domain.codec import decode_state, encode_state, uuid_from_hex
from broadcast_domain.domain.account import Account
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.domain.unmatched import UnmatchedMessage
from broadcast_domain.domain.values import BroadcastStatus, DeliveryStatus
from broadcast_domain.errors import StoreUnavailable
from broadcast_domain.projections.replay import SentMessage
from broadcast_domain.projections.rows import (
    RESULT_FIELDS,
    ROW_FIELDS,
    RecipientRow,
    ResultCells,
    row_from_values,
)
from broadcast_domain.projections.views import (
    AcknowledgedRows,
    Acknowledging,
    BulkAcknowledgement,
    Counts,
    MonthKey,
    Needs,
    Views,
    months_needed,
    project_all,
    project_bulk_acknowledgement,
)

__all__ = ["VIEW_TABLES", "SqlViewStore"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bd_tracking (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        position {int} NOT NULL)""",
    "INSERT INTO bd_tracking (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    """CREATE TABLE IF NOT EXISTS bd_recipients (
        id TEXT PRIMARY KEY,
        broadcast_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        position {int} NOT NULL,
        address TEXT NOT NULL,
        last_name TEXT NOT NULL,
        first_name TEXT NOT NULL,
        company TEXT NOT NULL,
        contact_id TEXT,
        search TEXT NOT NULL,
        status TEXT NOT NULL,
        status_updated_at {time},
        detail_message TEXT NOT NULL,
        acknowledged_at {time},
        reason TEXT,
        due_at {time},
        error_position {int},
        first_outcome_at {time},
        error_rank TEXT,
        version {int} NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS bd_recipients_by_position
        ON bd_recipients (broadcast_id, position)""",
    """CREATE INDEX IF NOT EXISTS bd_recipients_by_status
        ON bd_recipients (broadcast_id, status, position)""",
    """CREATE INDEX IF NOT EXISTS bd_recipients_unack ON bd_recipients (broadcast_id, position)
        WHERE status = 'error' AND acknowledged_at IS NULL""",
    """CREATE TABLE IF NOT EXISTS bd_broadcasts (
        id TEXT PRIMARY KEY,
        inbox_id TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at {time} NOT NULL,
        scheduled_at {time} NOT NULL,
        state {blob} NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS bd_broadcasts_by_inbox ON bd_broadcasts (inbox_id, created_at)",
    "CREATE INDEX IF NOT EXISTS bd_broadcasts_by_status ON bd_broadcasts (status, scheduled_at)",
    "CREATE TABLE IF NOT EXISTS bd_counts (broadcast_id TEXT PRIMARY KEY, state {blob} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bd_accounts (account_id TEXT PRIMARY KEY, state {blob} NOT NULL)",
    """CREATE TABLE IF NOT EXISTS bd_monthly (
        account_id TEXT NOT NULL,
        year INTEGER NOT NULL,
        month INTEGER NOT NULL,
        count {int} NOT NULL,
        PRIMARY KEY (account_id, year, month))""",
    """CREATE TABLE IF NOT EXISTS bd_message_ids (
        message_id TEXT PRIMARY KEY, recipient_id TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS bd_unmatched (
        id TEXT PRIMARY KEY,
        received_at {time} NOT NULL,
        state {blob} NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS bd_unmatched_by_received ON bd_unmatched (received_at, id)",
)

# The recipient table's secondary indexes: a rebuild writes the rows into a table
# without them and makes each from the whole table at the end (one sort each), instead
# of inserting and moving millions of entries one row at a time.
_RECIPIENT_INDEXES = tuple(
    statement for statement in _SCHEMA if "INDEX IF NOT EXISTS bd_recipients_" in statement
)

# A rebuild's new recipient rows and Message-IDs (ViewStore.replacing), until its commit
# puts them in place. A Message-ID keeps the position of its Sent event there: the
# latest Sent event that used an id names its recipient.
_NEXT_RECIPIENTS = "bd_recipients_next"
_NEXT_MESSAGE_IDS = "bd_message_ids_next"
_CREATE_NEXT = (
    next(s for s in _SCHEMA if s.startswith("CREATE TABLE IF NOT EXISTS bd_recipients (")).replace(
        "bd_recipients (", f"{_NEXT_RECIPIENTS} (", 1
    ),
    f"""CREATE TABLE IF NOT EXISTS {_NEXT_MESSAGE_IDS} (
        message_id TEXT NOT NULL, recipient_id TEXT NOT NULL, position {{int}} NOT NULL)""",
)
_DROP_NEXT = tuple(
    f"DROP TABLE IF EXISTS {table}" for table in (_NEXT_RECIPIENTS, _NEXT_MESSAGE_IDS)
)

VIEW_TABLES = (
    "bd_recipients",
    "bd_broadcasts",
    "bd_counts",
    "bd_accounts",
    "bd_monthly",
    "bd_message_ids",
    "bd_unmatched",
)

_COLUMNS = ", ".join(ROW_FIELDS)
_RESULT_COLUMNS = ", ".join(RESULT_FIELDS)
T = TypeVar("T")
# Fixed after Scheduled: an upsert of a known row leaves them (and the search text) alone.
_FIXED = frozenset(
    {
        "id",
        "broadcast_id",
        "account_id",
        "position",
        "address",
        "last_name",
        "first_name",
        "company",
        "contact_id",
        "search",
    }
)
_CHANGING = tuple(f for f in ROW_FIELDS if f not in _FIXED)
_UPSERT_ROW = (
    f"INSERT INTO bd_recipients ({_COLUMNS}) VALUES ({', '.join('?' * len(ROW_FIELDS))}) "  # noqa: S608 - fixed names
    "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _CHANGING)
)
_UNACK = "status = 'error' AND acknowledged_at IS NULL"
_DUE_STATUSES = (
    BroadcastStatus.SCHEDULED.value,
    BroadcastStatus.SENDING.value,
    BroadcastStatus.PAUSED.value,
)
# Rows per keyset query of a stream: bigger chunks cost fewer index seeks and
# round trips; 2,000 rows of columns are well under a megabyte.
_STREAM_CHUNK = 2000
# Rows kept from the last batches for the next (a rebuild or a dispatch touches each
# recipient in several batches): valid only while nobody else moved the position.
_CACHE_LIMIT = 100_000
_STATUSES = {s.value: s for s in DeliveryStatus}
_ERROR = DeliveryStatus.ERROR.value
_TIMES = frozenset({"status_updated_at", "acknowledged_at", "due_at", "first_outcome_at"})


class _Converted(dict[Any, Any]):
    """Values converted by ``convert``, remembered: a hit is a plain dict lookup.

    Rows share few distinct times (a dispatch records a batch with one time, an
    acknowledgement of a page too), so most conversions of a batch or a stream
    are lookups; at most ``keep`` are kept.
    """

    def __init__(self, convert: Callable[[Any], Any], keep: int = 256) -> None:
        super().__init__({None: None})
        self._convert = convert
        self._keep = keep

    def __missing__(self, value: Any) -> Any:
        if len(self) > self._keep:
            self.clear()
            self[None] = None
        result = self[value] = self._convert(value)
        return result


_changing_values = operator.itemgetter(*(ROW_FIELDS.index(f) for f in _CHANGING))  # rows are tuples


_insert_order = operator.itemgetter(1, 3)  # (broadcast id, position)


def _summed(
    done: set[UUID], returned: list[tuple[str, str]], spans: dict[str, tuple[UUID, int, int]]
) -> AcknowledgedRows:
    # The rows an UPDATE ... RETURNING acknowledged, summed per broadcast for the counts.
    broadcasts: dict[str, list[int]] = {}
    events = 0
    for rid_hex, bid_hex in returned:
        _, first, last = spans[rid_hex]
        # One event when its first acknowledgement is its last; at least two otherwise
        # (a count that is short only makes the fold look at the batch's events).
        events += 1 if first == last else 2
        totals = broadcasts.get(bid_hex)
        if totals is None:
            broadcasts[bid_hex] = [1, first, last]
        else:
            totals[0] += 1
            if first < totals[1]:  # noqa: PLR1730 - per row: no call to min()
                totals[1] = first
            if last > totals[2]:  # noqa: PLR1730
                totals[2] = last
    return AcknowledgedRows(
        recipients=done,
        events=events,
        broadcasts={uuid_from_hex(b): totals for b, totals in broadcasts.items()},
    )


def _by_position(item: tuple[UUID, Acknowledging]) -> int:
    return item[1].position


def _row_values(r: RecipientRow, t: Callable[[Any], Any]) -> tuple[Any, ...]:
    # A row's column values, in ROW_FIELDS order, for the driver (``t`` converts a time).
    return (
        f"{r.id.int:032x}",  # UUID.hex, without its Python-level property
        f"{r.broadcast_id.int:032x}",
        r.account_id,
        r.position,
        r.address,
        r.last_name,
        r.first_name,
        r.company,
        r.contact_id,
        r.search,
        r.status.value,
        t(r.status_updated_at),
        r.detail_message,
        t(r.acknowledged_at),
        r.reason,
        t(r.due_at),
        r.error_position,
        t(r.first_outcome_at),
        r.error_rank,
        r.version,
    )


class _SqlReplacement:
    """What SqlViewStore.replacing yields: the store's writes into the new tables.

    ``prepare`` turns a batch into the values to write, in the caller's thread, and
    returns the write; with a ``writer`` thread, the write runs there while the caller
    goes on (one pending at most: its error comes out of the next call), else at once.
    """

    def __init__(
        self,
        prepare: Callable[[Sequence[RecipientRow], Sequence[SentMessage]], Callable[[], None]],
        commit: Callable[[Views], None],
        writer: ThreadPoolExecutor | None,
    ) -> None:
        self._prepare = prepare
        self._commit = commit
        self._writer = writer
        self._pending: Future[None] | None = None
        self.committed = False

    def add(self, rows: Sequence[RecipientRow], sent: Sequence[SentMessage]) -> None:
        if self.committed:
            raise RuntimeError("the replacement is committed already")
        write = self._prepare(rows, sent)
        self.wait()
        if self._writer is None:
            write()
        else:
            self._pending = self._writer.submit(write)

    def wait(self) -> None:
        """Wait for the pending write; its error, if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def commit(self, views: Views) -> None:
        if self.committed:
            raise RuntimeError("the replacement is committed already")
        self.wait()
        self._commit(views)
        self.committed = True


class SqlViewStore:
    """A ViewStore in SQL tables: one connection, used under a lock.

    Build it with :meth:`sqlite` or :meth:`postgresql`; both give the same
    tables and the same behaviour.
    """

    def __init__(self, conn: Any, dialect: Dialect, *, read_only: bool = False) -> None:
        self._conn = conn
        self.dialect = dialect
        self._lock = threading.RLock()
        # Keyed by the id's integer: hashed and compared in C (a UUID's __hash__ and
        # __eq__ are Python code, and a rebuild or a bulk acknowledgement looks up
        # tens of thousands of ids per batch).
        self._cache: dict[int, RecipientRow] = {}
        self._cache_position: int | None = None
        self._upsert_row = dialect.sql(_UPSERT_ROW)
        if dialect.json_rows:
            self._insert_next = (
                f"INSERT INTO {_NEXT_RECIPIENTS} ({_COLUMNS}) SELECT "  # noqa: S608 - fixed names
                + ", ".join(f"value->>{i}" for i in range(len(ROW_FIELDS)))
                + " FROM json_each(?)"
            )
            self._insert_next_id = (
                f"INSERT INTO {_NEXT_MESSAGE_IDS} "  # noqa: S608 - fixed names
                "SELECT value->>0, value->>1, value->>2 FROM json_each(?)"
            )
        else:
            self._insert_next = dialect.sql(
                f"INSERT INTO {_NEXT_RECIPIENTS} ({_COLUMNS}) "  # noqa: S608 - fixed names
                f"VALUES ({', '.join('?' * len(ROW_FIELDS))})"
            )
            self._insert_next_id = dialect.sql(f"INSERT INTO {_NEXT_MESSAGE_IDS} VALUES (?,?,?)")  # noqa: S608
        self._updates: dict[tuple[str, ...], str] = {}
        self._lock_tracking = f"SELECT position FROM bd_tracking WHERE id = 1{dialect.lock_row}"  # noqa: S608
        out = dialect.time_out
        statuses = _STATUSES

        def decode(r: Sequence[Any]) -> RecipientRow:
            return row_from_values(
                (
                    uuid_from_hex(r[0]),
                    uuid_from_hex(r[1]),
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    r[7],
                    r[8],
                    r[9],
                    statuses[r[10]],
                    out(r[11]),
                    r[12],
                    out(r[13]),
                    r[14],
                    out(r[15]),
                    r[16],
                    out(r[17]),
                    r[18],
                    r[19],
                )
            )

        self._decode_row: Callable[[Sequence[Any]], RecipientRow] = decode
        with self._lock:
            if not read_only:
                self._create_schema()
            elif self._outdated():
                raise StoreUnavailable(
                    "the store's views were written by an earlier version of broadcast-domain; "
                    "open it read-write once (any command that writes) to rebuild them"
                )

    @classmethod
    def sqlite(cls, path: str) -> SqlViewStore:
        """The views in the SQLite file at ``path`` (or ``:memory:``)."""
        from broadcast_adapters.storage.dialects import connect_sqlite, is_read_only_sqlite

        return cls(connect_sqlite(path), SQLITE, read_only=is_read_only_sqlite(path))

    @classmethod
    def postgresql(
        cls,
        *,
        dbname: str,
        host: str = "localhost",
        port: int | None = None,
        user: str = "",
        password: str = "",
        schema: str = "public",
        connect_timeout: int = 30,
    ) -> SqlViewStore:
        """The views in a PostgreSQL database, in ``schema`` (created if absent)."""
        from broadcast_adapters.storage.dialects import connect_postgres

        conn = connect_postgres(
            dbname=dbname,
            host=host,
            port=port,
            user=user,
            password=password,
            schema=schema,
            connect_timeout=connect_timeout,
        )
        return cls(conn, POSTGRES)

    @classmethod
    def from_url(cls, store: Any) -> SqlViewStore:
        """The store a parsed store URL names (``sqlite``, ``memory`` or ``postgresql``)."""
        if store.kind == "postgresql":
            return cls.postgresql(
                dbname=store.dbname,
                host=store.host,
                port=store.port,
                user=store.user,
                password=store.password,
                schema=store.option("schema", "public") or "public",
                connect_timeout=int(store.option("connect_timeout", "30") or 30),
            )
        return cls.sqlite(store.path if store.kind == "sqlite" else ":memory:")

    def _update_sql(self, columns: tuple[str, ...]) -> str:
        sql = self._updates.get(columns)
        if sql is None:
            sql = self._updates[columns] = self.dialect.sql(
                "UPDATE bd_recipients SET "  # noqa: S608 - fixed column names
                + ", ".join(f"{c} = ?" for c in columns)
                + " WHERE id = ?"
            )
        return sql

    # --- transactions --------------------------------------------------------------------

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self.dialect.sql(sql), params)

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            cur = self._conn.cursor()
            try:
                cur.executemany(sql, rows)
            finally:
                cur.close()

    def _create_schema(self) -> None:
        d = self.dialect
        c = self._conn
        c.execute(d.begin_write)
        try:
            if d.schema_lock:
                c.execute(d.schema_lock)
            if self._outdated():
                # Rows written by an earlier version (a JSON snapshot per recipient):
                # drop the views; the next catch-up refills them from the events.
                for table in VIEW_TABLES:
                    c.execute(f"DROP TABLE IF EXISTS {table}")
                c.execute("DROP TABLE IF EXISTS bd_tracking")
            for statement in _SCHEMA:
                c.execute(self._ddl(statement))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _outdated(self) -> bool:
        try:
            cur = self._conn.execute("SELECT * FROM bd_recipients WHERE 1 = 0")
        except Exception:  # no table yet (the error type is the driver's)
            if self.dialect is POSTGRES:
                # A failed statement aborts the transaction: start it again.
                self._conn.execute("ROLLBACK")
                self._conn.execute(self.dialect.begin_write)
                self._conn.execute(self.dialect.schema_lock)
            return False
        names = [d[0] for d in cur.description or ()]
        return names != list(ROW_FIELDS)

    # --- writing -------------------------------------------------------------------------

    def position(self) -> int:
        with self._lock:
            return int(self._run("SELECT position FROM bd_tracking WHERE id = 1").fetchone()[0])

    @property
    def remembered_rows(self) -> int:
        """How many recipient rows the store holds in memory (at most its cache limit)."""
        with self._lock:
            return len(self._cache)

    def _select_in(self, columns: str, table: str, key: str, keys: Iterable[Any]) -> list[Any]:
        rows: list[Any] = []
        for condition, params in self.dialect.any_of(key, sorted(keys)):
            rows.extend(
                self._run(f"SELECT {columns} FROM {table} WHERE {condition}", params).fetchall()  # noqa: S608 - fixed names
            )
        return rows

    def _load(self, batch: Sequence[tuple[int, DomainEvent]], position: int) -> Views:
        views = Views(position=position)
        needs = Needs.of(batch)
        if self._cache_position != position:
            self._forget()  # another writer moved on: our rows may be stale
        cache = self._cache
        if needs.acknowledged_only and self.dialect.returning:
            self._acknowledge_rows(views, needs)
        if needs.acknowledged_only:
            self._load_acknowledging(views, needs.acknowledged_only)
            held = views.acknowledging
            needs.recipients.difference_update(held)
            needs.broadcasts.update({facts.broadcast_id for facts in held.values()})
        wanted = []
        for rid in needs.recipients:
            hit = cache.get(rid.int)
            if hit is None:
                wanted.append(rid.hex)
            else:
                views.recipients[rid] = hit
        decode = self._decode_row
        for r in self._select_in(_COLUMNS, "bd_recipients", "id", wanted):
            row = decode(r)
            views.recipients[row.id] = row
        needs.add_rows(views)
        out = self.dialect.blob_out
        keys = [b.hex for b in needs.broadcasts]
        for bid, state in self._select_in("broadcast_id, state", "bd_counts", "broadcast_id", keys):
            views.counts[UUID(bid)] = decode_state(out(state), Counts)
        for (state,) in self._select_in("state", "bd_broadcasts", "id", keys):
            b = decode_state(out(state), Broadcast)
            views.broadcasts[b.id] = b
        for (state,) in self._select_in("state", "bd_accounts", "account_id", needs.accounts):
            a = decode_state(out(state), Account)
            views.accounts[a.account_id] = a
        self._load_months(views, months_needed(batch, views))
        return views

    def _acknowledge_rows(self, views: Views, needs: Needs) -> None:
        # Rows the batch only acknowledges that are unacknowledged errors (nearly always
        # all of them): their two columns are set to their last acknowledgement's by one
        # UPDATE per (time, version) and chunk of ids, which returns each row's
        # broadcast; the fold then adds a sum per broadcast (AcknowledgedRows) instead of
        # folding each event. Others (already acknowledged, not an error, not found) are
        # left untouched in `needs.acknowledged_only` for the general paths.
        only = needs.acknowledged_only
        t = _Converted(self.dialect.time_in).__getitem__
        groups: dict[tuple[Any, int], list[str]] = {}
        spans: dict[str, tuple[UUID, int, int]] = {}
        ids: list[str] = []
        last_at: object = None
        last_version = -1
        for rid, (first, last, event) in needs.acknowledgements.items():
            if rid not in only:
                continue
            rid_hex = f"{rid.int:032x}"  # UUID.hex, without its Python-level property
            spans[rid_hex] = (rid, first, last)
            if event.timestamp is not last_at or event.originator_version != last_version:
                # A bulk acknowledgement shares one time object, and mostly one version.
                last_at, last_version = event.timestamp, event.originator_version
                key = (t(last_at), last_version)
                ids = groups.get(key) or groups.setdefault(key, [])
            ids.append(rid_hex)
        returned: list[tuple[str, str]] = []
        for (at, version), ids in groups.items():
            # In the order of the acknowledgements (a worklist's order): the table's pages
            # are visited in order rather than at random.
            for condition, params in self.dialect.any_of("id", ids):
                returned.extend(
                    self._run(
                        f"UPDATE bd_recipients SET acknowledged_at = ?, version = ? "  # noqa: S608
                        f"WHERE {condition} AND {_UNACK} RETURNING id, broadcast_id",
                        [at, version, *params],
                    ).fetchall()
                )
        if not returned:
            return
        if len(returned) == len(spans):
            done = set(only)
            only.clear()
        else:
            done = {spans[rid_hex][0] for rid_hex, _ in returned}
            only.difference_update(done)
        views.acknowledged_rows = _summed(done, returned, spans)
        needs.recipients.difference_update(done)
        needs.broadcasts.update(views.acknowledged_rows.broadcasts)
        cache = self._cache
        if cache:
            pop = cache.pop
            for rid in done:
                pop(rid.int, None)

    def _load_acknowledging(self, views: Views, acks: set[UUID]) -> None:
        # Rows the batch only acknowledges: two facts each (from the cache, or two
        # columns of the table) instead of the whole row, and two columns written back.
        # The cached row goes (it would be stale); a row not found stays with the
        # general path, which refuses an acknowledgement before Scheduled.
        held = views.acknowledging
        cache = self._cache
        pending: dict[str, UUID] = {}
        for rid in acks:
            hit = cache.pop(rid.int, None)
            if hit is None:
                pending[rid.hex] = rid
            else:
                held[rid] = Acknowledging(hit.broadcast_id, hit.unacknowledged_error)
        if not pending:
            return
        broadcasts: dict[str, UUID] = {}
        for rid_hex, bid_hex, status, acknowledged_at in self._select_in(
            "id, broadcast_id, status, acknowledged_at", "bd_recipients", "id", pending
        ):
            bid = broadcasts.get(bid_hex)
            if bid is None:
                bid = broadcasts[bid_hex] = uuid_from_hex(bid_hex)
            unacknowledged = status == _ERROR and acknowledged_at is None
            held[pending[rid_hex]] = Acknowledging(bid, unacknowledged)

    def _load_months(self, views: Views, keys: set[MonthKey]) -> None:
        by_account: dict[str, list[MonthKey]] = {}
        for key in keys:
            by_account.setdefault(key[0], []).append(key)
        for account_id, wanted in by_account.items():
            years = sorted({y for _, y, _ in wanted})
            for condition, params in self.dialect.any_of("year", years):
                for y, m, n in self._run(
                    "SELECT year, month, count FROM bd_monthly "  # noqa: S608 - placeholders only
                    f"WHERE account_id = ? AND {condition}",
                    [account_id, *params],
                ):
                    views.monthly[(account_id, int(y), int(m))] = int(n)

    def _write(self, views: Views, loaded: dict[UUID, RecipientRow]) -> None:
        d = self.dialect
        t = _Converted(d.time_in).__getitem__
        inserts = []
        # Updates grouped by the columns they change: an acknowledgement writes one
        # time and the version, not every column (each written time is formatted,
        # and an unchanged status leaves the status index alone).
        updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        shapes: dict[tuple[bool, ...], tuple[str, ...]] = {}
        changing = _changing_values
        for rid in views.dirty_recipients:
            r = views.recipients[rid]
            before = loaded.get(rid)
            if before is None:
                inserts.append(_row_values(r, t))
                continue
            # The fold copies unchanged values by reference, so `is` finds the changes
            # (compared column by column in C: map, compress).
            now = changing(r)
            flags = tuple(map(is_not, now, changing(before)))
            columns = shapes.get(flags)
            if columns is None:
                columns = shapes[flags] = tuple(compress(_CHANGING, flags))
            if not columns:
                continue
            values = [
                (t(v) if c in _TIMES else v.value if c == "status" else v)
                for c, v in zip(columns, compress(now, flags), strict=True)
            ]
            values.append(rid.hex)
            updates.setdefault(columns, []).append(tuple(values))
        # New rows go in in the order of their recipients' positions: the table's rowids
        # and the position indexes then grow at their ends (appends, not page splits all
        # over), and a later pass in position order (a worklist, an export) reads and
        # writes the table's pages in order.
        inserts.sort(key=_insert_order)
        self._many(self._upsert_row, inserts)
        for columns, rows in updates.items():
            self._many(self._update_sql(columns), rows)
        self._write_acknowledged(views.acknowledging, t)
        upsert = d.sql(
            "INSERT INTO bd_broadcasts VALUES (?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET "
            "status = excluded.status, scheduled_at = excluded.scheduled_at, state = excluded.state"
        )
        self._many(
            upsert,
            [
                (
                    b.id.hex,
                    b.inbox_id,
                    b.status.value,
                    t(b.created_at),
                    t(b.scheduled_at),
                    encode_state(b),
                )
                for b in (views.broadcasts[i] for i in views.dirty_broadcasts)
            ],
        )
        self._many(
            d.sql(
                "INSERT INTO bd_counts VALUES (?,?) "
                "ON CONFLICT (broadcast_id) DO UPDATE SET state = excluded.state"
            ),
            [(bid.hex, encode_state(views.counts[bid])) for bid in views.dirty_counts],
        )
        self._many(
            d.sql(
                "INSERT INTO bd_accounts VALUES (?,?) "
                "ON CONFLICT (account_id) DO UPDATE SET state = excluded.state"
            ),
            [(aid, encode_state(views.accounts[aid])) for aid in views.dirty_accounts],
        )
        self._many(
            d.sql(
                "INSERT INTO bd_monthly VALUES (?,?,?,?) ON CONFLICT (account_id, year, month) "
                "DO UPDATE SET count = excluded.count"
            ),
            [(*key, views.monthly[key]) for key in views.dirty_monthly],
        )
        self._many(
            d.sql(
                "INSERT INTO bd_message_ids VALUES (?,?) "
                "ON CONFLICT (message_id) DO UPDATE SET recipient_id = excluded.recipient_id"
            ),
            # In key order: the batch's ids go into the index's pages in one sweep
            # instead of at random (a rebuild writes one per attempt).
            [(mid, views.message_ids[mid].hex) for mid in sorted(views.dirty_message_ids)],
        )
        # A resolved message is no longer in the fold's working set: its row goes.
        kept = [views.unmatched[u] for u in views.dirty_unmatched if u in views.unmatched]
        gone = [(u.hex,) for u in views.dirty_unmatched if u not in views.unmatched]
        self._many(
            d.sql(
                "INSERT INTO bd_unmatched VALUES (?,?,?) ON CONFLICT (id) DO UPDATE SET "
                "received_at = excluded.received_at, state = excluded.state"
            ),
            [(m.id.hex, t(m.received_at), encode_state(m)) for m in kept],
        )
        self._many(d.sql("DELETE FROM bd_unmatched WHERE id = ?"), gone)

    def _write_acknowledged(self, held: dict[UUID, Acknowledging], t: Callable[[Any], Any]) -> None:
        # The two columns of the rows a batch only acknowledged: one UPDATE per
        # (time, version) for a chunk of ids rather than one per row (a bulk
        # acknowledgement shares both), the ids in the order they were acknowledged,
        # which is the order of the worklist: the table's pages are then visited in
        # order instead of at random.
        groups: dict[tuple[Any, int], list[str]] = {}
        for rid, facts in sorted(held.items(), key=_by_position):
            if facts.version:
                key = (t(facts.acknowledged_at), facts.version)
                ids = groups.get(key)
                if ids is None:
                    ids = groups[key] = []
                ids.append(rid.hex)
        for (at, version), ids in groups.items():
            for condition, params in self.dialect.any_of("id", ids):
                self._run(
                    f"UPDATE bd_recipients SET acknowledged_at = ?, version = ? WHERE {condition}",  # noqa: S608
                    [at, version, *params],
                )

    def _write_at(self, expected_position: int, fold: Callable[[], Views | None]) -> Views | None:
        # One writing transaction at the expected tracking position: ``fold`` writes the
        # rows it changes and returns their views (None: roll back, nothing applied);
        # the new position goes in with them. The views, or None when the position had
        # moved or ``fold`` declined. On an error nothing is kept, remembered rows
        # included.
        with self._lock:
            c = self._conn
            c.execute(self.dialect.begin_write)
            try:
                row = self._run(self._lock_tracking).fetchone()
                views = None if row is None or int(row[0]) != expected_position else fold()
                if views is None:
                    c.execute("ROLLBACK")
                    return None
                self._run("UPDATE bd_tracking SET position = ? WHERE id = 1", (views.position,))
                c.execute("COMMIT")
            except BaseException:
                self._forget()
                c.execute("ROLLBACK")
                raise
            return views

    def apply(self, batch: Sequence[tuple[int, DomainEvent]], *, expected_position: int) -> bool:
        if not batch:
            return True

        def fold() -> Views:
            views = self._load(batch, expected_position)
            loaded = dict(views.recipients)
            project_all(views, batch)
            self._write(views, loaded)
            return views

        with self._lock:
            views = self._write_at(expected_position, fold)
            if views is None:
                return False
            self._remember(views)
            return True

    def apply_acknowledgements(self, bulk: BulkAcknowledgement, *, expected_position: int) -> bool:
        def fold() -> Views | None:
            if not self._acknowledge_bulk(bulk):
                return None
            if self._cache_position != expected_position:
                self._forget()  # another writer moved on: our rows may be stale
            views = Views(position=expected_position)
            bid = bulk.broadcast_id
            for _, state in self._select_in(
                "broadcast_id, state", "bd_counts", "broadcast_id", [bid.hex]
            ):
                views.counts[bid] = decode_state(self.dialect.blob_out(state), Counts)
            project_bulk_acknowledgement(views, bulk)
            self._write(views, {})
            return views

        with self._lock:
            views = self._write_at(expected_position, fold)
            if views is None:
                return False
            cache = self._cache
            if cache:
                pop = cache.pop
                for rid in bulk.recipients:
                    pop(rid.int, None)  # stale now
            self._remember(views)
            return True

    def _acknowledge_bulk(self, bulk: BulkAcknowledgement) -> bool:
        # Each row's two columns, by one UPDATE per version and chunk of ids that only
        # takes rows still unacknowledged errors of the broadcast at the version before;
        # all of them or False (the caller rolls back and the events are folded instead).
        by_version: dict[int, list[str]] = {}
        for rid, version in zip(bulk.recipients, bulk.versions, strict=True):
            ids = by_version.get(version)
            if ids is None:
                ids = by_version[version] = []
            ids.append(f"{rid.int:032x}")  # UUID.hex, without its property call
        at = self.dialect.time_in(bulk.at)
        bid = bulk.broadcast_id.hex
        updated = 0
        for version, ids in by_version.items():
            # In the order given (a worklist's): the table's pages are visited in order.
            # The broadcast is compared as an expression, not a column, so that the
            # rows are found by id: with `broadcast_id = ?` SQLite's planner walks the
            # partial index of the broadcast's unacknowledged errors for every chunk.
            for condition, params in self.dialect.any_of("id", ids):
                updated += self._run(
                    f"UPDATE bd_recipients SET acknowledged_at = ?, version = ? "  # noqa: S608
                    f"WHERE {condition} AND broadcast_id || '' = ? AND {_UNACK} "
                    "AND version = ?",
                    [at, version, *params, bid, version - 1],
                ).rowcount
        return updated == len(bulk.recipients)

    def _remember(self, views: Views) -> None:
        cache = self._cache
        rows = views.recipients
        for rid in views.dirty_recipients:
            cache[rid.int] = rows[rid]
        excess = len(cache) - _CACHE_LIMIT
        if excess > 0:
            # The rows remembered first go first (a dict keeps insertion order): the
            # next batches come back to recent recipients (the next events of the
            # broadcast being sent or replayed), so dropping everything at once would
            # send the next batch to the table for rows it was about to reuse.
            for key in list(islice(cache, excess)):
                del cache[key]
        self._cache_position = views.position

    def _forget(self) -> None:
        self._cache.clear()
        self._cache_position = None

    def reset(self) -> None:
        def work(c: Any) -> None:
            self._run(self._lock_tracking)
            for table in VIEW_TABLES:
                c.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            c.execute("UPDATE bd_tracking SET position = 0 WHERE id = 1")

        with self._lock:
            self._forget()
            self._in_transaction(work)

    @contextlib.contextmanager
    def replacing(self) -> Iterator[_SqlReplacement]:
        # See ViewStore.replacing: the rows and Message-IDs go into tables of their own
        # (no secondary index: those are made once, from the whole table, at the end);
        # the commit swaps them in. What an earlier replacement left (a crash) goes first.
        # The dialect may set its connection up for a bulk write meanwhile (SQLite
        # checkpoints less often).
        self._run_schema([*_DROP_NEXT, *(self._ddl(statement) for statement in _CREATE_NEXT)])
        with self._lock:
            for statement in self.dialect.replay_begin:
                self._conn.execute(statement)
        # SQLite writes a batch by one statement that runs outside the interpreter's
        # lock: in a thread of its own, while the caller reads and folds the next batch.
        writer = ThreadPoolExecutor(1, "view-writer") if self.dialect.json_rows else None
        target = _SqlReplacement(self._prepare_next, self._commit_next, writer)
        try:
            yield target
        finally:
            try:
                try:
                    target.wait()
                finally:
                    if writer is not None:
                        writer.shutdown()
                    if not target.committed:
                        self._run_schema(_DROP_NEXT)
            finally:
                with self._lock:
                    for statement in self.dialect.replay_end:
                        self._conn.execute(statement)

    def _prepare_next(
        self, rows: Sequence[RecipientRow], sent: Sequence[SentMessage]
    ) -> Callable[[], None]:
        t = _Converted(self.dialect.time_in).__getitem__
        values = [_row_values(row, t) for row in rows]
        ids = [(mid, f"{rid.int:032x}", p) for mid, rid, p in sent]
        if self.dialect.json_rows:
            # One statement per table: SQLite reads the rows out of one JSON array
            # without the interpreter's lock, where executemany takes it back per row.
            values_json, ids_json = orjson.dumps(values), orjson.dumps(ids)

            def write_json() -> None:
                def work(c: Any) -> None:
                    c.execute(self._insert_next, (values_json,))
                    c.execute(self._insert_next_id, (ids_json,))

                self._in_transaction(work)

            return write_json

        def write_rows() -> None:
            def work(_: Any) -> None:
                self._many(self._insert_next, values)
                self._many(self._insert_next_id, ids)

            self._in_transaction(work)

        return write_rows

    def _in_transaction(self, work: Callable[[Any], object]) -> None:
        with self._lock:
            c = self._conn
            c.execute(self.dialect.begin_write)
            try:
                work(c)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def _commit_next(self, views: Views) -> None:
        d = self.dialect

        def work(c: Any) -> None:
            self._run(self._lock_tracking)
            for table in VIEW_TABLES:
                if table != "bd_recipients":
                    c.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            c.execute("DROP TABLE bd_recipients")
            c.execute(f"ALTER TABLE {_NEXT_RECIPIENTS} RENAME TO bd_recipients")
            for statement in d.renamed_key:
                c.execute(statement.format(old=_NEXT_RECIPIENTS, new="bd_recipients"))
            for statement in _RECIPIENT_INDEXES:
                c.execute(self._ddl(statement))
            # Appended as they came: here, of one id's Sent events the latest, in id
            # order (the table's key grows at its end).
            c.execute(
                "INSERT INTO bd_message_ids (message_id, recipient_id) "  # noqa: S608
                "SELECT message_id, recipient_id FROM (SELECT message_id, recipient_id, "
                "row_number() OVER (PARTITION BY message_id ORDER BY position DESC) AS n "
                f"FROM {_NEXT_MESSAGE_IDS}) AS latest WHERE n = 1 ORDER BY message_id"
            )
            c.execute(f"DROP TABLE {_NEXT_MESSAGE_IDS}")
            self._write(views, {})
            self._run("UPDATE bd_tracking SET position = ? WHERE id = 1", (views.position,))

        with self._lock:
            try:
                self._in_transaction(work)
            finally:
                self._forget()

    def _ddl(self, statement: str) -> str:
        d = self.dialect
        return statement.format(int=d.int_type, time=d.time_type, blob=d.blob_type)

    def _run_schema(self, statements: Iterable[str]) -> None:
        def work(c: Any) -> None:
            for statement in statements:
                c.execute(statement)

        self._in_transaction(work)

    def dump(self) -> Views:
        with self._lock:
            c = self._conn
            out = self.dialect.blob_out
            # One snapshot for every table, so the dump is consistent with its position.
            c.execute(self.dialect.begin_read)
            try:
                row = c.execute("SELECT position FROM bd_tracking WHERE id = 1").fetchone()
                views = Views(position=int(row[0]) if row else 0)
                decode = self._decode_row
                for r in c.execute(f"SELECT {_COLUMNS} FROM bd_recipients"):  # noqa: S608
                    recipient = decode(r)
                    views.recipients[recipient.id] = recipient
                for (state,) in c.execute("SELECT state FROM bd_broadcasts"):
                    b = decode_state(out(state), Broadcast)
                    views.broadcasts[b.id] = b
                for bid, state in c.execute("SELECT broadcast_id, state FROM bd_counts"):
                    views.counts[UUID(bid)] = decode_state(out(state), Counts)
                for (state,) in c.execute("SELECT state FROM bd_accounts"):
                    a = decode_state(out(state), Account)
                    views.accounts[a.account_id] = a
                for a, y, m, n in c.execute(
                    "SELECT account_id, year, month, count FROM bd_monthly"
                ):
                    views.monthly[(a, int(y), int(m))] = int(n)
                for mid, rid in c.execute("SELECT message_id, recipient_id FROM bd_message_ids"):
                    views.message_ids[mid] = uuid_from_hex(rid)
                for (state,) in c.execute("SELECT state FROM bd_unmatched"):
                    m = decode_state(out(state), UnmatchedMessage)
                    views.unmatched[m.id] = m
            finally:
                c.execute("COMMIT")
            return views

    # --- queries -------------------------------------------------------------------------

    def _one(self, sql: str, params: Iterable[Any]) -> Any:
        with self._lock:
            return self._run(sql, tuple(params)).fetchone()

    def _all(self, sql: str, params: Iterable[Any]) -> list[Any]:
        with self._lock:
            return list(self._run(sql, tuple(params)).fetchall())

    def _state(self, sql: str, key: Any, kind: type[Any]) -> Any:
        row = self._one(sql, (key,))
        return decode_state(self.dialect.blob_out(row[0]), kind) if row else None

    def account(self, account_id: str) -> Account | None:
        found: Account | None = self._state(
            "SELECT state FROM bd_accounts WHERE account_id = ?", account_id, Account
        )
        return found

    def broadcast(self, broadcast_id: UUID) -> Broadcast | None:
        found: Broadcast | None = self._state(
            "SELECT state FROM bd_broadcasts WHERE id = ?", broadcast_id.hex, Broadcast
        )
        return found

    def counts(self, broadcast_id: UUID) -> Counts:
        found: Counts | None = self._state(
            "SELECT state FROM bd_counts WHERE broadcast_id = ?", broadcast_id.hex, Counts
        )
        return found if found is not None else Counts()

    def recipient(self, recipient_id: UUID) -> RecipientRow | None:
        row = self._one(
            f"SELECT {_COLUMNS} FROM bd_recipients WHERE id = ?",  # noqa: S608 - fixed names
            (recipient_id.hex,),
        )
        return self._decode_row(row) if row else None

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
            condition, values = next(
                self.dialect.any_of("status", sorted(s.value for s in statuses))
            )
            where += " AND " + condition
            params.extend(values)
        total = self._one(f"SELECT COUNT(*) FROM bd_broadcasts WHERE {where}", params)[0]  # noqa: S608
        rows = self._all(
            f"SELECT state FROM bd_broadcasts WHERE {where} "  # noqa: S608 - placeholders only
            "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        out = self.dialect.blob_out
        return [decode_state(out(r[0]), Broadcast) for r in rows], int(total)

    def due_broadcasts(self, now: datetime) -> list[Broadcast]:
        condition, values = next(self.dialect.any_of("status", _DUE_STATUSES))
        rows = self._all(
            f"SELECT state FROM bd_broadcasts WHERE {condition} "  # noqa: S608
            "AND scheduled_at <= ? ORDER BY scheduled_at, created_at, id",
            [*values, self.dialect.time_in(now)],
        )
        out = self.dialect.blob_out
        return [decode_state(out(r[0]), Broadcast) for r in rows]

    def due_recipients(
        self, broadcast_id: UUID, now: datetime, limit: int, *, after: int = -1
    ) -> list[RecipientRow]:
        bid = broadcast_id.hex
        rows = self._all(
            f"SELECT {_COLUMNS} FROM bd_recipients WHERE broadcast_id = ? "  # noqa: S608
            "AND status = 'scheduled' AND position > ? ORDER BY position LIMIT ?",
            (bid, after, limit),
        )
        # The first `limit` by position of the union is within the first `limit` of each part;
        # two index-ordered queries avoid scanning the rows already sent.
        rows += self._all(
            f"SELECT {_COLUMNS} FROM bd_recipients WHERE broadcast_id = ? "  # noqa: S608
            "AND status = 'sending' AND due_at <= ? AND position > ? ORDER BY position LIMIT ?",
            (bid, self.dialect.time_in(now), after, limit),
        )
        found = [self._decode_row(r) for r in rows]
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
    ) -> tuple[list[RecipientRow], int]:
        where = "broadcast_id = ?"
        params: list[Any] = [broadcast_id.hex]
        if status is not None:
            where += " AND status = ?"
            params.append(status.value)
        if reason is not None:
            where += " AND reason = ?"
            params.append(reason)
        if keyword:
            where += f" AND {self.dialect.find}(search, ?) > 0"
            params.append(keyword)
        total = self._one(f"SELECT COUNT(*) FROM bd_recipients WHERE {where}", params)[0]  # noqa: S608
        rows = self._all(
            f"SELECT {_COLUMNS} FROM bd_recipients WHERE {where} "  # noqa: S608 - placeholders only
            "ORDER BY position LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [self._decode_row(r) for r in rows], int(total)

    def _stream(
        self,
        columns: str,
        where: str,
        params: Sequence[Any],
        decode: Callable[[Sequence[Any]], T],
    ) -> Iterator[T]:
        # Keyset pagination on the position (the first column selected): no cursor,
        # lock or transaction is held between chunks.
        sql = (
            f"SELECT position, {columns} FROM bd_recipients WHERE {where} "  # noqa: S608
            "AND position > ? ORDER BY position LIMIT ?"
        )
        last = -1
        while True:
            rows = self._all(sql, [*params, last, _STREAM_CHUNK])
            if not rows:
                return
            last = rows[-1][0]
            # map runs the loop in C: a per-row generator step costs as much as the decode.
            yield from map(decode, rows)
            # Freed before the next chunk is fetched: one chunk in memory at a time.
            del rows

    def iter_recipients(self, broadcast_id: UUID) -> Iterator[RecipientRow]:
        decode = self._decode_row
        return self._stream(
            _COLUMNS, "broadcast_id = ?", [broadcast_id.hex], lambda r: decode(r[1:])
        )

    def iter_result_cells(
        self, broadcast_id: UUID, *, unacknowledged_as_of: int | None = None
    ) -> Iterator[ResultCells]:
        times = _Converted(self.dialect.time_out)
        statuses = _STATUSES

        def decode(r: Sequence[Any]) -> ResultCells:
            return (statuses[r[1]], times[r[2]], r[3], r[4], r[5], r[6], r[7], times[r[8]])

        if unacknowledged_as_of is None:
            return self._stream(_RESULT_COLUMNS, "broadcast_id = ?", [broadcast_id.hex], decode)
        return self._stream(
            _RESULT_COLUMNS,
            f"broadcast_id = ? AND {_UNACK} AND error_position <= ?",
            [broadcast_id.hex, unacknowledged_as_of],
            decode,
        )

    def error_page(
        self, broadcast_id: UUID, *, as_of: int, offset: int, limit: int
    ) -> tuple[list[RecipientRow], int]:
        params = (broadcast_id.hex, as_of)
        where = f"broadcast_id = ? AND {_UNACK} AND error_position <= ?"
        total = self._one(f"SELECT COUNT(*) FROM bd_recipients WHERE {where}", params)[0]  # noqa: S608
        rows = self._all(
            f"SELECT {_COLUMNS} FROM bd_recipients WHERE {where} "  # noqa: S608 - placeholders only
            "ORDER BY position LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [self._decode_row(r) for r in rows], int(total)

    def iter_unacknowledged_versions(
        self, broadcast_id: UUID, as_of: int
    ) -> Iterator[tuple[UUID, int]]:
        return self._stream(
            "id, version",
            f"broadcast_id = ? AND {_UNACK} AND error_position <= ?",
            [broadcast_id.hex, as_of],
            lambda r: (uuid_from_hex(r[1]), int(r[2])),
        )

    def iter_unacknowledged(self, broadcast_id: UUID, as_of: int) -> Iterator[RecipientRow]:
        decode = self._decode_row
        return self._stream(
            _COLUMNS,
            f"broadcast_id = ? AND {_UNACK} AND error_position <= ?",
            [broadcast_id.hex, as_of],
            lambda r: decode(r[1:]),
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
        out = self.dialect.blob_out
        return [decode_state(out(r[0]), UnmatchedMessage) for r in rows], int(total)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
