"""B1: schedule a broadcast of 100,000 recipients on SQLite.

Ours: ``create_broadcast`` from the call to committed events (the contact list
is built beforehand; opening the store is not timed). Anchor: a raw
``sqlite3.executemany`` of the very rows our run committed, into a table of
the same shape, one transaction, WAL. Ratio: anchor rate / our rate (how many
times slower we are); the goal is at most 2.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from benchmarks._common import (
    REPS,
    contacts,
    create_broadcast,
    median_of,
    open_service,
    result,
    scratch_dir,
    timed,
)

GOAL = "<= 2"
_TABLE = (
    "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, "
    "state BLOB, PRIMARY KEY (originator_id, originator_version))"
)


def schedule_once(directory: str, people: list[Any]) -> tuple[float, list[tuple[Any, ...]]]:
    """Seconds ``create_broadcast`` takes on a fresh store, and the rows it committed."""
    svc = open_service(directory)
    try:
        seconds = timed(lambda: create_broadcast(svc, people))
    finally:
        svc.close()
    conn = sqlite3.connect(os.path.join(directory, "bench.db"))
    rows = conn.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
    ).fetchall()
    conn.close()
    return seconds, rows


def raw_once(directory: str, rows: list[tuple[Any, ...]]) -> float:
    """Seconds a raw executemany of ``rows`` takes, one transaction, WAL."""
    conn = sqlite3.connect(os.path.join(directory, "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(_TABLE)

    def insert() -> None:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO stored_events VALUES (?,?,?,?)", rows)
        conn.execute("COMMIT")

    try:
        return timed(insert)
    finally:
        conn.close()


def run(quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else 100_000
    people = contacts(n)
    ours: list[float] = []
    anchor: list[float] = []
    events = 0
    for _ in range(REPS):
        with scratch_dir() as d:
            seconds, rows = schedule_once(d, people)
            ours.append(seconds)
            events = len(rows)
            anchor.append(raw_once(d, rows))
    ours_rate = events / median_of(ours)
    anchor_rate = events / median_of(anchor)
    return result(
        "B1",
        title="schedule a broadcast, SQLite",
        ours=ours_rate,
        anchor=anchor_rate,
        unit="events/s",
        ratio=anchor_rate / ours_rate,
        goal=GOAL,
        size=f"{n:,} recipients{' (quick)' if quick else ''}",
        note="ratio = raw executemany rate / ours",
        events=events,
        ours_seconds=median_of(ours),
        anchor_seconds=median_of(anchor),
    )
