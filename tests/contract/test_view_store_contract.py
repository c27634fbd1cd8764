"""The ViewStore contract on the in-memory store, SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

import pytest

from broadcast_adapters.bootstrap import components
from broadcast_adapters.storage.sqlite import SqliteViewStore
from broadcast_domain.application.eventlog import parse_store_url
from broadcast_domain.application.memory_views import InMemoryViewStore
from broadcast_domain.ports import ViewStore
from broadcast_domain.testing.contracts import ViewStoreContract

# Where a PostgreSQL view store is tested: set this to a scratch database's URL.
POSTGRES_URL_VARIABLE = "BROADCAST_TEST_POSTGRES_URL"


class TestInMemoryViewStore(ViewStoreContract):
    """InMemoryViewStore (memory://) keeps the contract."""

    def make_store(self, stack: ExitStack) -> ViewStore:
        return InMemoryViewStore()


class TestSqliteViewStore(ViewStoreContract):
    """SqliteViewStore on a file keeps the contract."""

    def make_store(self, stack: ExitStack) -> ViewStore:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        return SqliteViewStore(str(folder / "views.db"))


class TestComposedViewStore(ViewStoreContract):
    """The view store the composition root builds for a store URL keeps the contract.

    Runs on PostgreSQL when ``BROADCAST_TEST_POSTGRES_URL`` names a scratch
    database (it is reset before each example) and the composition root knows
    PostgreSQL; skipped otherwise.
    """

    def make_store(self, stack: ExitStack) -> ViewStore:
        url = os.environ.get(POSTGRES_URL_VARIABLE)
        if not url:
            pytest.skip(f"set {POSTGRES_URL_VARIABLE} to test a PostgreSQL view store")
        try:
            store: ViewStore = components().view_store(parse_store_url(url))
        except NotImplementedError as exc:
            pytest.skip(str(exc))
        store.reset()
        return store
