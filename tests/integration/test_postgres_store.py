"""The PostgreSQL store on a real server: URLs, sockets, schemas, concurrent opens, followers."""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from broadcast_domain import (
    Actor,
    AddressBookSource,
    BroadcastService,
    Contact,
    InboxRole,
    InvalidInput,
)
from broadcast_domain.application.eventlog import parse_store_url
from broadcast_domain.application.follower import follow_projections
from broadcast_domain.errors import StoreUnavailable
from broadcast_domain.testing.postgres import PostgresDatabases

ACTOR = Actor("operator-1", inbox_roles={"inbox": InboxRole.OPERATOR})
KEY = b"pg-store-signing-key-0123456789ab"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _open(url: str) -> BroadcastService:
    return BroadcastService.open(url, return_path="bounces@mail.example.com", signing_key=KEY)


def _create(svc: BroadcastService, n: int) -> object:
    return svc.create_broadcast(
        account_id="acme",
        inbox_id="inbox",
        sender="news@example.com",
        subject="Hi",
        text_body="Hello",
        source=AddressBookSource("book-1"),
        recipients=[Contact(f"a{i}@example.com") for i in range(n)],
        scheduled_at=NOW - timedelta(minutes=1),
        actor=ACTOR,
    )


def test_postgres_urls_are_parsed_with_socket_hosts_and_settings() -> None:
    """Socket directories keep their case, from the query or an encoded host; settings are kept."""
    a = parse_store_url("postgresql://me:s%40cret@/db?host=/Run/PG&port=6000&schema=tenant_a")
    assert (a.user, a.password, a.host, a.port, a.dbname) == ("me", "s@cret", "/Run/PG", 6000, "db")
    assert a.option("schema") == "tenant_a"
    b = parse_store_url("postgresql://me@%2FRun%2FPG:5433/db")
    assert (b.host, b.port) == ("/Run/PG", 5433)
    c = parse_store_url("postgres://me:pw@db.example.com/broadcasts?pool_size=4")
    assert (c.host, c.port, c.option("pool_size")) == ("db.example.com", None, "4")


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://me@localhost/db?colour=blue", "colour"),
        ("postgresql://me@localhost/db?pool_size=many", "pool_size"),
        ("postgresql://me@localhost:port/db", "port"),
        ("postgresql://me@localhost/db?schema=a;drop", "schema"),
        ("postgresql://me@localhost/", "database name"),
    ],
)
def test_bad_postgres_urls_say_what_is_wrong(url: str, named: str) -> None:
    """A URL with an unknown or malformed setting raises InvalidInput naming it."""
    with pytest.raises(InvalidInput, match=named):
        parse_store_url(url)


def test_an_unreachable_server_raises_store_unavailable(tmp_path: Path) -> None:
    """Opening a store whose server is not there raises StoreUnavailable naming the database."""
    url = f"postgresql://postgres@/nowhere?host={tmp_path}&connect_timeout=2"
    with pytest.raises(StoreUnavailable, match="nowhere"):
        _open(url)


@pytest.mark.postgres
def test_a_host_starting_with_a_slash_is_a_socket_directory(
    postgres_databases: PostgresDatabases,
) -> None:
    """A percent-encoded socket directory in the host part connects over the unix socket."""
    name = postgres_databases.create()
    url = (
        f"postgresql://postgres@{quote(str(postgres_databases.socket_dir), safe='')}:"
        f"{postgres_databases.port}/{name}"
    )
    with _open(url) as svc:
        bid = _create(svc, 3)
        assert svc.summary(bid).recipients == 3  # type: ignore[arg-type]


@pytest.mark.postgres
def test_schemas_keep_stores_in_one_database_apart(postgres_url: str) -> None:
    """Two stores in different schemas of one database see only their own broadcasts."""
    with (
        _open(postgres_url + "&schema=tenant_a") as a,
        _open(postgres_url + "&schema=tenant_b") as b,
    ):
        _create(a, 2)
        assert a.list_broadcasts("inbox").total == 1
        assert b.list_broadcasts("inbox").total == 0


def _open_and_write(url: str, n: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    with _open(url) as svc:
        _create(svc, n)


@pytest.mark.postgres
def test_processes_opening_a_fresh_database_at_once_do_not_collide(postgres_url: str) -> None:
    """Three processes creating the schema at the same moment all succeed and share one store."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_open_and_write, args=(postgres_url, 5, barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    with _open(postgres_url) as svc:
        assert svc.list_broadcasts("inbox").total == 3
        assert svc.verify_projections() == []


def _follow(
    url: str, stop: multiprocessing.synchronize.Event, ready: multiprocessing.synchronize.Event
) -> None:
    ready.set()
    follow_projections(url, stop=stop, poll_interval=0.05)


@pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_a_follower_process_keeps_the_views_up_to_date(store_url: str) -> None:
    """Events written by a process that never reads are projected by a follower process."""
    ctx = multiprocessing.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    with _open(store_url) as svc:  # creates the store before the follower opens it
        follower = ctx.Process(target=_follow, args=(store_url, stop, ready))
        follower.start()
        try:
            assert ready.wait(60)
            bid = _create(svc, 250)
            bid2 = _create(svc, 7)
            target = svc.events.max_position()
            views = svc.views  # read directly: no catch-up by this process
            deadline = time.monotonic() + 60
            while views.position() < target and time.monotonic() < deadline:
                time.sleep(0.05)
            assert views.position() == target
            assert views.counts(bid).scheduled == 250  # type: ignore[arg-type]
            assert views.counts(bid2).scheduled == 7  # type: ignore[arg-type]
        finally:
            stop.set()
            follower.join(60)
        assert follower.exitcode == 0
        assert svc.verify_projections() == []


def test_following_a_memory_store_is_refused() -> None:
    """follow_projections on memory:// raises InvalidInput: no other process can see it."""
    with pytest.raises(InvalidInput, match="memory"):
        follow_projections("memory://", stop=multiprocessing.get_context("spawn").Event())
