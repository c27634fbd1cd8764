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


def per_call_ms(first: Any, second: Any, calls: int = CALLS) -> tuple[float, float]:
    """Median milliseconds of one call of each, alternating calls so drift hits both alike."""
    a, b = [], []
    for _ in range(calls):
        start = time.perf_counter()
        first()
        middle = time.perf_counter()
        second()
        a.append(middle - start)
        b.append(time.perf_counter() - middle)
    return statistics.median(a) * 1000, statistics.median(b) * 1000


def run(quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else 100_000
    with scratch_dir() as d:
        svc = open_service(d)
        try:
            small = create_broadcast(svc, contacts(1_000, prefix="small"))
            large = create_broadcast(svc, contacts(n, prefix="large"))
            svc.catch_up()
            big, little = [], []
            for rep in range(REPS):
                # Alternate which goes first, so neither always runs on a warmer cache.
                if rep % 2:
                    s_ms, b_ms = per_call_ms(lambda: svc.summary(small), lambda: svc.summary(large))
                else:
                    b_ms, s_ms = per_call_ms(lambda: svc.summary(large), lambda: svc.summary(small))
                big.append(b_ms)
                little.append(s_ms)
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
