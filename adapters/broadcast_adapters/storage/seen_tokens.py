"""Webhook one-time tokens in SQL, shared by every worker: ``SqlSeenTokens``.

One implementation for SQLite and PostgreSQL (the ``SeenTokens`` port of the
core); the dialects differ only in the parameter marker and how a writing
transaction begins. Each token is kept with the digest of the request it
authenticated until it expires, in table ``bd_seen_tokens``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from broadcast_domain.errors import InvalidInput, StoreUnavailable

__all__ = ["SqlSeenTokens"]


@attrs.frozen
class _Dialect:
    name: str
    marker: str
    # SQLite takes the write lock at once, so two claims never interleave;
    # PostgreSQL's row locks on the unique key serialise the same token.
    begin: str


_SQLITE = _Dialect(name="sqlite", marker="?", begin="BEGIN IMMEDIATE")
_POSTGRES = _Dialect(name="postgresql", marker="%s", begin="BEGIN")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bd_seen_tokens ("
    " token TEXT PRIMARY KEY, digest TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS bd_seen_tokens_by_expiry ON bd_seen_tokens (expires_at)",
)

#: Longest token kept: Mailgun's are 50 characters; anything far longer is not one.
MAX_TOKEN_LENGTH = 512


def _micros(moment: datetime, field: str) -> int:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise InvalidInput(f"{field} must be a timezone-aware datetime", field=field)
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return delta // _MICROSECOND


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


class SqlSeenTokens:
    """A ``SeenTokens`` store in a SQL table, atomic across processes.

    Build it with :meth:`sqlite` (a file path) or :meth:`postgresql` (a libpq
    connection string or ``postgresql://`` URI). One connection, used under a
    lock; each ``claim`` is one short transaction.
    """

    __slots__ = ("_conn", "_dialect", "_lock")

    def __init__(self, connection: Any, dialect: _Dialect) -> None:
        self._conn = connection
        self._dialect = dialect
        self._lock = threading.Lock()
        with self._lock:
            self._transaction(lambda run: [run(statement, ()) for statement in _SCHEMA])

    @classmethod
    def sqlite(cls, path: str) -> SqlSeenTokens:
        """Tokens in the SQLite file at ``path`` (created if absent)."""
        try:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=60.0
            )
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open the token store {path!r}: {e}") from e
        return cls(conn, _SQLITE)

    @classmethod
    def postgresql(cls, conninfo: str, *, connect_timeout: int = 30) -> SqlSeenTokens:
        """Tokens in a PostgreSQL database (``conninfo``: a libpq string or URI)."""
        import psycopg  # psycopg is the optional extra broadcast-domain[postgres]

        try:
            conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=connect_timeout)
        except psycopg.Error as e:
            raise StoreUnavailable(f"cannot open the PostgreSQL token store: {e}") from e
        return cls(conn, _POSTGRES)

    def _transaction(self, work: Callable[[Callable[[str, tuple[Any, ...]], Any]], Any]) -> Any:
        cursor = self._conn.cursor()

        def run(statement: str, params: tuple[Any, ...]) -> Any:
            cursor.execute(statement.replace("?", self._dialect.marker), params)
            return cursor

        cursor.execute(self._dialect.begin)
        try:
            result = work(run)
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")
        return result

    def claim(self, token: str, digest: str, *, expires_at: datetime, now: datetime) -> bool:
        """Remember ``token`` with ``digest`` until ``expires_at``; False if it is live with
        another digest."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidInput("token must be a non-empty string of sane length", field="token")
        if not isinstance(digest, str) or not digest:
            raise InvalidInput("digest must be a non-empty string", field="digest")
        until, current = _micros(expires_at, "expires_at"), _micros(now, "now")

        def work(run: Callable[[str, tuple[Any, ...]], Any]) -> bool:
            run("DELETE FROM bd_seen_tokens WHERE expires_at <= ?", (current,))
            run(
                "INSERT INTO bd_seen_tokens (token, digest, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (token) DO NOTHING",
                (token, digest, until),
            )
            row = run("SELECT digest FROM bd_seen_tokens WHERE token = ?", (token,)).fetchone()
            return row is not None and row[0] == digest

        with self._lock:
            return bool(self._transaction(work))

    def __len__(self) -> int:
        with self._lock:
            row = self._conn.cursor().execute("SELECT COUNT(*) FROM bd_seen_tokens").fetchone()
            return int(row[0])

    def close(self) -> None:
        """Release the connection."""
        self._conn.close()
