"""B9: one broadcast of 1,000,000 recipients end to end on SQLite.

Schedule (``create_broadcast``), bring the projections up to date, send to
the local sink through ``SmtpTransport`` when it is in the tree, then read the
summary. Runs in a child process so its peak RSS (``resource.getrusage``) is
its own. No anchor: the goal is that it completes under 1 GB; the figures are
recorded. Skipped with ``--quick``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from benchmarks._common import (
    contacts,
    create_broadcast,
    not_yet,
    open_service,
    peak_rss_mb,
    result,
    scratch_dir,
)

N = 1_000_000
TITLE = "1,000,000 recipients end to end, SQLite"
GOAL = "completes, peak RSS < 1 GB"


def child() -> dict[str, Any]:
    """The measured run (in the child process)."""
    figures: dict[str, Any] = {}
    with scratch_dir() as d:
        svc = open_service(d)
        try:
            people = contacts(N)
            start = time.perf_counter()
            bid = create_broadcast(svc, people)
            figures["schedule_s"] = time.perf_counter() - start
            del people
            start = time.perf_counter()
            svc.catch_up()
            figures["project_s"] = time.perf_counter() - start
            from benchmarks.b2_dispatch import smtp_transport_class

            SmtpTransport = smtp_transport_class()
            if SmtpTransport is None:
                figures["send"] = (
                    "not yet: broadcast_adapters.smtp.SmtpTransport is not in the tree"
                )
            else:
                from benchmarks._sink import Sink

                with Sink() as port:
                    transport = SmtpTransport("127.0.0.1", port, connections=4)
                    start = time.perf_counter()
                    report = svc.dispatch_due(transport)
                    figures["send_s"] = time.perf_counter() - start
                    transport.close()
                figures["sent"] = report.sent
            summary = svc.summary(bid)
            figures["recipients"] = summary.recipients
        finally:
            svc.close()
    figures["peak_rss_mb"] = peak_rss_mb()
    return figures


def run(quick: bool) -> dict[str, Any]:
    if quick:
        return not_yet("B9", TITLE, GOAL, "skipped with --quick (takes minutes)", size=f"{N:,}")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.b9_million", "--child"],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    total = figures["schedule_s"] + figures["project_s"] + figures.get("send_s", 0.0)
    done = figures["recipients"] == N
    sending = figures.get("send", "")
    return result(
        "B9",
        title=TITLE,
        ours=total,
        anchor=None,
        unit="s",
        ratio=None,
        goal=GOAL,
        met=done and figures["peak_rss_mb"] < 1024 if not sending else None,
        size=f"{N:,} recipients",
        note=(
            f"schedule {figures['schedule_s']:.0f} s, projections {figures['project_s']:.0f} s, "
            + (f"send {figures['send_s']:.0f} s, " if "send_s" in figures else "")
            + f"peak RSS {figures['peak_rss_mb']:.0f} MB"
            + (f"; send {sending}" if sending else "")
        ),
        **figures,
    )


if __name__ == "__main__" and "--child" in sys.argv:
    print(json.dumps(child()))
