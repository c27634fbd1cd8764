"""The event store: an eventsourcing Application (POPO, SQLite or PostgreSQL) with our mapper.

This module and ``codec`` are the only places that import eventsourcing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from uuid import UUID

import attrs
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Mapper, RecordConflictError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from broadcast_domain.codec import EVENT_TYPES, AttrsMapper, uuid_from_hex
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.errors import InvalidInput, StoreUnavailable

__all__ = [
    "GET_MANY_CHUNK",
    "POSTGRES_OPTIONS",
    "BatchSQLiteRecorder",
    "EventLog",
    "StoreUrl",
    "VersionConflict",
    "parse_store_url",
]

GET_MANY_CHUNK = 500
"""Ids per query of :meth:`EventLog.get_many` (under SQLite's bound-parameter limit)."""


class VersionConflict(Exception):
    """Another writer recorded an event at the same aggregate version first."""


@attrs.frozen
class StoreUrl:
    """A parsed store URL: ``memory://``, ``sqlite:///path`` or ``postgresql://...``."""

    kind: str
    url: str
    path: str = ""
    host: str = ""
    port: int | None = None
    user: str = ""
    password: str = ""
    dbname: str = ""
    #: Extra settings from the URL's query string (PostgreSQL: schema, pool_size ...).
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str, default: str = "") -> str:
        """The value of a query-string setting, or ``default``."""
        for key, value in self.options:
            if key == name:
                return value
        return default


#: Query-string settings a postgresql:// URL may carry, and what each does.
POSTGRES_OPTIONS = {
    "host": "a host name, or the directory of the server's unix socket",
    "port": "the TCP port (or the socket file's number), 5432 by default",
    "schema": "the schema holding the events and the projections (public by default)",
    "pool_size": "connections each process keeps open (2 by default)",
    "max_overflow": "extra connections a busy process may open (8 by default)",
    "connect_timeout": "seconds to wait for a connection (30 by default)",
    "lock_timeout": "seconds a write waits for the events table lock (0: no limit)",
}
_INT_OPTIONS = ("port", "pool_size", "max_overflow", "connect_timeout", "lock_timeout")


def parse_store_url(url: str) -> StoreUrl:
    """Parse and check a store URL; InvalidInput says what is accepted."""
    if not isinstance(url, str) or "://" not in url:
        raise InvalidInput(
            f"store URL {url!r} is not understood; use 'memory://', 'sqlite:///path/to/file.db' "
            "or 'postgresql://user:password@host:port/dbname'",
            field="url",
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        return StoreUrl(kind="memory", url=url)
    if scheme == "sqlite":
        path = unquote(url.split("://", 1)[1])
        # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy spells them.
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise InvalidInput("sqlite URL needs a file: 'sqlite:///broadcasts.db'", field="url")
        return StoreUrl(kind="sqlite", url=url, path=path)
    if scheme in ("postgresql", "postgres"):
        return _parse_postgres_url(url)
    raise InvalidInput(
        f"store URL scheme {scheme!r} is not supported; use memory://, sqlite:/// or postgresql://",
        field="url",
    )


def _parse_postgres_url(url: str) -> StoreUrl:
    # urlsplit().hostname lower-cases, which would break a socket directory path,
    # so the network location is split by hand.
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, port_text = hostport, ""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port_text = rest.lstrip(":")
    elif ":" in hostport:
        host, _, port_text = hostport.rpartition(":")
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in POSTGRES_OPTIONS:
            raise InvalidInput(
                f"postgresql URL setting {key!r} is not understood; known settings: "
                + ", ".join(sorted(POSTGRES_OPTIONS)),
                field="url",
            )
        options[key] = value
    host = options.pop("host", "") or unquote(host)
    port_text = options.pop("port", "") or port_text
    for key, value in [("port", port_text), *options.items()]:
        if key in _INT_OPTIONS and value and not (value.isdigit() and int(value) < 2**31):
            raise InvalidInput(
                f"postgresql URL setting {key}={value!r} must be a non-negative whole number",
                field="url",
            )
    schema = options.get("schema", "")
    if schema and not (schema.isidentifier() and len(schema) <= 63):
        raise InvalidInput(
            f"postgresql URL schema {schema!r} must be a plain identifier (letters, digits, _)",
            field="url",
        )
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise InvalidInput(
            "postgresql URL needs a database name: 'postgresql://user:password@host:5432/dbname'",
            field="url",
        )
    return StoreUrl(
        kind="postgresql",
        url=url,
        host=host,
        port=int(port_text) if port_text else None,
        user=unquote(user),
        password=unquote(password),
        dbname=dbname,
        options=tuple(sorted(options.items())),
    )


def _topics_of(kinds: tuple[type[DomainEvent], ...]) -> list[str]:
    return sorted(topic for topic, cls in EVENT_TYPES.items() if issubclass(cls, kinds))


def _uuid(oid: Any) -> UUID:
    return oid if isinstance(oid, UUID) else uuid_from_hex(oid)


def _postgres_rows(
    recorder: Any, where: str, params: tuple[Any, ...]
) -> list[tuple[int, Any, int, str, bytes]]:
    # (position, originator id, version, topic, state) rows of the events table
    # matching ``where`` (which ends with the ORDER BY and LIMIT).
    from psycopg.sql import SQL, Identifier

    query = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{} "
    ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(query + SQL(where), params)
        return [
            (
                r["notification_id"],
                r["originator_id"],
                r["originator_version"],
                r["topic"],
                bytes(r["state"]),
            )
            for r in curs.fetchall()
        ]


def _postgres_by_aggregate(
    recorder: Any, topics: list[str], upto: int, chunk: int
) -> Iterator[list[Any]]:
    # Through the primary key (originator id, version), a chunk after another.
    rows = _postgres_rows(
        recorder,
        "WHERE notification_id <= %s AND topic = ANY(%s) "
        "ORDER BY originator_id, originator_version LIMIT %s",
        (upto, topics, chunk),
    )
    while rows:
        yield rows
        rows = _postgres_rows(
            recorder,
            "WHERE notification_id <= %s AND topic = ANY(%s) "
            "AND (originator_id, originator_version) > (%s, %s) "
            "ORDER BY originator_id, originator_version LIMIT %s",
            (upto, topics, rows[-1][1], rows[-1][2], chunk),
        )


class _App(Application[UUID]):
    """The eventsourcing application holding every broadcast, recipient and account event."""

    name = "broadcasts"

    def construct_mapper(self) -> Mapper[UUID]:
        return AttrsMapper()


class BatchSQLiteRecorder(SQLiteApplicationRecorder):
    """eventsourcing's SQLite application recorder, plus one ``executemany`` write.

    The inherited ``insert_events`` inserts row by row to collect each row's
    notification id; :meth:`insert_rows` is for callers that do not need them
    (the event log never does) and writes a whole batch with one statement in one
    transaction. Rowids are still assigned in order, so positions are unchanged.
    """

    def insert_rows(self, rows: Sequence[tuple[str, int, str, bytes]]) -> range:
        """Insert ``(originator_id hex, version, topic, state)`` rows atomically; their positions.

        The transaction holds the file's write lock, so the rows take the next
        rowids in order: the positions are the last ``len(rows)`` up to the largest.
        """
        with self.datastore.transaction(commit=True) as c:
            c.executemany(self.insert_events_statement, rows)
            c.execute(f"SELECT max(rowid) FROM {self.events_table_name}")  # noqa: S608
            last = int(c.fetchone()[0] or 0)
        return range(last - len(rows) + 1, last + 1)

    def select_rows(
        self, after: int, limit: int, *, upto: int | None = None, excluding: Sequence[str] = ()
    ) -> list[Any]:
        """Up to ``limit`` (position, originator id, version, topic, state) rows after ``after``
        (and up to ``upto``, of any topic but ``excluding``, when given), by position.

        What ``select_notifications`` reads, without a ``Notification`` and a
        ``UUID`` built per row (the caller decodes the row once, as it needs it).
        """
        where = "rowid > ?"
        params: list[Any] = [after]
        if upto is not None:
            where += " AND rowid <= ?"
            params.append(upto)
        if excluding:
            where += f" AND topic NOT IN ({','.join('?' * len(excluding))})"
            params.extend(excluding)
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"{self._select} WHERE {where} ORDER BY rowid LIMIT ?", [*params, limit])
            rows: list[Any] = c.fetchall()  # sqlite3.Row: indexed and unpacked like a tuple
            return rows

    def rows_by_aggregate(
        self, topics: Sequence[str], upto: int, chunk: int
    ) -> Iterator[list[Any]]:
        """The rows of ``topics`` up to position ``upto`` by (originator id, version), in
        chunks of up to ``chunk``.

        One query: the table is scanned in position order (sequential pages) and
        sorted by SQLite, which spills to temporary files beyond its cache, instead
        of visiting the rows through the key's index (a random page per row).
        """
        statement = (
            f"{self._select} NOT INDEXED WHERE rowid <= ? "
            f"AND topic IN ({','.join('?' * len(topics))}) "
            "ORDER BY originator_id, originator_version"
        )
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # plain tuples: cheaper to make than sqlite3.Row
            c.execute(statement, [upto, *topics])
            while rows := cursor.fetchmany(chunk):
                yield rows

    @property
    def _select(self) -> str:
        return (
            "SELECT rowid, originator_id, originator_version, topic, state "  # noqa: S608 - fixed names
            f"FROM {self.events_table_name}"
        )


_BATCH_RECORDER_TOPIC = f"{__name__}:{BatchSQLiteRecorder.__qualname__}"


def _env_for(store: StoreUrl) -> dict[str, str]:
    if store.kind == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if store.kind == "sqlite":
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": store.path,
            "SQLITE_LOCK_TIMEOUT": "60",
            "APPLICATION_RECORDER_TOPIC": _BATCH_RECORDER_TOPIC,
        }
    # Prefixed with the application's name, so that stray BROADCASTS_POSTGRES_*
    # variables in the environment cannot point the URL somewhere else.
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": store.dbname,
        "POSTGRES_HOST": store.host or "localhost",
        "POSTGRES_PORT": str(store.port or 5432),
        "POSTGRES_USER": store.user,
        "POSTGRES_PASSWORD": store.password,
        "POSTGRES_SCHEMA": store.option("schema", "public"),
        "POSTGRES_POOL_SIZE": store.option("pool_size", "2"),
        "POSTGRES_MAX_OVERFLOW": store.option("max_overflow", "8"),
        "POSTGRES_CONNECT_TIMEOUT": store.option("connect_timeout", "30"),
        "POSTGRES_LOCK_TIMEOUT": store.option("lock_timeout", "0"),
        # Created below under an advisory lock, so two processes opening a fresh
        # database at once do not race on CREATE TABLE / CREATE TYPE.
        "CREATE_TABLE": "no",
    }
    prefix = _App.name.upper() + "_"
    return {prefix + key: value for key, value in env.items()}


#: The advisory lock key that serialises schema creation (events and projections).
SCHEMA_LOCK_KEY = 0x62645F736368  # "bd_sch"


def _create_postgres_tables(app: Application[UUID], schema: str) -> None:
    recorder: Any = app.recorder
    datastore = recorder.datastore
    # Hold a session lock on one pooled connection while create_table() uses
    # another: the pool keeps at least two (pool_size + max_overflow).
    with datastore.get_connection() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        try:
            if schema != "public":
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            recorder.create_table()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))


class EventLog:
    """Append events, read an aggregate's events, read the whole sequence by position."""

    def __init__(self, store: StoreUrl, env: dict[str, str] | None = None) -> None:
        self.store = store
        self.app = _App(env={**_env_for(store), **(env or {})})
        if store.kind == "postgresql":
            try:
                _create_postgres_tables(self.app, store.option("schema", "public"))
            except Exception as e:
                self.app.close()
                raise StoreUnavailable(
                    f"cannot open the PostgreSQL store {store.dbname!r} on "
                    f"{store.host or 'localhost'}:{store.port or 5432}: {e}"
                ) from e
        mapper = self.app.mapper
        if not isinstance(mapper, AttrsMapper):  # pragma: no cover - construct_mapper guarantees it
            raise TypeError("the event store must use AttrsMapper")
        self.mapper: AttrsMapper = mapper
        self.recorder = self.app.recorder
        # The batch path needs our recorder; another store (or an env override) keeps
        # eventsourcing's own insert_events.
        recorder = self.recorder
        batch = recorder if isinstance(recorder, BatchSQLiteRecorder) else None
        self._insert_rows = batch.insert_rows if batch is not None else None
        self._select_rows = batch.select_rows if batch is not None else None
        self._rows_by_aggregate = batch.rows_by_aggregate if batch is not None else None

    def put(self, events: Sequence[DomainEvent]) -> Sequence[int] | None:
        """Append events atomically; VersionConflict when any aggregate version is taken.

        Returns the events' positions where the store tells them for free (SQLite),
        else None.
        """
        if not events:
            return None
        try:
            if self._insert_rows is not None:
                return self._insert_rows(self.mapper.to_rows(events))
            if self.store.kind == "postgresql":
                self._insert_postgres([self.mapper.to_stored_event(e) for e in events])
            else:
                self.recorder.insert_events([self.mapper.to_stored_event(e) for e in events])
        except (IntegrityError, RecordConflictError) as e:
            raise VersionConflict(str(e)) from e
        return None

    def put_rows(self, rows: Sequence[tuple[str, int, str, bytes]]) -> Sequence[int] | None:
        """Append rows the mapper already encoded (``AttrsMapper.to_row``'s shape) atomically.

        For writers that encode without building event objects (scheduling a
        large broadcast, a bulk acknowledgement); VersionConflict as :meth:`put`,
        and the positions as :meth:`put` returns them.
        """
        if not rows:
            return None
        try:
            if self._insert_rows is not None:
                return self._insert_rows(rows)
            stored = [
                StoredEvent(
                    originator_id=UUID(hex=oid),
                    originator_version=version,
                    topic=topic,
                    state=state,
                )
                for oid, version, topic, state in rows
            ]
            if self.store.kind == "postgresql":
                self._insert_postgres(stored)
            else:
                self.recorder.insert_events(stored)
        except (IntegrityError, RecordConflictError) as e:
            raise VersionConflict(str(e)) from e
        return None

    def _insert_postgres(self, stored: Sequence[Any]) -> None:
        """eventsourcing's PostgreSQL write, as one statement over arrays.

        Same table lock and NOTIFY as ``PostgresApplicationRecorder.insert_events``
        (so commit order stays notification order), but one INSERT ... SELECT FROM
        unnest() instead of a pipelined executemany: with a few thousand events
        the pipeline deadlocks on its RETURNING rows (the server blocks writing
        results the client is not yet reading), and one statement is faster too.
        """
        from psycopg.sql import SQL, Identifier

        recorder: Any = self.recorder
        table = SQL("{}.{}").format(
            Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
        )
        insert = SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])"
        ).format(table)
        columns = (
            [s.originator_id for s in stored],
            [s.originator_version for s in stored],
            [s.topic for s in stored],
            [s.state for s in stored],
        )
        with recorder.datastore.get_connection() as conn, conn.transaction():
            for statement in recorder.lock_table_statements:
                conn.execute(statement)
            conn.execute(SQL("NOTIFY {}").format(Identifier(recorder.channel_name)))
            conn.execute(insert, columns)

    def get(self, aggregate_id: UUID) -> list[DomainEvent]:
        """One aggregate's events, oldest first."""
        decode = self.mapper.decode
        return [
            decode(s.topic, s.originator_id, s.originator_version, s.state)
            for s in self.recorder.select_events(aggregate_id)
        ]

    def get_many(self, aggregate_ids: Iterable[UUID]) -> dict[UUID, list[DomainEvent]]:
        """Several aggregates' events, each oldest first, in one query per chunk of ids.

        An id with no events is absent from the result. One round trip per
        :data:`GET_MANY_CHUNK` ids instead of one per aggregate: what a batch of
        claims or reports needs to decide on.
        """
        ids = list(dict.fromkeys(aggregate_ids))
        found: dict[UUID, list[DomainEvent]] = {}
        decode = self.mapper.decode
        for start in range(0, len(ids), GET_MANY_CHUNK):
            chunk = ids[start : start + GET_MANY_CHUNK]
            for oid, version, topic, state in self._select_many(chunk):
                uid = oid if isinstance(oid, UUID) else uuid_from_hex(oid)
                found.setdefault(uid, []).append(decode(topic, uid, version, state))
        return found

    def _select_many(self, ids: Sequence[UUID]) -> Iterable[tuple[Any, int, str, bytes]]:
        """(originator id, version, topic, state) rows of ``ids``, by id then version."""
        recorder: Any = self.recorder
        if self.store.kind == "sqlite":
            marks = ",".join("?" * len(ids))
            # Only the table name and the "?" marks are formatted; the ids are bound.
            statement = (
                "SELECT originator_id, originator_version, topic, state "  # noqa: S608
                f"FROM {recorder.events_table_name} WHERE originator_id IN ({marks}) "
                "ORDER BY originator_id, originator_version"
            )
            with recorder.datastore.transaction(commit=False) as c:
                c.execute(statement, [i.hex for i in ids])
                return [tuple(row) for row in c.fetchall()]
        if self.store.kind == "postgresql":
            from psycopg.sql import SQL, Identifier

            query = SQL(
                "SELECT originator_id, originator_version, topic, state FROM {}.{} "
                "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
            ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
            with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(query, (list(ids),))
                return [
                    (r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
                    for r in curs.fetchall()
                ]
        return [
            (s.originator_id, s.originator_version, s.topic, s.state)
            for i in ids
            for s in recorder.select_events(i)
        ]

    def last_version(self, aggregate_id: UUID) -> int:
        """The aggregate's current version (0 when it has no events)."""
        last = self.recorder.select_events(aggregate_id, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def read(self, after: int, limit: int) -> list[tuple[int, DomainEvent]]:
        """Up to ``limit`` (position, event) pairs after ``after``."""
        decode = self.mapper.decode
        if self._select_rows is not None:
            return [
                (position, decode(topic, uuid_from_hex(oid), version, state))
                for position, oid, version, topic, state in self._select_rows(after, limit)
            ]
        notes = self.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )
        return [
            (n.id, decode(n.topic, n.originator_id, n.originator_version, n.state)) for n in notes
        ]

    def read_other_than(
        self, kinds: tuple[type[DomainEvent], ...], upto: int, chunk: int
    ) -> Iterator[list[tuple[int, DomainEvent]]]:
        """Every (position, event) up to ``upto`` whose event is none of ``kinds``, by
        position, in batches of up to ``chunk``."""
        topics = _topics_of(kinds)
        decode = self.mapper.decode
        after = 0
        while True:
            rows = self._select_others(topics, upto, after, chunk)
            if not rows:
                return
            yield [
                (position, decode(topic, _uuid(oid), version, state))
                for position, oid, version, topic, state in rows
            ]
            if len(rows) < chunk:
                return  # the query went to the end: do not scan the rest again
            after = rows[-1][0]

    def read_by_aggregate(
        self, kinds: tuple[type[DomainEvent], ...], upto: int, chunk: int
    ) -> Iterator[list[list[tuple[int, DomainEvent]]]]:
        """The events of ``kinds`` up to ``upto``, aggregate by aggregate: batches of whole
        histories (each a list of (position, event), oldest first) of about ``chunk``
        events. Aggregates come in the store's key order, each exactly once."""
        decode = self.mapper.decode
        # The last history of a chunk may go on in the next: it is carried over.
        history: list[tuple[int, DomainEvent]] = []
        last_oid: Any = None
        uid: Any = None
        for rows in self._chunks_by_aggregate(_topics_of(kinds), upto, chunk):
            histories: list[list[tuple[int, DomainEvent]]] = []
            for position, oid, version, topic, state in rows:
                if oid != last_oid:
                    if history:
                        histories.append(history)
                    history = []
                    last_oid, uid = oid, _uuid(oid)
                history.append((position, decode(topic, uid, version, state)))
            if histories:
                yield histories
        if history:
            yield [history]

    def _chunks_by_aggregate(self, topics: list[str], upto: int, chunk: int) -> Iterator[list[Any]]:
        # (position, originator id, version, topic, state) rows of ``topics`` up to
        # ``upto``, by (originator id, version), in chunks of up to ``chunk``.
        recorder: Any = self.recorder
        if self._rows_by_aggregate is not None:
            yield from self._rows_by_aggregate(topics, upto, chunk)
            return
        if self.store.kind == "postgresql":
            yield from _postgres_by_aggregate(recorder, topics, upto, chunk)
            return
        wanted = set(topics)
        notes = recorder.select_notifications(start=1, limit=upto, stop=upto)
        rows = [
            (n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in notes
            if n.topic in wanted
        ]
        rows.sort(key=lambda row: (row[1].int, row[2]))
        for start in range(0, len(rows), chunk):
            yield rows[start : start + chunk]

    def _select_others(
        self, topics: list[str], upto: int, after: int, limit: int
    ) -> list[tuple[int, Any, int, str, bytes]]:
        # (position, originator id, version, topic, state) rows up to ``upto`` of any
        # topic but ``topics``, after position ``after``, by position.
        recorder: Any = self.recorder
        if self._select_rows is not None:
            return self._select_rows(after, limit, upto=upto, excluding=topics)
        if self.store.kind == "postgresql":
            return _postgres_rows(
                recorder,
                "WHERE notification_id <= %s AND topic <> ALL(%s) AND notification_id > %s "
                "ORDER BY notification_id LIMIT %s",
                (upto, topics, after, limit),
            )
        notes = recorder.select_notifications(start=after + 1, limit=limit, stop=upto)
        wanted = set(topics)
        return [
            (n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in notes
            if n.topic not in wanted
        ]

    def max_position(self) -> int:
        """The position of the last recorded event (0 when none)."""
        return self.recorder.max_notification_id() or 0

    def close(self) -> None:
        """Release connections."""
        self.app.close()
