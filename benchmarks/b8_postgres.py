"""B8: schedule a broadcast of 100,000 recipients on PostgreSQL, against raw psycopg.

Ours: ``create_broadcast`` from the call to committed events on a private
embedded PostgreSQL server (durable settings). Anchor, in the same run and on
the same server: psycopg ``executemany`` of the same stored-event rows (the
bytes our mapper produces for those events) into a table shaped like
eventsourcing's, in one transaction. Figures are events per second, median of 3.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks._common import result
from broadcast_domain import Actor, AddressBookSource, BroadcastService, Contact, InboxRole
from broadcast_domain.domain.events import Scheduled
from broadcast_domain.domain.recipient import recipient_id
from broadcast_domain.testing.postgres import PostgresDatabases, embedded_postgres_server

ACTOR = Actor("bench", inbox_roles={"inbox": InboxRole.OPERATOR})
KEY = b"bench-signing-key-0123456789abcd"


def _contacts(n: int) -> list[Contact]:
    return [
        Contact(f"user{i:06d}@example.com", last_name="山田", first_name="太郎", company="ACME")
        for i in range(n)
    ]


def _ours(databases: PostgresDatabases, n: int) -> float:
    contacts = _contacts(n)
    with BroadcastService.open(
        databases(), return_path="b@mail.example.com", signing_key=KEY
    ) as svc:
        started = time.perf_counter()
        svc.create_broadcast(
            account_id="acme",
            inbox_id="inbox",
            sender="news@example.com",
            subject="B8",
            text_body="Hello",
            source=AddressBookSource("book-1"),
            recipients=contacts,
            scheduled_at=datetime.now(UTC) + timedelta(hours=1),
            actor=ACTOR,
        )
        elapsed = time.perf_counter() - started
    return (n + 1) / elapsed


def _rows(n: int) -> list[tuple[Any, ...]]:
    # The very rows our event log writes: the same mapper, the same events.
    from broadcast_domain.codec import AttrsMapper

    mapper = AttrsMapper()
    bid = uuid.uuid4()
    now = datetime.now(UTC)
    rows = []
    for i, c in enumerate(_contacts(n)):
        event = Scheduled(
            originator_id=recipient_id(bid, c.address),
            originator_version=1,
            timestamp=now,
            broadcast_id=bid,
            account_id="acme",
            address=c.address,
            last_name=c.last_name,
            first_name=c.first_name,
            company=c.company,
            contact_id=None,
            position=i,
        )
        s = mapper.to_stored_event(event)
        rows.append((s.originator_id, s.originator_version, s.topic, s.state))
    return rows


def _anchor(databases: PostgresDatabases, rows: list[tuple[Any, ...]]) -> float:
    name = databases.create("b8_anchor")
    with databases.connect(name) as conn:
        conn.execute(
            "CREATE TABLE stored_events (originator_id uuid NOT NULL, originator_version bigint "
            "NOT NULL, topic text, state bytea, notification_id bigserial, "
            "PRIMARY KEY (originator_id, originator_version))"
        )
        conn.execute("CREATE UNIQUE INDEX ON stored_events (notification_id)")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
                "VALUES (%s, %s, %s, %s)",
                rows,
            )
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed


def run(quick: bool) -> dict[str, Any]:
    """Measure B8; ``quick`` uses 20,000 recipients and one round instead of 100,000 and three."""
    n = 20_000 if quick else 100_000
    rounds = 1 if quick else 3
    with embedded_postgres_server(durable=True) as databases:
        rows = _rows(n)
        ours, anchor = [], []
        for _ in range(rounds):
            anchor.append(_anchor(databases, rows))
            ours.append(_ours(databases, n))
    o, a = statistics.median(ours), statistics.median(anchor)
    return result(
        "B8",
        title="B1 on PostgreSQL",
        ours=o,
        anchor=a,
        unit="events/s",
        ratio=a / o,
        goal="<= 2",
        size=f"{n:,} recipients{' (quick)' if quick else ''}",
        note="ratio = raw psycopg executemany rate / ours",
        recipients=n,
    )


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
