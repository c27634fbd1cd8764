"""``python -m benchmarks``: run the metrics present in the tree and print one table.

Each ``benchmarks/bN_*.py`` module exposes ``run(quick: bool) -> dict`` with at
least ``metric, ours, anchor, ratio, goal``; a metric without a module, or
whose module says its parts are missing, is shown as "not yet" with the reason.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import re
import sys
import time
import traceback
from typing import Any

from benchmarks._common import judge

METRICS = {
    "B1": "schedule a broadcast (create_broadcast to committed events), SQLite",
    "B2": "dispatch messages through SmtpTransport to a local sink, events recorded",
    "B3": "ingest real bounce messages (parse, correlate, record)",
    "B4": "summary() on a large broadcast vs a 1,000-recipient one",
    "B5": "rebuild every projection, SQLite",
    "B6": "export the result CSV",
    "B7": "acknowledge 10,000 errors",
    "B8": "B1 on PostgreSQL",
    "B9": "1,000,000 recipients end to end on SQLite",
    "B10": "SES notifications through POST /webhooks/ses vs SesWebhook.handle directly",
    "B11": "reasons: share of corpus recipients whose reason equals Sisimai's",
    "B12": "bounce parsing of pathological inputs, time(2 MB) / time(1 MB)",
    "B13": "bounce parsing alone, corpus in memory, vs Sisimai",
}

_MODULE = re.compile(r"^b(\d+)_\w+$")


def _modules() -> dict[str, str]:
    import benchmarks

    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(benchmarks.__path__):
        m = _MODULE.match(info.name)
        if m:
            found[f"B{m.group(1)}"] = f"benchmarks.{info.name}"
    return found


def machine() -> dict[str, Any]:
    """What the figures were measured on (no paths)."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor()
    import sqlite3
    from importlib.metadata import PackageNotFoundError, version

    try:
        es_version = version("eventsourcing")
    except PackageNotFoundError:
        es_version = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "eventsourcing": es_version,
        "platform": platform.system(),
    }


def run_one(metric: str, module_name: str | None, quick: bool) -> dict[str, Any]:
    """Run one metric's module, or say why it is not measured."""
    title = METRICS[metric]
    if module_name is None:
        row: dict[str, Any] = {
            "metric": metric,
            "title": title,
            "ours": None,
            "anchor": None,
            "ratio": None,
            "goal": "",
            "met": None,
            "note": f"not yet: no benchmarks/b{metric[1:]}_*.py in the tree",
        }
        return row
    started = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
        row = dict(module.run(quick))
    except Exception as e:  # a broken benchmark is reported, never hidden or faked
        traceback.print_exc()
        row = {
            "metric": metric,
            "title": title,
            "ours": None,
            "anchor": None,
            "ratio": None,
            "goal": "",
            "met": None,
            "note": f"failed: {type(e).__name__}: {e}",
        }
    row.setdefault("metric", metric)
    row.setdefault("title", title)
    row.setdefault("note", "")
    if "met" not in row:
        row["met"] = judge(row.get("ratio"), str(row.get("goal", "")))
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def _fmt(value: Any) -> str:  # noqa: PLR0911 - one return per kind of figure
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        if value >= 0.01:
            return f"{value:.2f}"
        return f"{value:.4f}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    head = ["metric", "ours", "anchor", "unit", "ratio", "goal", "met?", "size", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["metric"],
            _fmt(r.get("ours")),
            _fmt(r.get("anchor")),
            str(r.get("unit", "")),
            _fmt(r.get("ratio")),
            str(r.get("goal", "")),
            _fmt(r.get("met")),
            str(r.get("size", "")),
            str(r.get("note", "")).replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under two minutes")
    parser.add_argument("--only", default="", help="comma-separated metric ids, e.g. B1,B4")
    parser.add_argument("--json", default="bench-results.json", help="where to write the results")
    args = parser.parse_args(argv)
    wanted = [m.strip().upper() for m in args.only.split(",") if m.strip()] or list(METRICS)
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        parser.error(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    modules = _modules()
    rows = []
    started = time.perf_counter()
    for metric in wanted:
        print(f"[{metric}] {METRICS[metric]} ...", file=sys.stderr, flush=True)
        row = run_one(metric, modules.get(metric), args.quick)
        print(
            f"[{metric}] ratio {_fmt(row.get('ratio'))} {row.get('note', '')} "
            f"({row.get('seconds', 0)} s)",
            file=sys.stderr,
            flush=True,
        )
        rows.append(row)
    report = {
        "quick": args.quick,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "results": rows,
    }
    print(table(rows))
    print(
        f"\n{'quick' if args.quick else 'full'} run, {report['seconds']} s; "
        f"{report['machine']['nproc']} CPUs, {report['machine']['cpu']}, "
        f"Python {report['machine']['python']}"
    )
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
