"""The worker commands as processes: dispatch, follow, ingest --watch, serve, demo --serve.

Each runs ``python -m broadcast_adapters.cli`` in a child process on a SQLite
file, is stopped with SIGTERM the way a service manager stops it, and must
have finished and recorded its work in hand and exited 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from broadcast_domain import (
    Actor,
    BounceReport,
    BroadcastService,
    Contact,
    CsvSource,
    DeliveryStatus,
    InboxRole,
)
from broadcast_domain.testing.fakes import FakeTransport
from broadcast_domain.testing.reports import report_on
from broadcast_domain.testing.smtp_server import SmtpSink

KEY = bytes(range(32))
RETURN_PATH = "bounces@mail.example.com"
ADMIN = Actor("op", inbox_roles={"support": InboxRole.ADMIN})
PATIENCE = 120.0  # seconds a child may take on a loaded machine before the test gives up


def _open(db: Path) -> BroadcastService:
    return BroadcastService.open(f"sqlite:///{db}", return_path=RETURN_PATH, signing_key=KEY)


def _store(tmp_path: Path, recipients: int) -> tuple[Path, UUID]:
    db = tmp_path / "broadcasts.db"
    with _open(db) as svc:
        bid = svc.create_broadcast(
            account_id="acme",
            inbox_id="support",
            sender="news@example.com",
            subject="お知らせ",
            text_body="本文",
            source=CsvSource("members.csv"),
            recipients=[
                Contact(f"user{i:04d}@example.jp", last_name="山田", first_name=f"{i}")
                for i in range(recipients)
            ],
            scheduled_at=datetime.now(UTC),
            actor=ADMIN,
        )
    return db, bid


class Child:
    """A command in a child process whose output lines are collected as they come."""

    def __init__(self, db: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broadcast_adapters.cli",
                "--db",
                f"sqlite:///{db}",
                "--signing-key",
                KEY.hex(),
                "--return-path",
                RETURN_PATH,
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + PATIENCE
        while not predicate():
            if self.proc.poll() is not None:
                self._reader.join(5)
                pytest.fail(
                    f"the command exited ({self.proc.returncode}) before {what}:\n"
                    + "\n".join(self.lines)
                )
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"gave up waiting for {what}:\n" + "\n".join(self.lines))
            time.sleep(0.05)

    def line(self, text: str) -> str:
        self.wait_for(lambda: any(text in line for line in self.lines), repr(text))
        return next(line for line in self.lines if text in line)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("the command did not stop on SIGTERM:\n" + "\n".join(self.lines))
        self._reader.join(5)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def child_processes() -> Iterator[list[Child]]:
    children: list[Child] = []
    yield children
    for child in children:
        if child.proc.poll() is None:
            child.kill()


def _run(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "broadcast_adapters.cli",
            "--db",
            f"sqlite:///{db}",
            "--signing-key",
            KEY.hex(),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((), "--smtp"),
        (("--smtp", "localhost"), "--smtp"),
        (("--smtp", "host:0"), "--smtp"),
        (("--smtp", "host:smtp"), "--smtp"),
    ],
)
def test_dispatch_without_a_port_is_a_usage_error(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    """dispatch needs --smtp HOST:PORT: without the port it exits 2 with one line naming it."""
    db, _ = _store(tmp_path, 1)
    result = _run(db, "dispatch", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert named in lines[0]


def test_dispatch_once_sends_everything_due_and_exits_0(tmp_path: Path) -> None:
    """One pass hands every due message to the SMTP server and records every reply."""
    db, bid = _store(tmp_path, 30)
    with SmtpSink(reject=["user0003@example.jp"]) as sink:
        result = _run(db, "dispatch", "--smtp", f"127.0.0.1:{sink.port}", "--once")
        received = len(sink.messages)
    assert result.returncode == 0, result.stderr
    assert "handed over" in result.stderr
    with _open(db) as svc:
        s = svc.summary(bid)
    assert (s.succeeded, s.errors, s.sending, s.scheduled) == (29, 1, 0, 0)
    assert received == 29


def test_sigterm_finishes_the_messages_in_hand_records_them_and_exits_0(
    tmp_path: Path, child_processes: list[Child]
) -> None:
    """Stopped mid-broadcast, the dispatcher leaves nothing half done: every message the
    server took is recorded as accepted, none is left sending, the rest stays scheduled."""
    db, bid = _store(tmp_path, 400)
    with SmtpSink(stall={f"user{i:04d}@example.jp": 0.02 for i in range(400)}) as sink:
        child = Child(
            db,
            "dispatch",
            "--smtp",
            f"127.0.0.1:{sink.port}",
            "--batch",
            "10",
            "--connections",
            "2",
        )
        child_processes.append(child)
        child.line("handed over")
        code = child.terminate()
        received = {m.recipient for m in sink.messages}
    assert code == 0, "\n".join(child.lines)
    assert any("finishing the work in hand" in line for line in child.lines)
    with _open(db) as svc:
        s = svc.summary(bid)
        accepted = {
            item.address
            for item in svc.recipients(bid, status=DeliveryStatus.SUCCEEDED, per_page=500).items
        }
    assert s.sending == 0
    assert accepted == received
    assert 0 < s.succeeded < 400
    assert s.scheduled == 400 - s.succeeded


def test_follow_keeps_the_projections_current_and_stops_on_sigterm(
    tmp_path: Path, child_processes: list[Child]
) -> None:
    """With a follower running, events recorded elsewhere reach the views without a read."""
    db, _ = _store(tmp_path, 5)
    child = Child(db, "follow", "--interval", "0.05")
    child_processes.append(child)
    child.line("projection follower started")
    with _open(db) as svc:
        transport = FakeTransport()
        svc.dispatch_due(transport)
        message = transport.accepted[0]
        svc.record_bounce(  # recorded, and not projected until someone reads
            BounceReport(
                recipient=message.recipient,
                status="5.1.1",
                diagnostic="550 5.1.1 User unknown",
                permanent=True,
                reported_at=datetime.now(UTC),
                verp_token=message.envelope_from.split("@")[0].split("+", 1)[1],
            )
        )
        child.wait_for(lambda: svc.projection_lag() == 0, "the follower to catch up")
    # The follower logs after its transaction commits, and the line reaches us after
    # that: wait for it rather than look at once (the lag can be 0 a moment before).
    child.line("projections applied up to position")
    assert child.terminate() == 0
    assert any("projection follower stopped" in line for line in child.lines)


def test_ingest_watch_records_bounces_as_they_arrive(
    tmp_path: Path, child_processes: list[Child]
) -> None:
    """A DSN dropped into the watched Maildir turns its recipient into an error."""
    db, bid = _store(tmp_path, 3)
    transport = FakeTransport()
    with _open(db) as svc:
        svc.dispatch_due(transport)
    maildir = tmp_path / "bounces"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    child = Child(db, "ingest", str(maildir), "--watch", "--interval", "0.1")
    child_processes.append(child)
    child.line("watching")
    message = transport.accepted[1]
    raw = report_on(
        message,
        BounceReport(
            recipient=message.recipient,
            status="5.1.1",
            diagnostic="User unknown",
            permanent=True,
            reported_at=datetime.now(UTC),
        ),
        reply_code="550",
    )
    (maildir / "tmp" / "1.msg").write_bytes(raw)
    (maildir / "tmp" / "1.msg").rename(maildir / "new" / "1.msg")
    child.line("ingested 1 bounce messages")
    assert child.terminate() == 0
    with _open(db) as svc:
        errors = svc.recipients(bid, status=DeliveryStatus.ERROR).items
    assert [e.address for e in errors] == [message.recipient]


def _url(line: str) -> str:
    return next(word for word in line.split() if word.startswith("http://"))


def test_serve_answers_on_127_0_0_1_and_stops_on_sigterm(
    tmp_path: Path, child_processes: list[Child]
) -> None:
    """serve prints a URL that answers, shows the list as the local operator, stops on SIGTERM."""
    db, bid = _store(tmp_path, 3)
    child = Child(db, "serve", "--port", "0", "--inbox", "support")
    child_processes.append(child)
    url = _url(child.line("Open http://127.0.0.1:"))
    base = url.split("/inboxes/")[0]
    assert httpx.get(f"{base}/healthz", timeout=30).json()["store"] == "reachable"
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200
    assert str(bid) in page.text
    assert child.terminate() == 0


def test_demo_serve_ends_by_serving_the_results_screen(
    tmp_path: Path, child_processes: list[Child]
) -> None:
    """demo --serve prints the results screen's URL; it shows the demo broadcast's bar."""
    child = Child(tmp_path / "demo.db", "demo", "--recipients", "20", "--serve", "--port", "0")
    child_processes.append(child)
    url = _url(child.line("Results screen: http://127.0.0.1:"))
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200
    assert "状況" in page.text
    assert 'data-field="recipients">20<' in page.text
    assert child.terminate() == 0
