"""The store marker: how a database is recognised as a broadcast-domain store.

A store holds table ``bd_store`` with one row: the schema version. Opening a
store checks it before anything is created, so the library never writes into
a database that is someone else's:

* a SQLite file that is missing or empty becomes a store only when the caller
  may create one (``BroadcastService.open``, the ``demo`` command);
* a SQLite file with tables but no marker is refused, unless every table is
  one of ours (a store made before the marker existed: it gets its marker);
* a store whose schema version is newer than this library's is refused;
* a PostgreSQL database is shared by design (hosts keep their own tables
  beside ours), so there only the schema's ``bd_`` tables are looked at.

One implementation for SQLite and PostgreSQL; the dialects differ in how tables
are listed, the parameter marker and how a table name is qualified.
"""

from __future__ import annotations

import enum
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import attrs

from broadcast_adapters.storage.sql import VIEW_TABLES
from broadcast_domain.errors import StoreUnavailable

__all__ = [
    "MARKER_TABLE",
    "SCHEMA_VERSION",
    "StoreState",
    "claim_store",
    "inspect_sqlite",
    "read_only_sqlite_url",
    "require_postgres_store",
    "require_sqlite_store",
]

MARKER_TABLE = "bd_store"
#: The schema version this library writes and reads.
SCHEMA_VERSION = 1

# Tables a store made before the marker holds: the views' own (one list, in the
# view store), its tracking row, the webhook token table and the event store's.
_OWN_TABLES = frozenset({"bd_tracking", *VIEW_TABLES, "bd_seen_tokens", "stored_events"})


class StoreState(enum.Enum):
    """What a database is, as far as this library is concerned."""

    MISSING = "missing"  # no file
    EMPTY = "empty"  # a file without tables (or of zero bytes)
    OURS = "ours"  # marker present, version readable
    LEGACY = "legacy"  # our tables only, no marker yet
    FOREIGN = "foreign"  # someone else's tables
    NOT_A_DATABASE = "not a database"  # a text file, an image, an encrypted database


@attrs.frozen
class _Dialect:
    marker: str
    list_tables: str


_SQLITE = _Dialect(
    marker="?",
    list_tables="SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
)
_POSTGRES = _Dialect(
    marker="%s",
    list_tables="SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
)

_SQLITE_VERSION = "SELECT schema_version FROM bd_store WHERE id = 1"  # MARKER_TABLE

_CREATE = (
    "CREATE TABLE IF NOT EXISTS {table} ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " schema_version INTEGER NOT NULL,"
    " created_by TEXT NOT NULL)"
)
_INSERT = (
    "INSERT INTO {table} (id, schema_version, created_by) VALUES (1, {m}, 'broadcast-domain') "
    "ON CONFLICT (id) DO NOTHING"
)


def _state(
    cursor: Any, dialect: _Dialect, version_query: Any, params: tuple[Any, ...]
) -> tuple[StoreState, int | None]:
    tables = {row[0] for row in cursor.execute(dialect.list_tables, params).fetchall()}
    if MARKER_TABLE in tables:
        row = cursor.execute(version_query).fetchone()
        return StoreState.OURS, (int(row[0]) if row is not None else None)
    if not tables:
        return StoreState.EMPTY, None
    if tables <= _OWN_TABLES and "bd_tracking" in tables:
        return StoreState.LEGACY, None
    return StoreState.FOREIGN, None


def _check_version(version: int | None, where: str) -> None:
    if version is None:
        raise StoreUnavailable(f"{where} has a broken store marker (no schema version row)")
    if version > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"{where} has store schema version {version}, newer than this version of "
            f"broadcast-domain reads ({SCHEMA_VERSION}); upgrade broadcast-domain"
        )


def _sqlite_file(path: str) -> tuple[Path, bool]:
    """The file a SQLite path names and whether it is a read-only ``file:`` URI."""
    if path.startswith("file:"):
        name, _, query = path[5:].partition("?")
        return Path(unquote(name)), "mode=ro" in query.split("&")
    return Path(path), False


def read_only_sqlite_url(path: Path) -> str:
    """A ``sqlite:///`` store URL that opens ``path`` read-only (SQLite ``mode=ro``)."""
    uri = "file:" + quote(str(path.resolve())) + "?mode=ro"
    # The store URL is percent-decoded once when parsed; the SQLite URI must stay encoded.
    return "sqlite:///" + quote(uri, safe="")


def inspect_sqlite(path: Path) -> tuple[StoreState, int | None]:
    """What the SQLite file at ``path`` is, looked at read-only (nothing is created)."""
    if not path.exists():
        return StoreState.MISSING, None
    if not path.is_file():
        raise StoreUnavailable(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        return StoreState.EMPTY, None
    try:
        conn = sqlite3.connect("file:" + quote(str(path.resolve())) + "?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise StoreUnavailable(f"cannot open {path}: {e}") from e
    try:
        return _state(conn.cursor(), _SQLITE, _SQLITE_VERSION, ())
    except sqlite3.OperationalError as e:
        # Locked, unreadable, a WAL file that cannot be opened: a database all the
        # same, so say what went wrong rather than call it foreign.
        raise StoreUnavailable(f"cannot read {path}: {e}") from e
    except sqlite3.DatabaseError:
        # "file is not a database": a text file, an image, an encrypted database.
        return StoreState.NOT_A_DATABASE, None
    finally:
        conn.close()


def require_sqlite_store(path: Path) -> None:
    """Raise StoreUnavailable (one line) unless ``path`` is an existing store; writes nothing."""
    state, version = inspect_sqlite(path)
    if state is StoreState.MISSING:
        raise StoreUnavailable(
            f"no database at {path}: give --db URL, or make one with "
            "'broadcast-domain demo --db URL'"
        )
    if state is StoreState.NOT_A_DATABASE:
        raise StoreUnavailable(f"{path} is not a database; nothing was changed")
    if state is StoreState.EMPTY:
        raise StoreUnavailable(
            f"{path} is an empty file, not a broadcast-domain store; nothing was changed"
        )
    if state is StoreState.FOREIGN:
        raise StoreUnavailable(
            f"{path} is not a broadcast-domain store (it has other tables and no {MARKER_TABLE} "
            "marker); nothing was changed"
        )
    if state is StoreState.OURS:
        _check_version(version, str(path))


def _claim_sqlite(path_text: str) -> None:
    path, read_only = _sqlite_file(path_text)
    if path_text == ":memory:":
        return
    if read_only:
        require_sqlite_store(path)
        return
    state, version = inspect_sqlite(path)
    if state in (StoreState.FOREIGN, StoreState.NOT_A_DATABASE):
        require_sqlite_store(path)  # raises with the message
    if state is StoreState.OURS:
        _check_version(version, str(path))
        return
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
    try:
        cursor = conn.cursor()
        # Decided again under the write lock: another process may have created the
        # store (or something else) since the look above.
        cursor.execute("BEGIN IMMEDIATE")
        try:
            state, version = _state(cursor, _SQLITE, _SQLITE_VERSION, ())
            if state is StoreState.FOREIGN:
                raise StoreUnavailable(
                    f"{path} is not a broadcast-domain store (it has other tables and no "
                    f"{MARKER_TABLE} marker); nothing was changed"
                )
            if state is not StoreState.OURS:
                cursor.execute(_CREATE.format(table=MARKER_TABLE))
                cursor.execute(_INSERT.format(table=MARKER_TABLE, m="?"), (SCHEMA_VERSION,))
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")
        if state is StoreState.OURS:
            _check_version(version, str(path))
    finally:
        conn.close()


def _claim_postgres(store: Any) -> None:
    import psycopg
    from psycopg import sql

    schema = store.option("schema", "public") or "public"
    params: dict[str, Any] = {
        "dbname": store.dbname,
        "host": store.host or "localhost",
        "port": store.port or 5432,
        "connect_timeout": int(store.option("connect_timeout", "30") or 30),
        "autocommit": True,
    }
    if store.user:
        params["user"] = store.user
    if store.password:
        params["password"] = store.password
    try:
        conn = psycopg.connect(**params)
    except psycopg.Error as e:
        raise StoreUnavailable(
            f"cannot open the PostgreSQL store {store.dbname!r} on {params['host']}:"
            f"{params['port']}: {e}"
        ) from e
    table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(MARKER_TABLE))
    where = f"PostgreSQL database {store.dbname!r} (schema {schema})"
    try:
        with conn.transaction():
            cursor = conn.cursor()
            # The same advisory lock key the stores take while creating their tables.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (0x62645F736368,))
            version_query = sql.SQL("SELECT schema_version FROM {} WHERE id = 1").format(table)
            state, version = _state(cursor, _POSTGRES, version_query, (schema,))
            if state is StoreState.OURS:
                _check_version(version, where)
                return
            cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            cursor.execute(sql.SQL(_CREATE).format(table=table))
            cursor.execute(sql.SQL(_INSERT).format(table=table, m=sql.SQL("%s")), (SCHEMA_VERSION,))
    finally:
        conn.close()


# Settings of our postgresql:// URLs that libpq does not know (the pool's, the schema).
_NOT_LIBPQ = frozenset({"schema", "pool_size", "max_overflow", "lock_timeout"})


def require_postgres_store(url: str) -> None:
    """Raise StoreUnavailable (one line) unless the database and schema a ``postgresql://``
    store URL names hold a store (its marker, or our tables from before it); writes nothing."""
    import psycopg

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema" and v), "public")
    libpq = urlunsplit(
        parts._replace(query=urlencode([kv for kv in query if kv[0] not in _NOT_LIBPQ]))
    )
    dbname = unquote(parts.path.lstrip("/")) or "(default)"
    where = f"PostgreSQL database {dbname!r} (schema {schema})"
    try:
        conn = psycopg.connect(libpq, autocommit=True, connect_timeout=30)
    except psycopg.Error as e:
        raise StoreUnavailable(f"cannot open the {where}: {' '.join(str(e).split())}") from e
    try:
        rows = conn.execute(_POSTGRES.list_tables, (schema,)).fetchall()
        tables = {row[0] for row in rows}
        if MARKER_TABLE in tables:
            from psycopg import sql

            query_version = sql.SQL("SELECT schema_version FROM {}.{} WHERE id = 1").format(
                sql.Identifier(schema), sql.Identifier(MARKER_TABLE)
            )
            row = conn.execute(query_version).fetchone()
            _check_version(int(row[0]) if row is not None else None, where)
            return
    finally:
        conn.close()
    if "bd_tracking" not in tables:
        raise StoreUnavailable(
            f"no broadcast-domain store in the {where}: give --db URL, or create the store "
            "from your application (BroadcastService.open); nothing was changed"
        )


def claim_store(store: Any) -> None:
    """Check (and on first use create) the marker of the store a parsed store URL names.

    Raises ``StoreUnavailable`` with one line, changing nothing, when the
    database is not a broadcast-domain store or is newer than this library.
    """
    if store.kind == "sqlite":
        _claim_sqlite(store.path)
    elif store.kind == "postgresql":
        _claim_postgres(store)
