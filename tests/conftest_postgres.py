"""Pytest fixtures for the PostgreSQL store: one embedded server per session, a database per test.

``postgres_databases`` starts the server once (it is stopped at the end of the
session); ``postgres_url`` is a fresh, empty database for one test;
``store_url`` runs a test on every store: memory://, a SQLite file and
PostgreSQL. When the server cannot start the PostgreSQL tests are skipped,
except under CI (the ``CI`` environment variable is set), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcast_domain.testing.postgres import (
    PostgresDatabases,
    PostgresUnavailable,
    embedded_postgres_server,
)

STORES = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """The session's embedded PostgreSQL server, as a factory of fresh database URLs."""
    try:
        server = embedded_postgres_server()
        databases = server.__enter__()
    except PostgresUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL tests cannot run: {e}")
        pytest.skip(f"PostgreSQL tests skipped: {e}")
    try:
        yield databases
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def postgres_url(postgres_databases: PostgresDatabases) -> str:
    """The URL of an empty database of its own."""
    return postgres_databases()


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store, once per store kind (memory, SQLite, PostgreSQL)."""
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    return databases()
