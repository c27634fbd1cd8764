"""B7: acknowledge 10,000 errors.

A broadcast of 10,000 recipients that all bounced (Sent, Bounced), with
projections up to date. Ours: ``acknowledge_errors`` (records one
ErrorAcknowledged per error and brings the projections up to date). Anchor:
one raw SQL ``UPDATE`` that marks the same 10,000 rows acknowledged, in a copy
of the recipient table, one transaction. Ratio: our time / the anchor's.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from functools import partial
from typing import Any

from benchmarks._common import (
    REPS,
    actor,
    median_of,
    open_service,
    record_history,
    result,
    scratch_dir,
    timed,
)

GOAL = "<= 5"


def copy_rows(directory: str, source: str) -> sqlite3.Connection:
    """A connection to a copy of the recipient table, with acknowledgement columns."""
    conn = sqlite3.connect(os.path.join(directory, "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"ATTACH DATABASE '{source}' AS src")
    conn.execute(
        "CREATE TABLE recipients AS SELECT *, NULL AS acknowledged_by FROM src.bd_recipients"
    )
    conn.execute(
        "CREATE INDEX recipients_unack ON recipients (broadcast_id, position) "
        "WHERE status = 'error' AND acknowledged_at IS NULL"
    )
    conn.execute("DETACH DATABASE src")
    return conn


def raw_update(conn: sqlite3.Connection, broadcast_hex: str, n: int) -> float:
    """Seconds a raw UPDATE of the broadcast's error rows takes, one transaction."""
    now = datetime.now(UTC).isoformat()

    def update() -> None:
        conn.execute("BEGIN")
        cur = conn.execute(
            "UPDATE recipients SET acknowledged_at = ?, acknowledged_by = ? "
            "WHERE broadcast_id = ? AND status = 'error' AND acknowledged_at IS NULL",
            (now, "bench", broadcast_hex),
        )
        assert cur.rowcount == n
        conn.execute("COMMIT")

    return timed(update)


def run(quick: bool) -> dict[str, Any]:
    n = 5_000 if quick else 10_000
    ours, anchor = [], []
    for _ in range(REPS):
        with scratch_dir() as d:
            svc = open_service(d)
            try:
                record_history(svc, n, lambda i: "error")
                bid = svc.list_broadcasts("support").items[0].broadcast_id
                assert svc.summary(bid).unacknowledged_errors == n
                raw = copy_rows(d, os.path.join(d, "bench.db"))  # the same rows, before
                ours.append(timed(partial(svc.acknowledge_errors, bid, actor=actor())))
                assert svc.summary(bid).unacknowledged_errors == 0
            finally:
                svc.close()
            try:
                anchor.append(raw_update(raw, bid.hex, n))
            finally:
                raw.close()
    ratio = median_of(ours) / median_of(anchor)
    return result(
        "B7",
        title="acknowledge 10,000 errors",
        ours=median_of(ours) * 1000,
        anchor=median_of(anchor) * 1000,
        unit="ms",
        ratio=ratio,
        goal=GOAL,
        size=f"{n:,} errors{' (quick)' if quick else ''}",
        note="ratio = our time / raw UPDATE time",
    )
