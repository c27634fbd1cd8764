"""The command line touches only its own store and writes only what it is asked to:
foreign, empty and missing databases are refused untouched; status and verify read a
read-only store without its key; export writes regular files with the usual permissions;
a key file others can read is refused with the chmod to run."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from test_cli import KEY, RETURN_PATH, Store, one_error_line, run, store

from broadcast_adapters.storage.marker import MARKER_TABLE, SCHEMA_VERSION, require_sqlite_store
from broadcast_domain import BroadcastService
from broadcast_domain.errors import StoreUnavailable

__all__ = ["store"]  # the fixture, imported from the CLI tests
assert MARKER_TABLE == "bd_store"

COMMANDS = [
    ["status", "00000000-0000-0000-0000-000000000001"],
    ["verify"],
    ["rebuild"],
    ["export", "00000000-0000-0000-0000-000000000001"],
    ["ingest", "--mbox", "MBOX"],
]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_command(db: Path, command: list[str], tmp_path: Path) -> str:
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(b"")
    args = [a.replace("MBOX", str(mbox)) for a in command]
    result = run("--db", f"sqlite:///{db}", "--signing-key", KEY.hex(), *args)
    assert result.exit_code == 1, result.output
    return one_error_line(result)


@pytest.fixture
def foreign_db(tmp_path: Path) -> Path:
    """Another application's SQLite file."""
    path = tmp_path / "other-app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('alice')")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_another_application_s_database_is_refused_untouched(
    foreign_db: Path, tmp_path: Path, command: list[str]
) -> None:
    """Every command refuses a SQLite file with other tables in one line; not a byte changes."""
    before = digest(foreign_db)
    line = run_command(foreign_db, command, tmp_path)
    assert "not a broadcast-domain store" in line
    assert digest(foreign_db) == before
    assert not foreign_db.with_name(foreign_db.name + "-wal").exists()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_an_empty_file_is_refused_and_stays_empty(tmp_path: Path, command: list[str]) -> None:
    """Only demo and hosts make stores: an empty file stays empty under every other command."""
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert "empty file" in run_command(empty, command, tmp_path)
    assert empty.stat().st_size == 0


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_missing_store_is_refused_and_not_created(tmp_path: Path, command: list[str]) -> None:
    """A path with no file is one error line and no file appears."""
    missing = tmp_path / "missing.db"
    assert "no database at" in run_command(missing, command, tmp_path)
    assert not missing.exists()


def test_a_host_opening_another_application_s_database_is_refused(foreign_db: Path) -> None:
    """BroadcastService.open refuses a foreign SQLite file the same way, creating nothing."""
    before = digest(foreign_db)
    with pytest.raises(StoreUnavailable, match="not a broadcast-domain store"):
        BroadcastService.open(f"sqlite:///{foreign_db}", return_path=RETURN_PATH, signing_key=KEY)
    assert digest(foreign_db) == before


def test_a_new_store_carries_the_marker_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    """A host's new store gets the marker with this schema version; a store marked with a
    later version is refused rather than misread."""
    path = tmp_path / "new.db"
    BroadcastService.open(f"sqlite:///{path}", return_path=RETURN_PATH, signing_key=KEY).close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT schema_version FROM bd_store").fetchone() == (SCHEMA_VERSION,)
    conn.execute("UPDATE bd_store SET schema_version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreUnavailable, match="newer"):
        BroadcastService.open(f"sqlite:///{path}", return_path=RETURN_PATH, signing_key=KEY)


def test_a_store_made_before_the_marker_is_adopted(store: Store) -> None:
    """A store holding only our tables and no marker (made by an earlier version) opens and
    gets its marker."""
    conn = sqlite3.connect(store.path)
    conn.execute("DROP TABLE bd_store")
    conn.commit()
    conn.close()
    result = run("--db", store.url, "rebuild")
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT schema_version FROM bd_store").fetchone() == (SCHEMA_VERSION,)
    conn.close()


@pytest.fixture
def read_only_store(store: Store) -> Iterator[Store]:
    """The store with its database file read-only and its key file unreadable."""
    key = store.path.with_name(store.path.name + ".key")
    store.path.chmod(0o444)
    key.chmod(0o000)
    yield store
    store.path.chmod(0o644)
    key.chmod(0o600)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes whatever the mode says")
def test_status_and_verify_read_a_read_only_store_without_its_key(
    read_only_store: Store,
) -> None:
    """status and verify work on a read-only database file and an unreadable key file."""
    before = digest(read_only_store.path)
    status = run("--db", read_only_store.url, "status", str(read_only_store.broadcast_id))
    assert status.exit_code == 0, status.output
    verify = run("--db", read_only_store.url, "verify")
    assert verify.exit_code == 0, verify.output
    assert digest(read_only_store.path) == before


def test_status_and_verify_open_the_store_read_only_and_need_no_key(store: Store) -> None:
    """Even where the file is writable, status and verify leave it byte for byte as it was,
    and a missing or loose key file does not matter to them."""
    key = store.path.with_name(store.path.name + ".key")
    key.chmod(0o644)
    before = digest(store.path)
    mtime = store.path.stat().st_mtime_ns
    assert run("--db", store.url, "status", str(store.broadcast_id)).exit_code == 0
    assert run("--db", store.url, "verify").exit_code == 0
    key.unlink()
    assert run("--db", store.url, "status", str(store.broadcast_id)).exit_code == 0
    assert digest(store.path) == before
    assert store.path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666])
def test_a_key_file_others_can_read_is_refused_with_the_chmod_to_run(
    store: Store, tmp_path: Path, mode: int
) -> None:
    """ingest (which needs the key) refuses a key file readable by group or others."""
    key = store.path.with_name(store.path.name + ".key")
    key.chmod(mode)
    mbox = tmp_path / "b.mbox"
    mbox.write_bytes(b"")
    result = run("--db", store.url, "ingest", "--mbox", str(mbox))
    assert result.exit_code == 1
    assert f"chmod 600 {key}" in one_error_line(result)


def export_to(store: Store, target: Path) -> object:
    return run("--db", store.url, "export", str(store.broadcast_id), "--out", str(target))


def test_export_refuses_a_device_and_leaves_it_alone(store: Store) -> None:
    """--out /dev/null is not replaced by a CSV (it stays a character device)."""
    result = run("--db", store.url, "export", str(store.broadcast_id), "--out", os.devnull)
    assert result.exit_code == 1
    assert "not a regular file" in one_error_line(result)
    assert stat.S_ISCHR(Path(os.devnull).stat().st_mode)


def test_export_refuses_a_directory_and_a_symbolic_link(store: Store, tmp_path: Path) -> None:
    """A directory and a link (to a file elsewhere, or dangling) are refused; nothing written."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "important.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.csv"
    link.symlink_to(victim)
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(elsewhere / "nothing-here")
    for target in (folder, link, dangling):
        result = run("--db", store.url, "export", str(store.broadcast_id), "--out", str(target))
        assert result.exit_code != 0
        assert "Traceback" not in result.output
    assert victim.read_text() == "keep me"
    assert link.is_symlink() and dangling.is_symlink()
    assert not (elsewhere / "nothing-here").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_export_writes_a_regular_file_with_the_usual_permissions(
    store: Store, tmp_path: Path, umask: int
) -> None:
    """A new or replaced export is 0666 minus the umask (0644 usually), never forced to 0600."""
    target = tmp_path / "results.csv"
    target.write_text("old")
    old = os.umask(umask)
    try:
        result = run("--db", store.url, "export", str(store.broadcast_id), "--out", str(target))
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_ISREG(target.lstat().st_mode)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")


@pytest.mark.postgres
def test_a_postgresql_store_carries_the_marker_and_a_newer_one_is_refused(
    postgres_url: str,
) -> None:
    """On PostgreSQL too the store gets its marker on first open, opens again, and a store
    marked with a later schema version is refused; the host's own tables beside it are fine."""
    import psycopg

    from broadcast_domain.application.eventlog import parse_store_url

    store = parse_store_url(postgres_url)
    params: dict[str, Any] = {
        "host": store.host,
        "port": store.port,
        "user": store.user,
        "dbname": store.dbname,
    }
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute("CREATE TABLE host_users (id INTEGER PRIMARY KEY)")
    BroadcastService.open(postgres_url, return_path=RETURN_PATH, signing_key=KEY).close()
    BroadcastService.open(postgres_url, return_path=RETURN_PATH, signing_key=KEY).close()
    with psycopg.connect(**params, autocommit=True) as conn:
        row = conn.execute("SELECT schema_version FROM bd_store").fetchone()
        assert row == (SCHEMA_VERSION,)
        conn.execute("UPDATE bd_store SET schema_version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreUnavailable, match="newer"):
        BroadcastService.open(postgres_url, return_path=RETURN_PATH, signing_key=KEY)


@pytest.mark.postgres
@pytest.mark.parametrize("command", COMMANDS[:4], ids=lambda c: c[0])
def test_a_postgresql_database_without_a_store_is_refused_and_left_empty(
    postgres_url: str, command: list[str]
) -> None:
    """On an empty PostgreSQL database (or one holding only a host's tables) the commands
    refuse in one line and create no table."""
    import psycopg

    from broadcast_domain.application.eventlog import parse_store_url

    store = parse_store_url(postgres_url)
    params: dict[str, Any] = {
        "host": store.host,
        "port": store.port,
        "user": store.user,
        "dbname": store.dbname,
    }
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute("CREATE TABLE host_users (id INTEGER PRIMARY KEY)")
    result = run("--db", postgres_url, "--signing-key", KEY.hex(), *command)
    assert result.exit_code == 1, result.output
    assert "no broadcast-domain store" in one_error_line(result)
    with psycopg.connect(**params, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert tables == [("host_users",)]


OURS = ["bd_tracking", "bd_recipients", "bd_broadcasts", "bd_unmatched", "stored_events"]
THEIRS = ["users", "orders", "bd_other", "stored_events_v2", "bd_tracking_old", "Events"]


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables=st.sets(st.sampled_from(OURS + THEIRS), max_size=5))
def test_a_sqlite_file_is_a_store_only_when_made_of_our_tables(
    tmp_path_factory: pytest.TempPathFactory, tables: set[str]
) -> None:
    """A file with tables and no marker is taken for a store (of an earlier version) only
    when every table is ours and the tracking table is there; otherwise both the CLI check
    and a host's open refuse it (a file without tables: only the CLI), and its bytes do not
    change."""
    path = tmp_path_factory.mktemp("schemas") / "db.sqlite"
    conn = sqlite3.connect(path)
    for name in sorted(tables):
        conn.execute(f'CREATE TABLE "{name}" (x INTEGER)')
    conn.commit()
    conn.close()
    ours = tables <= set(OURS) and "bd_tracking" in tables
    before = path.read_bytes()
    if ours:
        require_sqlite_store(path)
        return
    with pytest.raises(StoreUnavailable):
        require_sqlite_store(path)
    if tables:
        with pytest.raises(StoreUnavailable):
            BroadcastService.open(f"sqlite:///{path}", return_path=RETURN_PATH, signing_key=KEY)
    assert path.read_bytes() == before


def test_status_on_projections_behind_the_log_replays_in_memory_and_verify_says_so(
    tmp_path: Path,
) -> None:
    """A host wrote events its projections have not caught up with: read-only status replays
    the log in memory and shows the right counts; verify says the projections are behind
    (exit 1) rather than compare; neither changes the file."""
    from datetime import UTC, datetime

    from broadcast_domain import Actor, Contact, CsvSource, InboxRole

    path = tmp_path / "behind.db"
    svc = BroadcastService.open(f"sqlite:///{path}", return_path=RETURN_PATH, signing_key=KEY)
    bid = svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="s",
        text_body="t",
        source=CsvSource("m.csv"),
        recipients=[Contact("a@example.com"), Contact("b@example.com")],
        scheduled_at=datetime(2026, 1, 1, tzinfo=UTC),
        actor=Actor("op", inbox_roles={"support": InboxRole.OPERATOR}),
    )
    svc.close()
    before = digest(path)
    status = run("--db", f"sqlite:///{path}", "status", str(bid))
    assert status.exit_code == 0, status.output
    assert "behind the event log" in status.stderr
    assert "2" in status.stdout
    verify = run("--db", f"sqlite:///{path}", "verify")
    assert verify.exit_code == 1
    assert "behind its event log" in one_error_line(verify)
    assert digest(path) == before
