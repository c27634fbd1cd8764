"""The projections' lean reading of the SQLite log gives what eventsourcing's reader gives."""

from __future__ import annotations

import pickle
from pathlib import Path
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from broadcast_domain.application.eventlog import EventLog, parse_store_url
from broadcast_domain.codec import uuid_from_hex
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.testing.strategies import domain_events


@given(st.uuids(version=None) | st.builds(UUID, int=st.integers(0, 2**128 - 1)))
def test_a_uuid_read_from_its_hex_is_the_same_uuid(u: UUID) -> None:
    """uuid_from_hex(u.hex) equals u, hashes like it and has its fields and text."""
    v = uuid_from_hex(u.hex)
    assert v == u and hash(v) == hash(u) and v.int == u.int
    assert str(v) == str(u) and v.version == u.version and v.is_safe == u.is_safe
    assert pickle.loads(pickle.dumps(v)) == u  # noqa: S301 - our own bytes
    assert uuid_from_hex(str(u)) == u  # other spellings go through UUID()


@given(st.text(max_size=40))
def test_text_that_is_not_a_uuid_is_refused_as_uuid_refuses_it(text: str) -> None:
    """Any text either gives UUID(text)'s value or raises as UUID(text) does."""
    try:
        expected: UUID | type[Exception] = UUID(text)
    except ValueError:
        expected = ValueError
    try:
        got: UUID | type[Exception] = uuid_from_hex(text)
    except ValueError:
        got = ValueError
    assert got == expected


@given(events=st.lists(domain_events(), max_size=12), after=st.integers(0, 14))
def test_the_sqlite_log_reads_what_select_notifications_reads(
    tmp_path_factory: object, events: list[DomainEvent], after: int
) -> None:
    """EventLog.read on SQLite returns the positions and events eventsourcing's reader gives."""
    folder: Path = tmp_path_factory.mktemp("log")  # type: ignore[attr-defined]
    log = EventLog(parse_store_url(f"sqlite:///{folder / 'events.db'}"))
    try:
        # One event per aggregate: the log refuses a version twice for one aggregate.
        log.put(list({e.originator_id: e for e in events}.values()))
        decode = log.mapper.decode
        notes = log.recorder.select_notifications(start=after, limit=10, inclusive_of_start=False)
        expected = [
            (n.id, decode(n.topic, n.originator_id, n.originator_version, n.state)) for n in notes
        ]
        assert log.read(after, 10) == expected
    finally:
        log.close()


@given(batches=st.lists(st.lists(domain_events(), min_size=1, max_size=6), max_size=4))
def test_the_sqlite_log_tells_the_positions_it_recorded_events_at(
    tmp_path_factory: object, batches: list[list[DomainEvent]]
) -> None:
    """put() on SQLite returns the positions read() then gives the same events at."""
    folder: Path = tmp_path_factory.mktemp("log")  # type: ignore[attr-defined]
    log = EventLog(parse_store_url(f"sqlite:///{folder / 'events.db'}"))
    try:
        seen: set[UUID] = set()
        for batch in batches:
            unique = list({e.originator_id: e for e in batch}.values())
            fresh = [e for e in unique if e.originator_id not in seen]
            seen.update(e.originator_id for e in fresh)
            positions = log.put(fresh)
            if not fresh:
                assert positions is None
                continue
            assert positions is not None
            read = log.read(positions[0] - 1, len(fresh))
            assert read == list(zip(positions, fresh, strict=True))
        assert log.max_position() == len(seen)
    finally:
        log.close()
