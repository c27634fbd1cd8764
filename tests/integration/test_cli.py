"""The broadcast-domain command, run through click's CliRunner on SQLite files."""

from __future__ import annotations

import re
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import attrs
import pytest
from click.testing import CliRunner, Result

from broadcast_adapters.cli import cli
from broadcast_domain import (
    Actor,
    BroadcastService,
    Contact,
    CsvSource,
    InboxRole,
)
from broadcast_domain.testing.bounces import build_dsn
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.fakes import FakeTransport

KEY = bytes(range(32))
RETURN_PATH = "bounces@mail.example.com"
OPERATOR = Actor("op", inbox_roles={"support": InboxRole.OPERATOR})
CONTACTS = [
    Contact("taro@example.jp", last_name="山田", first_name="太郎", company="株式会社サンプル"),
    Contact("emma@example.com", last_name="Smith", first_name="Emma", company="ACME"),
    Contact("gone@example.com", last_name="佐藤", first_name="花子", company="=SUM(A1)"),
    Contact("full@example.net", last_name="髙橋", first_name="一郎", company=""),
]


@attrs.frozen
class Store:
    """A SQLite store with one dispatched broadcast: three accepted, one refused."""

    path: Path
    broadcast_id: uuid.UUID
    transport: FakeTransport

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def open(self) -> BroadcastService:
        return BroadcastService.open(self.url, return_path=RETURN_PATH, signing_key=KEY)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A store whose key is in ``<db>.key`` as the CLI expects, with errors unacknowledged."""
    path = tmp_path / "broadcasts.db"
    key = path.with_name(path.name + ".key")
    key.write_text(KEY.hex())
    key.chmod(0o600)
    # Real now: `ingest` takes reports at the system clock, within the bounce window.
    clock = FakeClock(datetime.now(UTC))
    transport = FakeTransport(reject=["gone@example.com"])
    svc = BroadcastService.open(
        f"sqlite:///{path}", return_path=RETURN_PATH, signing_key=KEY, clock=clock
    )
    try:
        svc.configure_account("acme", monthly_limit=100, timezone="Asia/Tokyo")
        bid = svc.create_broadcast(
            account_id="acme",
            inbox_id="support",
            sender="news@example.com",
            subject="お知らせ",
            text_body="本文",
            source=CsvSource("members.csv"),
            recipients=CONTACTS,
            scheduled_at=clock(),
            actor=OPERATOR,
        )
        svc.dispatch_due(transport)
        # Sending leaves projecting to the next read; project now, so the tests that
        # corrupt a view row find it there.
        svc.catch_up()
    finally:
        svc.close()
    return Store(path, bid, transport)


def this_month() -> str:
    """The current month in the fixture account's time zone, as the status line spells it."""
    return f"{datetime.now(ZoneInfo('Asia/Tokyo')):%Y-%m}"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_error_line(result: Result) -> str:
    """The single ``Error:`` line a failed command printed (and nothing else on stderr)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_status_prints_the_status_bar_and_the_monthly_count(store: Store) -> None:
    """status shows the counts the service reports and the month's count against the limit."""
    result = run("--db", store.url, "status", str(store.broadcast_id))
    assert result.exit_code == 0, result.output
    with store.open() as svc:
        s = svc.summary(store.broadcast_id)
    assert (s.succeeded, s.errors, s.delivered) == (3, 1, 4)
    out = result.stdout
    assert re.search(r"配信成功 \(succeeded\)\s*│\s*3\s", out)
    assert re.search(r"配信エラー \(errors\)\s*│\s*1\s", out)
    assert re.search(r"配信済み \(delivered\)\s*│\s*4\s", out)
    assert re.search(r"未確認のエラー \(unacknowledged errors\)\s*│\s*1\s", out)
    assert f"acme {this_month()}: 4 of 100 sent (96 remaining)" in out


def test_export_writes_utf8_with_bom_and_japanese_headers_by_default(
    store: Store, tmp_path: Path
) -> None:
    """The default export is UTF-8 with BOM, Japanese headers, one row per recipient."""
    out = tmp_path / "results.csv"
    result = run("--db", store.url, "export", str(store.broadcast_id), "--out", str(out))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("状況,エラー確認日時,姓,名,宛先,会社名")
    assert len(lines) == 1 + len(CONTACTS)
    assert "Wrote 4 rows" in result.stdout


def test_export_in_cp932_with_english_headers(store: Store, tmp_path: Path) -> None:
    """--encoding cp932 --headers en writes Shift_JIS bytes with the English column names."""
    out = tmp_path / "results-sjis.csv"
    result = run(
        "--db", store.url, "export", str(store.broadcast_id), "--out", str(out),
        "--encoding", "cp932", "--headers", "en",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = out.read_bytes().decode("cp932")
    assert text.splitlines()[0].startswith("status,error_acknowledged_at,last_name")
    assert "山田" in text
    assert "配信エラー" in text


def test_export_errors_only_writes_the_unacknowledged_errors(store: Store, tmp_path: Path) -> None:
    """--errors-only writes one row per unacknowledged error."""
    out = tmp_path / "errors.csv"
    result = run(
        "--db", store.url, "export", str(store.broadcast_id), "--errors-only", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    rows = out.read_bytes().decode("utf-8-sig").splitlines()[1:]
    assert len(rows) == 1
    assert "gone@example.com" in rows[0]


def test_export_without_out_uses_the_results_file_name(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out the file is named after the imported CSV, in the working folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = run("--db", store.url, "export", str(store.broadcast_id))
    assert result.exit_code == 0, result.output
    [written] = list(work.iterdir())
    with store.open() as svc:
        assert written.name == svc.results_file_name(store.broadcast_id)


def test_export_a_character_cp932_cannot_hold_fails_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    """A name CP932 cannot hold is one Error line naming the row; no partial file remains."""
    path = tmp_path / "b.db"
    with BroadcastService.open(
        f"sqlite:///{path}", return_path=RETURN_PATH, signing_key=KEY
    ) as svc:
        bid = svc.create_broadcast(
            account_id="acme",
            inbox_id="support",
            sender="news@example.com",
            subject="s",
            text_body="b",
            source=CsvSource("x.csv"),
            recipients=[Contact("a@example.com", last_name="😀")],
            scheduled_at=datetime(2026, 11, 1, tzinfo=UTC),
            actor=OPERATOR,
        )
    out = tmp_path / "out" / "r.csv"
    out.parent.mkdir()
    result = run("--db", f"sqlite:///{path}", "export", str(bid), "--out", str(out),
                 "--encoding", "cp932")  # fmt: skip
    assert result.exit_code == 1
    assert "row" in one_error_line(result)
    assert list(out.parent.iterdir()) == []


def test_import_csv_counts_contacts_and_lists_every_problem_with_its_line(
    tmp_path: Path,
) -> None:
    """import-csv prints the contacts count and each bad row's line; --strict exits 1."""
    csv_file = tmp_path / "members.csv"
    csv_file.write_bytes(
        "姓,名,メールアドレス,会社名\n"
        "山田,太郎,taro@example.jp,株式会社サンプル\n"
        "佐藤,花子,not-an-address,\n"
        "Smith,Emma,emma@example.com,ACME\n"
        "山田,太郎,taro@example.jp,株式会社サンプル\n".encode("cp932")
    )
    result = run("import-csv", str(csv_file))
    assert result.exit_code == 0, result.output
    assert "members.csv: 2 contacts" in result.stdout
    assert re.search(r"│\s+3 │ invalid address 'not-an-address'", result.stdout)
    assert re.search(r"│\s+5 │ duplicate address", result.stdout)
    assert run("import-csv", "--strict", str(csv_file)).exit_code == 1


def _maildir(root: Path, messages: list[bytes]) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True)
    for i, raw in enumerate(messages):
        (root / "new" / f"1700000000.{i}.host").write_bytes(raw)
    return root


def test_ingest_a_maildir_records_the_bounces_and_marks_them_done(
    store: Store, tmp_path: Path
) -> None:
    """ingest --maildir applies a DSN, reports its duplicate, and empties new/."""
    [message] = store.transport.sent_to("full@example.net")
    dsn = build_dsn(message, status="5.2.2", reply_code="552", diagnostic="Mailbox full")
    box = _maildir(tmp_path / "Maildir", [dsn, dsn])
    result = run("--db", store.url, "ingest", "--maildir", str(box))
    assert result.exit_code == 0, result.output
    assert re.search(r"applied\s*│\s*1\s", result.stdout)
    assert re.search(r"duplicate\s*│\s*1\s", result.stdout)
    assert list((box / "new").iterdir()) == []
    with store.open() as svc:
        assert svc.summary(store.broadcast_id).errors == 2


def test_ingest_without_a_signing_key_is_refused(store: Store, tmp_path: Path) -> None:
    """ingest needs the key the deliveries were signed with: without one it says how to give it."""
    store.path.with_name(store.path.name + ".key").unlink()
    box = _maildir(tmp_path / "Maildir", [])
    result = run("--db", store.url, "ingest", "--maildir", str(box))
    assert result.exit_code == 1
    assert "BROADCAST_SIGNING_KEY" in one_error_line(result)


def test_ingest_takes_the_key_from_the_environment(store: Store, tmp_path: Path) -> None:
    """BROADCAST_SIGNING_KEY (hex) is the key when no key file is there."""
    store.path.with_name(store.path.name + ".key").unlink()
    [message] = store.transport.sent_to("emma@example.com")
    box = _maildir(tmp_path / "Maildir", [build_dsn(message)])
    result = CliRunner().invoke(
        cli,
        ["--db", store.url, "--return-path", RETURN_PATH, "ingest", "--maildir", str(box)],
        env={"BROADCAST_SIGNING_KEY": KEY.hex()},
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"applied\s*│\s*1\s", result.stdout)


def test_rebuild_replays_the_log_and_verify_then_passes(store: Store) -> None:
    """rebuild reports the events replayed; verify afterwards finds nothing and exits 0."""
    result = run("--db", store.url, "rebuild")
    assert result.exit_code == 0, result.output
    assert re.search(r"Rebuilt the projections from \d+ events", result.stdout)
    verified = run("--db", store.url, "verify")
    assert verified.exit_code == 0, verified.output
    assert "Projections match the event log." in verified.stdout


def test_verify_reports_a_corrupted_projection_and_exits_1(store: Store) -> None:
    """A count changed behind the library's back is printed as a difference; exit 1."""
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE bd_monthly SET count = count + 7")
    db.close()
    result = run("--db", store.url, "verify")
    assert result.exit_code == 1
    assert "1 differences" in result.stdout
    year, month = (int(part) for part in this_month().split("-"))
    assert f"monthly[('acme', {year}, {month})]: replay=4 live=11" in result.stdout
    assert run("--db", store.url, "rebuild").exit_code == 0
    assert run("--db", store.url, "verify").exit_code == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["status", "not-a-uuid"], "is not a broadcast id"),
        (["status", str(uuid.UUID(int=7))], "no broadcast has id"),
        (["export", str(uuid.UUID(int=7)), "--encoding", "latin-1"], "'latin-1' is not one of"),
        (["ingest"], "exactly one of --maildir PATH or --mbox PATH"),
        (["ingest", "--mbox", "missing.mbox"], "does not exist"),
        (["frobnicate"], "No such command"),
    ],
)
def test_a_users_mistake_prints_one_error_line(store: Store, args: list[str], says: str) -> None:
    """Bad ids, options, paths and commands print one Error line and exit non-zero."""
    result = run("--db", store.url, *args)
    assert result.exit_code != 0
    assert says in one_error_line(result)


def test_a_missing_database_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    """Pointing at a file that does not exist says so and creates nothing."""
    result = run("--db", f"sqlite:///{tmp_path / 'none.db'}", "verify")
    assert result.exit_code == 1
    assert "no database at" in one_error_line(result)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["mysql://localhost/db", "no-scheme-here"])
def test_a_bad_store_url_is_one_error_line(url: str) -> None:
    """An unsupported or malformed URL is named in one Error line."""
    result = run("--db", url, "verify")
    assert result.exit_code == 1
    assert "store URL" in one_error_line(result)


def test_a_file_that_is_not_a_database_is_one_error_line(tmp_path: Path) -> None:
    """A text file given as the database is refused without a traceback."""
    bogus = tmp_path / "notes.db"
    bogus.write_text("not a database, just some text\n" * 100)
    result = run("--db", f"sqlite:///{bogus}", "status", str(uuid.UUID(int=1)))
    assert result.exit_code == 1
    assert "not a database" in one_error_line(result)


def test_export_into_a_missing_folder_is_one_error_line(store: Store, tmp_path: Path) -> None:
    """A target folder that does not exist is named; nothing is written."""
    target = tmp_path / "nowhere" / "r.csv"
    result = run("--db", store.url, "export", str(store.broadcast_id), "--out", str(target))
    assert result.exit_code == 1
    assert "does not exist" in one_error_line(result)


def test_the_demo_runs_end_to_end_and_verifies(tmp_path: Path) -> None:
    """demo --recipients 30 sends, retries, takes reports, exports, acknowledges and verifies."""
    db = tmp_path / "demo.db"
    result = run("--db", f"sqlite:///{db}", "demo", "--recipients", "30")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Projections match the event log." in out
    assert re.search(r"duplicate\s*│\s*1\s", out)
    assert re.search(r"late\s*│\s*1\s", out)
    assert (tmp_path / "members_results.csv").is_file()
    assert (tmp_path / "members_errors.csv").is_file()
    assert db.with_name("demo.db.key").is_file()
    [bid] = re.findall(r"Broadcast ([0-9a-f-]{36}): 30 recipients scheduled", out)
    key = bytes.fromhex(db.with_name("demo.db.key").read_text())
    with BroadcastService.open(
        f"sqlite:///{db}", return_path="bounces@localhost", signing_key=key
    ) as svc:
        s = svc.summary(uuid.UUID(bid))
        assert s.recipients == s.delivered == 30
        assert s.unacknowledged_errors == 0
        assert s.errors >= 1
        assert svc.verify_projections() == []


def test_the_demo_refuses_an_existing_database(store: Store) -> None:
    """The demo starts from an empty store: an existing file is an error, left untouched."""
    before = store.path.read_bytes()
    result = run("--db", store.url, "demo", "--recipients", "5")
    assert result.exit_code == 1
    assert "already exists" in one_error_line(result)
    assert store.path.read_bytes() == before
