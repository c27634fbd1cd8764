"""B11: reasons, the share of corpus recipients whose ``reason`` equals Sisimai's.

A quality figure, not a speed: every ``bounce`` file of the corpus is parsed
and each failed (or delayed) report's reason is compared with the reason
Sisimai's test tables give, per file as a multiset (the tables give no
addresses). The status+permanence agreement is printed beside it. The figures
are the ones the corpus test asserts (``tests/integration/test_bounce_corpus.py``).
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import not_yet, result
from benchmarks.b3_ingest import _corpus

GOAL = ">= 0.85"
TITLE = "reasons: share of corpus recipients whose reason equals Sisimai's"


def agreement(folder: Path) -> tuple[int, int, int]:
    """(recipients, reasons agreeing, status and permanence agreeing) over the bounce files."""
    from broadcast_adapters.bounces.parser import parse_bounce

    pseudo = ("0.9", "9.2")
    items = json.loads((folder / "expectations.json").read_text("utf-8"))["items"]
    total = reasons = statuses = 0
    for item in items:
        if item["kind"] != "bounce":
            continue
        parsed = parse_bounce((folder / "set-of-emails" / item["file"]).read_bytes())
        got = [r for r in parsed.reports if r.action in ("failed", "delayed")]
        want = item["recipients"]
        total += len(want)
        reasons += sum(
            (
                collections.Counter(r["reason"] for r in want)
                & collections.Counter(r.reason for r in got)
            ).values()
        )
        expected = [
            ("no code" if r["status"][2:5] in pseudo else r["status"], r["status"][0] == "5")
            for r in want
        ]
        found = [(r.status or "no code", r.permanent) for r in got]
        statuses += sum((collections.Counter(expected) & collections.Counter(found)).values())
    return total, reasons, statuses


def run(quick: bool) -> dict[str, Any]:
    """Measure B11 and return its table row."""
    folder = _corpus()
    if folder is None:
        return not_yet("B11", TITLE, GOAL, "the bounce corpus is missing; set BROADCAST_CORPUS")
    total, reasons, statuses = agreement(folder)
    ratio = reasons / total
    return result(
        "B11",
        title=TITLE,
        ours=float(reasons),
        anchor=float(total),
        unit="recipients",
        ratio=round(ratio, 4),
        goal=GOAL,
        size=f"{total} recipients",
        note=f"status+permanence agreement {statuses}/{total} = {statuses / total:.1%}",
    )


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2, ensure_ascii=False))
