"""How the PostgreSQL store scales with processes: event writes and dispatch throughput.

``writers``: 1, 2 and 4 processes append events for a fixed time (one event
per write, and 100 per write) through the event log; eventsourcing takes an
EXCLUSIVE lock on the events table for every write, so this shows where that
serialisation puts the ceiling. ``dispatch``: one broadcast sent by 1, 2 and 4
dispatcher processes (``dispatch_due(max_messages=200)`` loops, one smtplib
connection each) to an aiosmtpd sink on 127.0.0.1; messages per second, wall
clock from the start barrier to the last process done. Everything runs on a
private embedded server with durable settings.
"""

from __future__ import annotations

import multiprocessing
import smtplib
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from broadcast_domain import Actor, AddressBookSource, BroadcastService, Contact, InboxRole
from broadcast_domain.application.eventlog import EventLog, parse_store_url
from broadcast_domain.domain.events import Scheduled
from broadcast_domain.ports import OutgoingMessage, TransportReply
from broadcast_domain.testing.postgres import embedded_postgres_server

ACTOR = Actor("bench", inbox_roles={"inbox": InboxRole.OPERATOR})
KEY = b"bench-signing-key-0123456789abcd"


def _writer(url: str, size: int, seconds: float, start: Any, out: Any) -> None:
    log = EventLog(parse_store_url(url))
    bid = uuid.uuid4()
    now = datetime.now(UTC)
    start.wait()
    written = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        log.put(
            [
                Scheduled(
                    originator_id=uuid.uuid4(),
                    originator_version=1,
                    timestamp=now,
                    broadcast_id=bid,
                    account_id="acme",
                    address=f"w{written + i}@example.com",
                    last_name="",
                    first_name="",
                    company="",
                    contact_id=None,
                    position=written + i,
                )
                for i in range(size)
            ]
        )
        written += size
    log.close()
    out.put(written)


class _Transport:
    def __init__(self, port: int) -> None:
        self.smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        for m in messages:
            self.smtp.sendmail(m.envelope_from, [m.recipient], m.data)
        return [TransportReply(m.key, 250, "2.0.0 OK") for m in messages]

    def close(self) -> None:
        self.smtp.quit()


def _dispatcher(url: str, port: int, start: Any, out: Any) -> None:
    transport = _Transport(port)
    with BroadcastService.open(url, return_path="b@mail.example.com", signing_key=KEY) as svc:
        start.wait()
        while True:
            if svc.dispatch_due(transport, max_messages=200).sent:
                continue
            if all(b.status.value == "sent" for b in svc.list_broadcasts("inbox").items):
                break
            time.sleep(0.02)
    transport.close()
    out.put(time.perf_counter())


def _sink() -> tuple[Any, int]:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port


def run(quick: bool) -> dict[str, Any]:
    """Events/s by writer count and batch size; messages/s by dispatcher count."""
    ctx = multiprocessing.get_context("spawn")
    seconds = 3.0 if quick else 10.0
    recipients = 3_000 if quick else 10_000
    result: dict[str, Any] = {"metric": "scale-postgres", "writers": {}, "dispatch": {}}
    controller, port = _sink()
    try:
        with embedded_postgres_server(durable=True) as databases:
            for size in (1, 100):
                for k in (1, 2, 4):
                    url = databases()
                    EventLog(parse_store_url(url)).close()  # schema first, outside the timing
                    start, out = ctx.Barrier(k + 1), ctx.Queue()
                    procs = [
                        ctx.Process(target=_writer, args=(url, size, seconds, start, out))
                        for _ in range(k)
                    ]
                    for p in procs:
                        p.start()
                    start.wait()
                    total = sum(out.get(timeout=600) for _ in procs)
                    for p in procs:
                        p.join()
                    result["writers"][f"{k} x {size}/write"] = round(total / seconds)
            for k in (1, 2, 4):
                url = databases()
                with BroadcastService.open(
                    url, return_path="b@mail.example.com", signing_key=KEY
                ) as svc:
                    svc.create_broadcast(
                        account_id="acme",
                        inbox_id="inbox",
                        sender="news@example.com",
                        subject="Scale",
                        text_body="Hello",
                        source=AddressBookSource("book-1"),
                        recipients=[Contact(f"r{i:06d}@example.com") for i in range(recipients)],
                        scheduled_at=datetime.now(UTC) - timedelta(minutes=1),
                        actor=ACTOR,
                    )
                    svc.catch_up()
                start, out = ctx.Barrier(k + 1), ctx.Queue()
                procs = [
                    ctx.Process(target=_dispatcher, args=(url, port, start, out)) for _ in range(k)
                ]
                for p in procs:
                    p.start()
                start.wait()
                began = time.perf_counter()
                ended = max(out.get(timeout=1800) for _ in procs)
                for p in procs:
                    p.join()
                result["dispatch"][f"{k} processes"] = round(recipients / (ended - began))
    finally:
        controller.stop()
    return result


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
