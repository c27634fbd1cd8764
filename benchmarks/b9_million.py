"""B9: one broadcast of 1,000,000 recipients end to end on SQLite, in bounded memory.

Phases, each timed: schedule (``create_broadcast``), send (``dispatch_due``
until nothing is due), projections (``rebuild_projections`` from the whole
log, then ``summary``), export (the result CSV, streamed to a file).

The send phase uses an in-process transport that accepts every message: over
SMTP to the aiosmtpd sink the run would take far longer (B2 measures SMTP),
while the messages are still built in full (MIME, VERP, Message-ID) and every
claim and outcome is recorded, which is the memory this benchmark is about.

The recipients come from a generator, as a host with a million of them
would pass them (a list of a million ``Contact`` objects alone is ~250 MB).

Memory is the peak RSS of this process (its own high-water mark, ``VmHWM`` on
Linux), read after each phase.

Anchor, measured after the four phases and their memory readings, on the same
store: the sum of the anchors of B1 (a raw ``executemany`` of the rows the
schedule phase committed, one transaction, WAL), B5 (``select_notifications``
and decoding of every event in the log) and B6 (``csv.writer`` over a raw
``SELECT`` of the recipient rows) at this size. Ratio: the four phases' time
over that sum (the send phase has no anchor in the sum: B2 measures sending).

Run: ``python benchmarks/b9_million.py [--quick]`` (quick: 20,000 recipients);
``python -m benchmarks --only B9`` runs that script in a child process.
"""

from __future__ import annotations

import argparse
import csv  # noqa: TID251 - the B6 anchor is plain csv.writer, outside the library
import gc
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broadcast_domain import (
    Actor,
    AddressBookRole,
    AddressBookSource,
    BroadcastService,
    Contact,
    InboxRole,
)
from broadcast_domain.ports import OutgoingMessage, TransportReply

FULL = 1_000_000
QUICK = 20_000
GOAL_MB = 256
ACTOR = Actor(
    "bench",
    inbox_roles={"inbox": InboxRole.OPERATOR},
    address_book_roles={"book": AddressBookRole.ADMIN},
)


class AcceptAll:
    """A MailTransport that takes every message at once (250), keeping nothing."""

    def __init__(self) -> None:
        self.bytes = 0

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        self.bytes += sum(len(m.data) for m in messages)
        return [TransportReply(m.key, 250, "2.0.0 OK") for m in messages]

    def close(self) -> None:
        return None


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB.

    On Linux, the high-water mark of this process's own memory (``VmHWM``):
    ``ru_maxrss`` of a process started by ``subprocess`` already holds the
    resident size of the process that started it (the kernel keeps the larger
    of the two across ``exec``), so a child of the benchmark table's run, after
    B1-B8, would report that run's peak and not its own. Elsewhere
    ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / (1024 * 1024)


def contacts(n: int) -> Iterator[Contact]:
    for i in range(n):
        yield Contact(
            f"member{i:07d}@example.jp", last_name="山田", first_name=f"太郎{i}", company="ACME"
        )


def run(quick: bool) -> dict[str, Any]:
    """Run B9 (20,000 recipients when ``quick``) in a child process; return its figures.

    A process's peak keeps everything it ran, so the benchmark table's run
    (after B1-B8 in one process) measures B9 in a fresh interpreter, which reads
    its own high-water mark (:func:`peak_rss_mb`).
    """
    command = [sys.executable, os.path.abspath(__file__), *(["--quick"] if quick else [])]
    done = subprocess.run(command, stdout=subprocess.PIPE, check=True)
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def measure(quick: bool) -> dict[str, Any]:
    """Run B9 in this process (20,000 recipients when ``quick``) and return its figures."""
    n = QUICK if quick else FULL
    phases: dict[str, float] = {}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'b9.db'}"
        start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        svc = BroadcastService.open(
            url,
            return_path="bounces@mail.example.com",
            signing_key=b"b9-signing-key-0123456789abcdef",
            clock=lambda: start,
        )

        def phase(name: str, began: float) -> None:
            gc.collect()
            phases[name] = round(time.perf_counter() - began, 2)
            rss[name] = round(peak_rss_mb(), 1)
            # A full run takes long on a busy machine: show each phase as it ends.
            print(f"B9 {name}: {phases[name]} s, peak RSS {rss[name]} MB", file=sys.stderr)

        began = time.perf_counter()
        bid = svc.create_broadcast(
            account_id="acct",
            inbox_id="inbox",
            sender="news@example.com",
            subject="お知らせ",
            text_body="本文です。\n" * 20,
            source=AddressBookSource("book"),
            recipients=contacts(n),
            scheduled_at=start,
            actor=ACTOR,
        )
        phase("schedule", began)

        began = time.perf_counter()
        transport = AcceptAll()
        sent = 0
        while True:
            report = svc.dispatch_due(transport, max_messages=50_000)
            sent += report.sent
            if not report.sent:
                break
        phase("send", began)

        began = time.perf_counter()
        svc.rebuild_projections()
        summary = svc.summary(bid)
        phase("projections", began)

        began = time.perf_counter()
        out = Path(folder) / "results.csv"
        rows = _export(svc, bid, out)
        phase("export", began)
        anchors = _anchors(svc, Path(folder), bid)
        svc.close()

    complete = summary.succeeded == n and sent == n and rows == n
    peak = max(rss.values())
    ours_s = sum(phases.values())
    anchor_s = sum(anchors.values())
    ratio = ours_s / anchor_s
    return {
        "metric": "B9",
        "ours": f"{n:,} recipients, {ours_s:.0f} s, peak RSS {peak:.0f} MB",
        "anchor": f"{anchor_s:.1f} s (B1 + B5 + B6 anchors at this size)",
        "ratio": round(ratio, 2),
        "goal": "completes; peak RSS < 256 MB; ratio recorded",
        "met": complete and peak < GOAL_MB,
        "anchor_seconds": anchors,
        "note": "ratio = time of the four phases / the sum of the three anchors",
        "recipients": n,
        "completed": complete,
        "peak_rss_mb": peak,
        "peak_rss_mb_after": rss,
        "phase_seconds": phases,
        "transport": "in-process, accepts all (messages built in full)",
    }


_RAW_TABLE = (
    "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, "
    "state BLOB, PRIMARY KEY (originator_id, originator_version))"
)
_RAW_EXPORT = (
    "SELECT status, acknowledged_at, last_name, first_name, address, company, "
    "detail_message, status_updated_at "
    "FROM bd_recipients WHERE broadcast_id = ? ORDER BY position"
)
_ANCHOR_BATCH = 50_000


def _anchors(svc: BroadcastService, folder: Path, bid: Any) -> dict[str, float]:
    """Seconds of the B1, B5 and B6 anchors on this run's store, each in bounded memory."""
    db = str(folder / "b9.db")
    source = sqlite3.connect(db)
    # B1: the schedule phase's rows (the first recipient_count + 1 events), raw, one
    # transaction; read in batches beforehand so that only the inserts are timed.
    scheduled = svc.summary(bid).recipients + 1
    raw = sqlite3.connect(str(folder / "raw.db"), isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute(_RAW_TABLE)
    cursor = source.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events "
        "ORDER BY rowid LIMIT ?",
        (scheduled,),
    )
    b1 = 0.0
    raw.execute("BEGIN")
    while batch := cursor.fetchmany(_ANCHOR_BATCH):
        began = time.perf_counter()
        raw.executemany("INSERT INTO stored_events VALUES (?,?,?,?)", batch)
        b1 += time.perf_counter() - began
    began = time.perf_counter()
    raw.execute("COMMIT")
    b1 += time.perf_counter() - began
    raw.close()
    os.remove(folder / "raw.db")
    # B5: every event read and decoded the way the projections' reader does.
    gc.collect()
    began = time.perf_counter()
    log, position = svc.events, 0
    while batch5 := log.read(position, 5_000):
        position = batch5[-1][0]
    b5 = time.perf_counter() - began
    # B6: csv.writer over a raw SELECT of the recipient rows.
    began = time.perf_counter()
    with open(folder / "raw.csv", "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        for row in source.execute(_RAW_EXPORT, (bid.hex,)):
            w.writerow(row)
    b6 = time.perf_counter() - began
    source.close()
    return {"B1": round(b1, 2), "B5": round(b5, 2), "B6": round(b6, 2)}


def _export(svc: BroadcastService, bid: Any, out: Path) -> int:
    with out.open("wb") as f:
        count: int = svc.export_results_csv(bid, f, actor=ACTOR)
        return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 recipients")
    result = measure(parser.parse_args().quick)
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
