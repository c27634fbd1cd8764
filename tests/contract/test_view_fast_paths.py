"""The SQL view store's fast paths give the rows the general path (the plain fold) gives.

Acknowledgements: a recipient a batch only acknowledges is applied as two
column updates: set-based (one UPDATE per time and version, returning each
row's broadcast, for rows that are unacknowledged errors), or from two facts
(its broadcast and whether it was an unacknowledged error), taken from the
store's row cache or from the table. Every source, and any batching, must end
with the rows and counts of the fold.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcast_adapters.storage import sql
from broadcast_adapters.storage.sql import SqlViewStore
from broadcast_domain.application.eventlog import parse_store_url
from broadcast_domain.application.memory_views import InMemoryViewStore
from broadcast_domain.application.projector import compare_views
from broadcast_domain.domain.events import DomainEvent, ErrorAcknowledged
from broadcast_domain.domain.values import BounceReport, Contact, DeliveryStatus
from broadcast_domain.projections.replay import replay_all
from broadcast_domain.projections.views import BulkAcknowledgement, Needs, Views, fold
from broadcast_domain.testing.histories import HistoryBuilder
from broadcast_domain.testing.postgres import PostgresDatabases
from broadcast_domain.testing.strategies import histories

History = list[tuple[int, DomainEvent]]


@st.composite
def acknowledged_histories(draw: Any) -> History:
    """Errors, successes and pending recipients, then acknowledgements in any order,
    with late reports and more attempts interleaved."""
    h = HistoryBuilder()
    n = draw(st.integers(1, 12))
    bid = h.create_broadcast([Contact(f"r{i}@example.com") for i in range(n)])
    h.advance(minutes=1)
    h.start_sending(bid)
    addresses = h.addresses(bid)
    for address in addresses:
        if draw(st.booleans()) or draw(st.booleans()):
            h.attempt(bid, address)
            code = draw(st.sampled_from([550, 550, 250, 451]))
            h.reply(bid, address, code, f"{code} reply")
    for address in draw(st.permutations(addresses)):
        action = draw(st.sampled_from(["ack", "ack", "ack", "attempt", "advance", "none"]))
        if action == "ack":
            h.acknowledge(bid, address)
        elif action == "attempt":
            h.attempt(bid, address)
            h.reply(bid, address, 550, "550 again")
        elif action == "advance":
            h.advance(minutes=draw(st.integers(1, 90)))
    return h.history


@st.composite
def raw_acknowledgement_histories(draw: Any) -> History:
    """Two broadcasts with mixed outcomes, then acknowledgements as the log may hold
    them but the domain would not record: of any row (an error, a success, a pending
    recipient, one already acknowledged), several for one recipient, with a few shared
    times and interleaved with other events."""
    h = HistoryBuilder()
    broadcasts = []
    for b in range(draw(st.integers(1, 2))):
        n = draw(st.integers(1, 8))
        bid = h.create_broadcast([Contact(f"b{b}r{i}@example.com") for i in range(n)])
        h.start_sending(bid)
        broadcasts.append(bid)
    members = [(bid, address) for bid in broadcasts for address in h.addresses(bid)]
    for bid, address in members:
        if draw(st.booleans()):
            h.attempt(bid, address)
            code = draw(st.sampled_from([550, 550, 250]))
            h.reply(bid, address, code, f"{code} reply")
    h.advance(minutes=1)
    times = [h.now, h.now + timedelta(seconds=1), h.now + timedelta(hours=1)]
    history = list(h.history)
    versions = {rid: r.version for rid, r in h.recipients.items()}
    for bid, address in draw(st.lists(st.sampled_from(members), max_size=20)):
        rid = h.recipient(bid, address).id
        if draw(st.integers(0, 5)) == 0:
            h.attempt(bid, address)  # another event among the acknowledgements
            history.extend(h.history[len(history) :])
            versions[rid] = h.recipient(bid, address).version
            continue
        versions[rid] += 1
        ack = ErrorAcknowledged(
            originator_id=rid,
            originator_version=versions[rid],
            timestamp=draw(st.sampled_from(times)),
            acknowledged_by=draw(st.sampled_from(["operator-1", "operator-2"])),
        )
        history.append((len(history) + 1, ack))
        h.history.append((len(h.history) + 1, ack))
    return history


@st.composite
def bulk_acknowledgements(draw: Any) -> tuple[History, BulkAcknowledgement, bool]:
    """A history, a bulk acknowledgement of some of one broadcast's unacknowledged errors
    as ``acknowledge_errors`` records it (next versions, one time, the next positions),
    and whether it is one: sometimes a row it names is not such an error (another
    broadcast's, acknowledged, a success, at another version, named twice)."""
    h = HistoryBuilder()
    broadcasts = []
    for b in range(draw(st.integers(1, 2))):
        n = draw(st.integers(1, 8))
        bid = h.create_broadcast([Contact(f"b{b}r{i}@example.com") for i in range(n)])
        h.start_sending(bid)
        broadcasts.append(bid)
    for bid in broadcasts:
        for address in h.addresses(bid):
            if draw(st.integers(0, 3)):
                h.attempt(bid, address)
                code = draw(st.sampled_from([550, 550, 250]))
                h.reply(bid, address, code, f"{code} reply")
            if draw(st.integers(0, 4)) == 0:
                h.acknowledge(bid, address)
    h.advance(minutes=1)
    bid = draw(st.sampled_from(broadcasts))
    errors = [
        r
        for r in (h.recipient(bid, a) for a in h.addresses(bid))
        if r.status is DeliveryStatus.ERROR and r.acknowledged_at is None
    ]
    chosen = draw(st.permutations(errors))[: draw(st.integers(0, len(errors)))]
    named = [(r.id, r.version + 1) for r in chosen]
    valid = True
    if draw(st.integers(0, 3)) == 0:
        others = [r for r in h.recipients.values() if r not in errors]
        if others or named:
            valid = False
            wrong = draw(st.sampled_from(["other", "twice", "version"]))
            if wrong == "other" and others:
                r = draw(st.sampled_from(others))
                named.insert(draw(st.integers(0, len(named))), (r.id, r.version + 1))
            elif named:
                i = draw(st.integers(0, len(named) - 1))
                rid, version = named[i]
                if wrong == "twice":
                    named.insert(i, (rid, version))
                else:
                    named[i] = (rid, version + draw(st.sampled_from([-1, 1, 2])))
            else:
                valid = True
    start = len(h.history) + 1
    bulk = BulkAcknowledgement(
        bid,
        [rid for rid, _ in named],
        [version for _, version in named],
        range(start, start + len(named)),
        h.now,
        "operator-1",
    )
    return list(h.history), bulk, valid


def _batches(history: Sequence[Any], cuts: Sequence[int]) -> Iterator[list[Any]]:
    bounds = sorted({0, len(history), *(c % (len(history) + 1) for c in cuts)})
    for start, end in pairwise(bounds):
        if end > start:
            yield list(history[start:end])


Opener = Callable[[ExitStack], SqlViewStore]
"""Opens a SQL view store on the test's database (a new object each call)."""


def _check(
    stores: Opener, history: History, cuts: list[int], fresh: bool, set_based: bool = True
) -> None:
    def opened() -> SqlViewStore:
        store = stores(stack)
        if not set_based:
            # As on a SQLite without UPDATE ... RETURNING: every acknowledgement is
            # folded from the facts.
            store.dialect = attrs.evolve(store.dialect, returning=False)
        return store

    with ExitStack() as stack:
        store = opened()
        store.reset()
        for batch in _batches(history, cuts):
            if fresh:
                # A new store object has no cached rows: the facts come from the table.
                store = opened()
            assert store.apply(batch, expected_position=store.position())
        assert compare_views(fold(history), store.dump()) == []


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """SQL view stores on one SQLite file, or on one PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'views.db'}"
    else:
        databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
        url = databases()

    def open_store(stack: ExitStack) -> SqlViewStore:
        store = SqlViewStore.from_url(parse_store_url(url))
        stack.callback(store.close)
        return store

    return open_store


_per_store = settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_per_store
@given(
    history=acknowledged_histories(),
    cuts=st.lists(st.integers(0, 10_000), max_size=5),
    fresh=st.booleans(),
    set_based=st.booleans(),
)
def test_acknowledgements_in_bulk_give_the_rows_of_the_fold(
    stores: Opener, history: History, cuts: list[int], fresh: bool, set_based: bool
) -> None:
    """Acknowledgements applied as column updates, in any batching, set-based or from the
    cache or the table, leave the rows and counts the one-by-one fold leaves."""
    _check(stores, history, cuts, fresh, set_based)


@_per_store
@given(
    history=raw_acknowledgement_histories(),
    cuts=st.lists(st.integers(0, 10_000), max_size=4),
    fresh=st.booleans(),
    set_based=st.booleans(),
)
def test_set_based_acknowledgements_give_the_rows_of_the_fold(
    stores: Opener, history: History, cuts: list[int], fresh: bool, set_based: bool
) -> None:
    """Acknowledgements written with one UPDATE per time and version (rows of several
    broadcasts, rows that were not unacknowledged errors, a recipient acknowledged
    several times in a batch, other events between) leave the rows and counts of the
    event-by-event fold; so do the same acknowledgements folded from the facts."""
    _check(stores, history, cuts, fresh, set_based)


@_per_store
@given(case=bulk_acknowledgements(), fresh=st.booleans())
def test_a_bulk_acknowledgement_gives_the_fold_of_its_events_or_nothing(
    stores: Opener, case: tuple[History, BulkAcknowledgement, bool], fresh: bool
) -> None:
    """apply_acknowledgements leaves the rows and counts of folding the bulk's events
    when every row is what it read, from the cache or not; otherwise it refuses and
    changes nothing."""
    history, bulk, valid = case
    with ExitStack() as stack:
        store = stores(stack)
        store.reset()
        assert store.apply(history, expected_position=0)
        if fresh:
            store = stores(stack)
        applied = store.apply_acknowledgements(bulk, expected_position=len(history))
        assert applied is (valid or not bulk.recipients)
        expected = history + bulk.events() if applied else history
        assert compare_views(fold(expected), store.dump()) == []
        # Not at the stored position: refused, nothing applied.
        assert not store.apply_acknowledgements(bulk, expected_position=len(history) + 1)


def test_a_bulk_acknowledgement_after_another_store_moved_on_uses_no_stale_row(
    stores: Opener,
) -> None:
    """A store that remembers rows, then acknowledges in bulk after another store applied
    events to those rows, folds its next events on the rows as they are, not as it
    remembered them."""
    h = HistoryBuilder()
    bid = h.create_broadcast([Contact(f"r{i}@example.com") for i in range(3)])
    h.start_sending(bid)
    r0, r1, r2 = h.addresses(bid)
    for address in (r0, r1, r2):
        h.attempt(bid, address)
    first = len(h.history)
    h.reply(bid, r0, 550, "550 no such user")
    h.reply(bid, r1, 250, "250 ok")
    h.reply(bid, r2, 550, "550 no such user")
    second = len(h.history)
    error = h.recipient(bid, r0)
    h.advance(minutes=1)
    bulk = BulkAcknowledgement(
        bid, [error.id], [error.version + 1], [second + 1], h.now, "operator-1"
    )
    for position, event in bulk.events():
        h.history.append((position, event))
    report = BounceReport(
        recipient=r1,
        status="5.1.1",
        diagnostic="550 5.1.1 user unknown",
        permanent=True,
        reported_at=h.now,
    )
    assert h.report(bid, r1, report)  # a success turned into an error
    h.acknowledge(bid, r2)
    history = h.history
    with ExitStack() as stack:
        mine, theirs = stores(stack), stores(stack)
        mine.reset()
        assert mine.apply(history[:first], expected_position=0)  # remembers three rows
        assert theirs.apply(history[first:second], expected_position=first)
        assert mine.apply_acknowledgements(bulk, expected_position=second)
        rest = history[second + 1 :]
        assert rest
        assert mine.apply(rest, expected_position=second + 1)
        assert compare_views(fold(history), mine.dump()) == []


@given(case=bulk_acknowledgements())
def test_the_memory_store_applies_a_bulk_acknowledgement_as_the_sql_stores_do(
    case: tuple[History, BulkAcknowledgement, bool],
) -> None:
    """The in-memory store checks the rows the same way, then folds the events."""
    history, bulk, valid = case
    store = InMemoryViewStore()
    assert store.apply(history, expected_position=0)
    applied = store.apply_acknowledgements(bulk, expected_position=len(history))
    assert applied is (valid or not bulk.recipients)
    expected = history + bulk.events() if applied else history
    assert compare_views(fold(expected), store.dump()) == []


@_per_store
@given(history=histories(), cuts=st.lists(st.integers(0, 10_000), max_size=4))
def test_a_replacement_gives_the_fold_and_its_queries(
    stores: Opener, history: History, cuts: list[int]
) -> None:
    """A history replayed recipient by recipient into a replacement (in batches) gives
    the fold, and the same answers to queries as a store that applied it in batches."""
    with ExitStack() as stack:
        plain = stores(stack)
        plain.reset()
        for batch in _batches(history, cuts):
            assert plain.apply(batch, expected_position=plain.position())
        store = stores(stack)
        store.reset()
        rows, sent, views = replay_all(history)
        with store.replacing() as target:
            for start, end in pairwise([0, *sorted(c % 20 for c in cuts), len(rows)]):
                target.add(rows[start:end], sent if start == 0 else [])
            target.commit(views)
        assert _answers(store) == _answers(plain)
        assert compare_views(fold(history), store.dump()) == []


def _answers(store: SqlViewStore) -> list[Any]:
    # What the queries that use the recipient table's secondary indexes answer.
    answers: list[Any] = []
    for bid in sorted(store.dump().broadcasts):
        answers.append(store.recipient_page(bid, keyword=None, status=None, offset=0, limit=50))
        answers.append(
            store.recipient_page(bid, keyword=None, status=DeliveryStatus.ERROR, offset=0, limit=50)
        )
        answers.append(store.error_page(bid, as_of=store.position(), offset=0, limit=50))
        answers.append(list(store.iter_unacknowledged_versions(bid, store.position())))
    return answers


def _replace_then_fail(store: SqlViewStore, check: Callable[[], bool]) -> None:
    with store.replacing():
        assert check()  # its tables are there meanwhile
        raise RuntimeError("the replay failed")


def test_a_replacement_leaves_the_indexes_and_no_table_behind(tmp_path: Path) -> None:
    """After a replacement the recipient table has its indexes; one that ends with an
    error leaves the live table and its indexes as they were, and no table of its own."""
    path = tmp_path / "views.db"

    def tables_and_indexes() -> set[tuple[str, str]]:
        with sqlite3.connect(path) as conn:
            rows = conn.execute(
                "SELECT type, name FROM sqlite_master WHERE name LIKE 'bd_%' AND sql IS NOT NULL"
            ).fetchall()
        return {(kind, name) for kind, name in rows}

    store = SqlViewStore.sqlite(str(path))
    try:
        before = tables_and_indexes()
        assert sum(1 for kind, name in before if name.startswith("bd_recipients_")) == 3
        with pytest.raises(RuntimeError, match="the replay failed"):
            _replace_then_fail(store, lambda: len(tables_and_indexes()) == len(before) + 2)
        assert tables_and_indexes() == before
        with store.replacing() as target:
            target.commit(Views())
        assert tables_and_indexes() == before
    finally:
        store.close()


@_per_store
@given(history=histories(), cuts=st.lists(st.integers(0, 10_000), max_size=4))
def test_any_history_through_fresh_stores_gives_the_fold(
    stores: Opener, history: History, cuts: list[int]
) -> None:
    """Every batch applied by a store object that holds no cached rows gives the fold."""
    _check(stores, history, cuts, fresh=True)


@given(history=acknowledged_histories(), cuts=st.lists(st.integers(0, 10_000), max_size=5))
def test_the_bulk_path_takes_exactly_the_recipients_a_batch_only_acknowledges(
    history: History, cuts: list[int]
) -> None:
    """A recipient is held as facts when, and only when, its every event in the batch is an
    acknowledgement."""
    for batch in _batches(history, cuts):
        kinds: dict[Any, set[bool]] = {}
        for _, event in batch:
            kinds.setdefault(event.originator_id, set()).add(type(event) is ErrorAcknowledged)
        expected = {rid for rid, seen in kinds.items() if seen == {True}}
        assert Needs.of(batch).acknowledged_only == expected


def test_the_bulk_path_is_taken_for_a_page_of_acknowledgements() -> None:
    """A batch of acknowledgements alone holds every acknowledged recipient as facts."""
    h = HistoryBuilder()
    bid = h.create_broadcast([Contact(f"r{i}@example.com") for i in range(5)])
    h.start_sending(bid)
    for address in h.addresses(bid):
        h.attempt(bid, address)
        h.reply(bid, address, 550, "550 no such user")
    h.advance(timedelta(minutes=5))
    before = len(h.history)
    for address in h.addresses(bid):
        h.acknowledge(bid, address)
    acks = h.history[before:]
    assert len(Needs.of(acks).acknowledged_only) == 5


@_per_store
@given(
    history=acknowledged_histories(),
    cuts=st.lists(st.integers(0, 10_000), max_size=5),
    limit=st.integers(1, 6),
)
def test_a_small_row_cache_drops_its_oldest_rows_and_gives_the_fold(
    stores: Opener, history: History, cuts: list[int], limit: int
) -> None:
    """With room for a few rows, the store keeps at most that many and still gives the fold."""
    with pytest.MonkeyPatch.context() as patch, ExitStack() as stack:
        patch.setattr(sql, "_CACHE_LIMIT", limit)
        store = stores(stack)
        store.reset()
        for batch in _batches(history, cuts):
            assert store.apply(batch, expected_position=store.position())
            assert store.remembered_rows <= limit
        assert compare_views(fold(history), store.dump()) == []
