"""B6: export the result CSV of 100,000 recipients.

Ours: ``export_results_csv`` into a file, rows per second, and the growth of
traced memory while it runs (``tracemalloc``, measured in a separate pass so
tracing does not slow the timed one). Anchor: ``csv.writer`` over a raw
``SELECT`` of the same eight cells from the recipient table. Ratio: our rate /
the anchor's.
"""

from __future__ import annotations

import csv  # noqa: TID251 - the anchor is plain csv.writer, outside the library
import os
import sqlite3
import tracemalloc
from typing import Any

from benchmarks._common import (
    REPS,
    actor,
    median_of,
    not_yet,
    open_service,
    record_history,
    result,
    scratch_dir,
    timed,
)

GOAL = ">= 0.5"
TITLE = "export the result CSV"
_STORIES = ("ok", "ok", "ok", "error", "acked")

# The recipient table holds the shown cells as columns, so the anchor selects them as
# they are (no formatting of times into the account's zone, no status labels).
_RAW = (
    "SELECT status, acknowledged_at, last_name, first_name, address, company, "
    "detail_message, status_updated_at "
    "FROM bd_recipients WHERE broadcast_id = ? ORDER BY position"
)


def raw_export(db: str, broadcast_hex: str, out: str) -> int:
    """Write the cells with csv.writer straight from a SELECT; return the row count."""
    conn = sqlite3.connect(db)
    try:
        with open(out, "w", encoding="utf-8-sig", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                [
                    "status",
                    "error_acknowledged_at",
                    "last_name",
                    "first_name",
                    "address",
                    "company",
                    "detail_message",
                    "status_updated_at",
                ]
            )
            n = 0
            for row in conn.execute(_RAW, (broadcast_hex,)):
                w.writerow(row)
                n += 1
            return n
    finally:
        conn.close()


def run(quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else 100_000
    size = f"{n:,} recipients{' (quick)' if quick else ''}"
    with scratch_dir() as d:
        svc = open_service(d)
        try:
            record_history(svc, n, lambda i: _STORIES[i % len(_STORIES)], chunk=n)
            bid = svc.list_broadcasts("support").items[0].broadcast_id
            svc.catch_up()
            db, out = os.path.join(d, "bench.db"), os.path.join(d, "out.csv")
            anchor = [timed(lambda: raw_export(db, bid.hex, out)) for _ in range(REPS)]
            anchor_rate = n / median_of(anchor)
            export = getattr(svc, "export_results_csv", None)
            if export is None:
                return not_yet(
                    "B6",
                    TITLE,
                    GOAL + " and memory growth <= 50 MB",
                    "BroadcastService.export_results_csv is not in the tree",
                    anchor=anchor_rate,
                    unit="rows/s",
                    size=size,
                )

            def ours_once() -> None:
                with open(out, "wb") as f:
                    export(bid, f, actor=actor())

            ours = [timed(ours_once) for _ in range(REPS)]
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                ours_once()
                growth_mb = (tracemalloc.get_traced_memory()[1] - base) / 2**20
            finally:
                tracemalloc.stop()
        finally:
            svc.close()
    ours_rate = n / median_of(ours)
    ratio = ours_rate / anchor_rate
    return result(
        "B6",
        title=TITLE,
        ours=ours_rate,
        anchor=anchor_rate,
        unit="rows/s",
        ratio=ratio,
        goal=GOAL + " and memory growth <= 50 MB",
        met=ratio >= 0.5 and growth_mb <= 50,
        size=size,
        note=f"ratio = ours / csv.writer over raw SELECT; memory growth {growth_mb:.1f} MB",
        memory_growth_mb=growth_mb,
    )
