"""The composition root: the one place that knows the concrete adapters.

The core finds :func:`components` through the ``broadcast_domain.adapters``
entry point, so it can open SQLite (and PostgreSQL) stores without importing
this package.
"""

from __future__ import annotations

from typing import Any

from broadcast_adapters.bounces.parser import BounceMessageParser
from broadcast_adapters.csv_io import CsvCodec
from broadcast_adapters.storage.marker import claim_store
from broadcast_adapters.storage.sqlite import SqliteViewStore

__all__ = ["Components", "components"]


class Components:
    """Factories for the adapters the core needs when it opens a store."""

    def view_store(self, store: Any) -> Any:
        """The view store for a parsed store URL (``kind``, ``path`` ...).

        Called first when a store is opened, so the marker check comes before any
        table is created: a database that is not a store is refused untouched.
        """
        claim_store(store)
        if store.kind == "sqlite":
            return SqliteViewStore(store.path)
        if store.kind == "memory":
            return SqliteViewStore(":memory:")
        if store.kind == "postgresql":
            # Imported here so that psycopg stays an optional extra (broadcast-domain[postgres]).
            from broadcast_adapters.storage.postgres import PostgresViewStore

            return PostgresViewStore.from_url(store)
        raise NotImplementedError(f"no view store for {store.kind!r} stores in this version")

    def csv_codec(self) -> CsvCodec:
        """The recipient CSV reader and result CSV writer."""
        return CsvCodec()

    def bounce_parser(self) -> BounceMessageParser:
        """The parser that reads raw bounce, DSN, ARF and auto-reply messages."""
        return BounceMessageParser()


def components() -> Components:
    """The default components."""
    return Components()
