"""B4: ``summary()`` of a 100,000-recipient broadcast vs a 1,000-recipient one.

Both broadcasts live in one SQLite store whose projections are up to date;
each call still runs ``catch_up()`` first (nothing new to apply). The anchor
is the small broadcast's summary in the same store: the ratio large / small
must stay near 1 (constant time), and a call must take under 1 ms.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks._common import REPS, contacts, create_broadcast, open_service, result, scratch_dir

GOAL = "<= 1.5"
CALLS = 300


def per_call_ms(fn: Any, calls: int = CALLS) -> float:
    """Median milliseconds of one call over ``calls`` calls."""
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def run(quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else 100_000
    with scratch_dir() as d:
        svc = open_service(d)
        try:
            small = create_broadcast(svc, contacts(1_000, prefix="small"))
            large = create_broadcast(svc, contacts(n, prefix="large"))
            svc.catch_up()
            big, little = [], []
            for _ in range(REPS):
                big.append(per_call_ms(lambda: svc.summary(large)))
                little.append(per_call_ms(lambda: svc.summary(small)))
            assert svc.summary(large).recipients == n
        finally:
            svc.close()
    ours, anchor = statistics.median(big), statistics.median(little)
    ratio = ours / anchor
    return result(
        "B4",
        title="summary() large vs 1,000 recipients",
        ours=ours,
        anchor=anchor,
        unit="ms/call",
        ratio=ratio,
        goal=GOAL + " and < 1 ms",
        met=ratio <= 1.5 and ours < 1.0,
        size=f"{n:,} vs 1,000 recipients{' (quick)' if quick else ''}",
        note="ratio = large / small; median of 3x300 calls",
    )
