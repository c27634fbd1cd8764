"""The ViewStore contract on the in-memory store, SQLite and PostgreSQL."""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path

import pytest

from broadcast_adapters.bootstrap import components
from broadcast_adapters.storage.sql import SqlViewStore
from broadcast_domain.application.eventlog import parse_store_url
from broadcast_domain.application.memory_views import InMemoryViewStore
from broadcast_domain.ports import ViewStore
from broadcast_domain.testing.contracts import ViewStoreContract
from broadcast_domain.testing.postgres import PostgresDatabases


class TestInMemoryViewStore(ViewStoreContract):
    """InMemoryViewStore (memory://) keeps the contract."""

    def make_store(self, stack: ExitStack) -> ViewStore:
        return InMemoryViewStore()


class TestSqliteViewStore(ViewStoreContract):
    """SqlViewStore on a SQLite file keeps the contract."""

    def make_store(self, stack: ExitStack) -> ViewStore:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        return SqlViewStore.sqlite(str(folder / "views.db"))


@pytest.mark.postgres
class TestPostgresViewStore(ViewStoreContract):
    """SqlViewStore on PostgreSQL, built by the composition root for a URL, keeps the contract.

    One fresh database per test; every example starts from ``reset()``.
    """

    @pytest.fixture(autouse=True)
    def _database(self, postgres_databases: PostgresDatabases) -> None:
        self._url = postgres_databases()

    def make_store(self, stack: ExitStack) -> ViewStore:
        store: ViewStore = components().view_store(parse_store_url(self._url))
        stack.callback(store.close)
        store.reset()
        return store
