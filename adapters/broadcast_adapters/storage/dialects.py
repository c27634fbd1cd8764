"""What SQLite and PostgreSQL do differently, for the one SQL view store.

A :class:`Dialect` holds the few differences the view store meets: the
parameter marker, how a list of keys is matched (``IN (?, ...)`` in chunks,
or ``= ANY(%s)`` with one array), column types, how a writing transaction
takes the tracking row, how a read sees one snapshot, how tables are emptied,
the substring function, and how times and blobs cross the driver. Opening a
connection (file pragmas, or the schema and search path under an advisory
lock) is here too. Everything else, statements included, is shared.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from broadcast_domain.errors import StoreUnavailable

__all__ = [
    "POSTGRES",
    "SQLITE",
    "Dialect",
    "connect_postgres",
    "connect_sqlite",
    "is_read_only_sqlite",
]


def _text_time(moment: datetime | None) -> str | None:
    # Fixed width (microseconds always written) and UTC, so text order is time order
    # (due_at <= now, ORDER BY); isoformat is several times faster than strftime.
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _time_from_text(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _same(value: Any) -> Any:
    return value


# SQLite's default automatic checkpoint (pages of write-ahead log), which
# connect_sqlite keeps, and the one a replay into empty views uses.
_WAL_PAGES = 1000
_WAL_PAGES_REPLAY = 50_000
_WAL_BYTES_KEPT = 16 * 1024 * 1024


@attrs.frozen
class Dialect:
    """The differences between two SQL databases, as data and small functions."""

    name: str
    #: The driver's parameter marker.
    mark: str
    #: Column types by role.
    time_type: str
    blob_type: str
    int_type: str
    #: The statement that starts a writing transaction.
    begin_write: str
    #: Appended to the tracking row's SELECT inside a writing transaction.
    lock_row: str
    #: The statement that starts a read of one consistent snapshot.
    begin_read: str
    #: Run first in the transaction that creates the tables ("" when not needed).
    schema_lock: str
    #: ``{name}(haystack, needle) > 0`` finds a literal substring.
    find: str
    #: How many keys one ``IN`` list takes (None: one array parameter, any length).
    in_chunk: int | None
    #: Times to and from the driver.
    time_in: Callable[[datetime | None], Any]
    time_out: Callable[[Any], datetime | None]
    #: Blobs from the driver (PostgreSQL gives memoryview).
    blob_out: Callable[[Any], bytes]
    #: Whether ``UPDATE ... RETURNING`` is understood (SQLite from 3.35).
    returning: bool = True
    #: Run on the store's connection before a rebuild writes new views, and after it.
    replay_begin: tuple[str, ...] = ()
    replay_end: tuple[str, ...] = ()
    #: Run after table ``{old}`` is renamed ``{new}``: an index named after the old
    #: table (PostgreSQL's primary key) takes the new name, so the old one is free again.
    renamed_key: tuple[str, ...] = ()
    #: Whether many rows may be inserted from one JSON array parameter (json_each and
    #: ``->>``, SQLite from 3.38): one statement instead of one execution per row.
    json_rows: bool = False

    def any_of(self, column: str, keys: Sequence[Any]) -> Iterator[tuple[str, list[Any]]]:
        """``(condition, parameters)`` pieces that together match ``column`` to ``keys``.

        Conditions are written with ``?`` markers, like every statement (see :meth:`sql`).
        """
        if not keys:
            return
        if self.in_chunk is None:
            yield f"{column} = ANY(?)", [list(keys)]
            return
        for start in range(0, len(keys), self.in_chunk):
            chunk = list(keys[start : start + self.in_chunk])
            yield f"{column} IN ({','.join('?' * len(chunk))})", chunk

    def sql(self, statement: str) -> str:
        """A statement written with ``?`` markers, in this dialect's markers."""
        return statement if self.mark == "?" else statement.replace("?", self.mark)


SQLITE = Dialect(
    name="sqlite",
    mark="?",
    time_type="TEXT",
    blob_type="BLOB",
    int_type="INTEGER",
    # Takes the file's write lock at once: two appliers never interleave.
    begin_write="BEGIN IMMEDIATE",
    lock_row="",
    begin_read="BEGIN",
    schema_lock="",
    find="instr",
    # SQLite's default limit is 999 host parameters per statement (older builds).
    in_chunk=500,
    time_in=_text_time,
    time_out=_time_from_text,
    blob_out=_same,
    returning=sqlite3.sqlite_version_info >= (3, 35, 0),
    json_rows=sqlite3.sqlite_version_info >= (3, 38, 0),
    # A rebuild commits a batch of rows at a time, and each commit rewrites pages that
    # the batches before wrote too (the id index's): with the log checkpointed every
    # _WAL_PAGES pages as usual, those pages are copied into the file again and again,
    # with an fsync each time. During a rebuild the log grows to _WAL_PAGES_REPLAY
    # pages (200 MB) first. Afterwards it is checkpointed once
    # (PASSIVE: readers are not waited for), the usual limit is back, and the file of
    # the log shrinks back to _WAL_BYTES_KEPT when it next starts over.
    # The indexes made at the end are sorted by SQLite with a helper thread too.
    replay_begin=(f"PRAGMA wal_autocheckpoint={_WAL_PAGES_REPLAY}", "PRAGMA threads=2"),
    replay_end=(
        "PRAGMA threads=0",
        f"PRAGMA journal_size_limit={_WAL_BYTES_KEPT}",
        "PRAGMA wal_checkpoint(PASSIVE)",
        f"PRAGMA wal_autocheckpoint={_WAL_PAGES}",
    ),
)

POSTGRES = Dialect(
    name="postgresql",
    mark="%s",
    time_type="TIMESTAMPTZ",
    blob_type="BYTEA",
    int_type="BIGINT",
    begin_write="BEGIN",
    # The row lock makes concurrent appliers queue; the loser then sees the
    # winner's position and backs out without writing anything.
    lock_row=" FOR UPDATE",
    begin_read="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    # Two processes opening a fresh database at once create the tables one at a time;
    # the key is the one the event log's schema creation holds too.
    schema_lock=f"SELECT pg_advisory_xact_lock({0x62645F736368})",
    # strpos, not LIKE: the keyword is matched literally (no % or _ wildcards).
    find="strpos",
    in_chunk=None,
    time_in=_same,
    time_out=_same,
    blob_out=bytes,
    renamed_key=("ALTER INDEX {old}_pkey RENAME TO {new}_pkey",),
)


def is_read_only_sqlite(path: str) -> bool:
    """A ``file:...?mode=ro`` URI: the store is opened for reading only (status, verify)."""
    return path.startswith("file:") and "mode=ro" in path


def connect_sqlite(path: str) -> Any:
    """A connection to a SQLite file (WAL) or ``:memory:``, transactions by hand.

    A ``file:`` path is a SQLite URI; with ``mode=ro`` no journal change is
    attempted.
    """
    try:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=60.0,
            uri=path.startswith("file:"),
        )
        if path != ":memory:" and not is_read_only_sqlite(path):
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as e:
        raise StoreUnavailable(f"cannot open the SQLite projections in {path!r}: {e}") from e
    return conn


def connect_postgres(
    *,
    dbname: str,
    host: str,
    port: int | None,
    user: str,
    password: str,
    schema: str,
    connect_timeout: int,
) -> Any:
    """An autocommit connection whose search path is ``schema`` (created if absent)."""
    import psycopg
    from psycopg import sql

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
        conn = psycopg.connect(**params)
    except psycopg.Error as e:
        raise StoreUnavailable(
            f"cannot open the PostgreSQL projections in {dbname!r} on "
            f"{params['host']}:{params['port']}: {e}"
        ) from e
    if schema != "public":
        with conn.transaction():
            conn.execute(POSTGRES.schema_lock)
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return conn
