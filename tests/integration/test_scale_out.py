"""Several dispatcher processes on one store, sending to one real SMTP sink: nobody is sent twice.

The dispatchers are separate processes (spawned), each looping
``dispatch_due(max_messages=200)`` over its own SMTP connection until nothing
is left; a follower process keeps the projections fresh; another process
reads the summary. The sink is aiosmtpd on 127.0.0.1.
"""

from __future__ import annotations

import collections
import multiprocessing
import multiprocessing.synchronize
import smtplib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from broadcast_domain import (
    Actor,
    AddressBookSource,
    BroadcastService,
    BroadcastStatus,
    Contact,
    InboxRole,
)
from broadcast_domain.application.follower import follow_projections
from broadcast_domain.ports import OutgoingMessage, TransportReply

ACTOR = Actor("operator-1", inbox_roles={"inbox": InboxRole.OPERATOR})
KEY = b"scale-out-signing-key-0123456789a"


class SmtplibTransport:
    """A MailTransport over one reused smtplib connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._smtp: smtplib.SMTP | None = None

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        if self._smtp is None:
            self._smtp = smtplib.SMTP(self.host, self.port, timeout=30)
        replies = []
        for m in messages:
            try:
                self._smtp.sendmail(m.envelope_from, [m.recipient], m.data)
                replies.append(TransportReply(m.key, 250, "2.0.0 OK"))
            except smtplib.SMTPRecipientsRefused as e:
                code, text = e.recipients[m.recipient]
                replies.append(TransportReply(m.key, code, text.decode(errors="replace")))
        return replies

    def close(self) -> None:
        if self._smtp is not None:
            self._smtp.quit()
            self._smtp = None


class _Sink:
    """An aiosmtpd handler that counts the messages each recipient received."""

    def __init__(self) -> None:
        self.received: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.update(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[_Sink, int]]:
    """A local SMTP server on 127.0.0.1 that accepts and counts everything."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def _open(url: str) -> BroadcastService:
    return BroadcastService.open(url, return_path="bounces@mail.example.com", signing_key=KEY)


def _dispatcher(url: str, port: int, start: multiprocessing.synchronize.Barrier, out: Any) -> None:
    sent = 0
    transport = SmtplibTransport("127.0.0.1", port)
    with _open(url) as svc:
        start.wait()
        idle_since = None
        while True:
            report = svc.dispatch_due(transport, max_messages=200)
            sent += report.sent
            if report.sent:
                idle_since = None
                continue
            # Nothing claimable: done once nothing is scheduled or in flight anywhere.
            broadcasts = svc.list_broadcasts("inbox").items
            if all(b.status is BroadcastStatus.SENT for b in broadcasts):
                break
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 120:
                raise RuntimeError("dispatch made no progress for two minutes")
            time.sleep(0.05)
    transport.close()
    out.put(sent)


def _follower(url: str, stop: multiprocessing.synchronize.Event) -> None:
    follow_projections(url, stop=stop, poll_interval=0.05)


def _read_summary(url: str, bid: Any, out: Any) -> None:
    with _open(url) as svc:
        s = svc.summary(bid)
        out.put(
            (
                s.status.value,
                s.recipients,
                s.succeeded,
                s.errors,
                s.delivered,
                s.sending,
                svc.verify_projections(),
            )
        )


def _run(url: str, port: int, n: int, processes: int, follower: bool) -> tuple[list[int], Any]:
    ctx = multiprocessing.get_context("spawn")
    with _open(url) as svc:
        bid = svc.create_broadcast(
            account_id="acme",
            inbox_id="inbox",
            sender="news@example.com",
            subject="Scale",
            text_body="Hello",
            source=AddressBookSource("book-1"),
            recipients=[Contact(f"r{i:05d}@example.com") for i in range(n)],
            scheduled_at=datetime.now(UTC) - timedelta(minutes=1),
            actor=ACTOR,
        )
    out = ctx.Queue()
    start = ctx.Barrier(processes)
    stop = ctx.Event()
    workers = [
        ctx.Process(target=_dispatcher, args=(url, port, start, out)) for _ in range(processes)
    ]
    follow = ctx.Process(target=_follower, args=(url, stop)) if follower else None
    if follow is not None:
        follow.start()
    for w in workers:
        w.start()
    sent = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(60)
    stop.set()
    if follow is not None:
        follow.join(60)
        assert follow.exitcode == 0
    assert [w.exitcode for w in workers] == [0] * processes
    reader = ctx.Process(target=_read_summary, args=(url, bid, out))
    reader.start()
    summary = out.get(timeout=120)
    reader.join(60)
    return sent, summary


@pytest.mark.postgres
@pytest.mark.slow
def test_three_dispatcher_processes_on_postgres_send_each_recipient_once(
    postgres_url: str, smtp_sink: tuple[_Sink, int]
) -> None:
    """5,000 recipients, 3 dispatchers and a follower: the sink gets exactly one message each."""
    sink, port = smtp_sink
    n = 5_000
    sent, summary = _run(postgres_url, port, n, processes=3, follower=True)
    assert sum(sent) == n
    assert len(sink.received) == n
    assert set(sink.received.values()) == {1}
    assert set(sink.received) == {f"r{i:05d}@example.com" for i in range(n)}
    assert summary == ("sent", n, n, 0, n, 0, [])


@pytest.mark.slow
def test_two_dispatcher_processes_on_one_sqlite_file_send_each_recipient_once(
    tmp_path: Any, smtp_sink: tuple[_Sink, int]
) -> None:
    """On a SQLite file two dispatcher processes share the work and nobody gets two messages."""
    sink, port = smtp_sink
    n = 600
    sent, summary = _run(f"sqlite:///{tmp_path / 'scale.db'}", port, n, processes=2, follower=True)
    assert sum(sent) == n
    assert len(sink.received) == n
    assert set(sink.received.values()) == {1}
    assert summary == ("sent", n, n, 0, n, 0, [])
