"""The event store: an eventsourcing Application (POPO, SQLite or PostgreSQL) with our mapper.

This module and ``codec`` are the only places that import eventsourcing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

import attrs
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Mapper, RecordConflictError
from eventsourcing.sqlite import SQLiteApplicationRecorder

from broadcast_domain.codec import AttrsMapper
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.errors import InvalidInput

__all__ = ["BatchSQLiteRecorder", "EventLog", "StoreUrl", "VersionConflict", "parse_store_url"]


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
        parts = urlsplit(url)
        return StoreUrl(
            kind="postgresql",
            url=url,
            host=unquote(parts.hostname or ""),
            port=parts.port,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            dbname=unquote(parts.path.lstrip("/")),
        )
    raise InvalidInput(
        f"store URL scheme {scheme!r} is not supported; use memory://, sqlite:/// or postgresql://",
        field="url",
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

    def insert_rows(self, rows: Sequence[tuple[str, int, str, bytes]]) -> None:
        """Insert ``(originator_id hex, version, topic, state)`` rows atomically."""
        with self.datastore.transaction(commit=True) as c:
            c.executemany(self.insert_events_statement, rows)


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
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": store.dbname,
        "POSTGRES_HOST": store.host or "localhost",
        "POSTGRES_PORT": str(store.port or 5432),
        "POSTGRES_USER": store.user,
        "POSTGRES_PASSWORD": store.password,
    }
    return env


class EventLog:
    """Append events, read an aggregate's events, read the whole sequence by position."""

    def __init__(self, store: StoreUrl, env: dict[str, str] | None = None) -> None:
        self.store = store
        self.app = _App(env={**_env_for(store), **(env or {})})
        mapper = self.app.mapper
        assert isinstance(mapper, AttrsMapper)
        self.mapper: AttrsMapper = mapper
        self.recorder = self.app.recorder
        # The batch path needs our recorder; another store (or an env override) keeps
        # eventsourcing's own insert_events.
        self._insert_rows = (
            self.recorder.insert_rows if isinstance(self.recorder, BatchSQLiteRecorder) else None
        )

    def put(self, events: Sequence[DomainEvent]) -> None:
        """Append events atomically; VersionConflict when any aggregate version is taken."""
        if not events:
            return
        try:
            if self._insert_rows is not None:
                to_row = self.mapper.to_row
                self._insert_rows([to_row(e) for e in events])
            else:
                self.recorder.insert_events([self.mapper.to_stored_event(e) for e in events])
        except (IntegrityError, RecordConflictError) as e:
            raise VersionConflict(str(e)) from e

    def get(self, aggregate_id: UUID) -> list[DomainEvent]:
        """One aggregate's events, oldest first."""
        decode = self.mapper.decode
        return [
            decode(s.topic, s.originator_id, s.originator_version, s.state)
            for s in self.recorder.select_events(aggregate_id)
        ]

    def last_version(self, aggregate_id: UUID) -> int:
        """The aggregate's current version (0 when it has no events)."""
        last = self.recorder.select_events(aggregate_id, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def read(self, after: int, limit: int) -> list[tuple[int, DomainEvent]]:
        """Up to ``limit`` (position, event) pairs after ``after``."""
        decode = self.mapper.decode
        notes = self.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)
        return [(n.id, decode(n.topic, n.originator_id, n.originator_version, n.state)) for n in notes]

    def max_position(self) -> int:
        """The position of the last recorded event (0 when none)."""
        return self.recorder.max_notification_id() or 0

    def close(self) -> None:
        """Release connections."""
        self.app.close()

    @property
    def raw(self) -> Any:
        """The underlying eventsourcing application (for adapters that share its store)."""
        return self.app
