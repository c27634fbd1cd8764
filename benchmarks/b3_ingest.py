"""B3: ingest real bounce messages (parse, correlate, record) on a SQLite file.

Setup (not timed): a broadcast of N recipients (5,000; 1,000 with ``quick``)
is dispatched through ``ScriptedTransport`` on a SQLite file; then N real
bounces from the corpus (the ones with one failed report that names its
recipient and quotes the original's Message-ID) are retargeted, one per
delivery: half at the delivery's VERP address, half at its Message-ID only.

Ours: ``BroadcastService.ingest`` over those N messages from an in-memory
``BounceSource``, from the call to every event committed and every message
marked done, on a fresh copy of the dispatched store each repetition.
Anchor: ``flufl.bounce.scan_message`` over the same bytes (``email`` parsing
included), parse only. Ratio: our rate / anchor rate; the goal is at least 1.0.
A Maildir run (file reads, renames and fsyncs included) is reported beside it.

The corpus is found through ``BROADCAST_CORPUS`` or next to the repository as
``../shared/corpus``.
"""

from __future__ import annotations

import email
import gc
import json
import mailbox
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

GOAL = ">= 1.0"
TITLE = "ingest real bounce messages (parse, correlate, record)"
REPS = 3
SIGNING_KEY = b"benchmark-signing-key-0123456789"
RETURN_PATH = "bounces@bench.example.com"


def _corpus() -> Path | None:
    configured = os.environ.get("BROADCAST_CORPUS")
    root = Path(__file__).resolve().parent.parent
    folder = Path(configured) if configured else root.parent / "shared" / "corpus"
    return folder if (folder / "expectations.json").is_file() else None


def _timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class ListSource:
    """A BounceSource over messages held in memory (no file I/O in the measurement)."""

    def __init__(self, messages: list[bytes]) -> None:
        from broadcast_domain.ports import IncomingBounce

        self.items = [IncomingBounce(key=str(i), raw=raw) for i, raw in enumerate(messages)]
        self.done: set[str] = set()
        self.aside: dict[str, str] = {}

    def __iter__(self) -> Iterator[Any]:
        return (item for item in self.items if item.key not in self.done)

    def mark_done(self, key: str) -> None:
        self.done.add(key)

    def set_aside(self, key: str, reason: str) -> None:
        self.aside[key] = reason
        self.done.add(key)


def corpus_seeds(folder: Path) -> list[bytes]:
    """Real bounces with one failed report naming its recipient and quoting a Message-ID."""
    from broadcast_adapters.bounces.parser import parse_bounce

    items = json.loads((folder / "expectations.json").read_text("utf-8"))["items"]
    seeds = []
    for item in items:
        if item["kind"] != "bounce":
            continue
        raw = (folder / "set-of-emails" / item["file"]).read_bytes()
        parsed = parse_bounce(raw)
        reports = parsed.reports
        if (
            len(reports) == 1
            and reports[0].action == "failed"
            and reports[0].recipient
            and parsed.original_message_ids
        ):
            seeds.append(raw)
    return seeds


def build_store(directory: str, n: int) -> tuple[str, list[Any]]:
    """A SQLite file with a dispatched broadcast of ``n``; the messages handed over."""
    from broadcast_domain import Actor, BroadcastService, Contact, CsvSource, InboxRole
    from broadcast_domain.testing.machine import ScriptedTransport

    path = os.path.join(directory, "seed.db")
    svc = BroadcastService.open(
        f"sqlite:///{path}", return_path=RETURN_PATH, signing_key=SIGNING_KEY
    )
    try:
        svc.create_broadcast(
            account_id="acme",
            inbox_id="support",
            sender="news@example.com",
            subject="Benchmark news",
            text_body="Hello,\nthis is the benchmark broadcast.\n",
            source=CsvSource("members.csv"),
            recipients=[Contact(f"user{i}@example.com", last_name="山田") for i in range(n)],
            scheduled_at=svc.now(),
            actor=Actor("bench", inbox_roles={"support": InboxRole.ADMIN}),
        )
        transport = ScriptedTransport()
        svc.dispatch_due(transport)
        svc.catch_up()
    finally:
        svc.close()
    return path, transport.sent


def retargeted(seeds: list[bytes], sent: list[Any]) -> list[bytes]:
    """One real bounce per delivery: even ones at its VERP address, odd ones at its Message-ID."""
    from broadcast_adapters.bounces.parser import parse_bounce
    from broadcast_domain.testing.bounces import retarget

    hints = [parse_bounce(raw) for raw in seeds]
    out = []
    for i, m in enumerate(sent):
        raw, parsed = seeds[i % len(seeds)], hints[i % len(seeds)]
        pairs = [(parsed.reports[0].recipient or "", m.recipient)]
        if i % 2:
            pairs += [
                (mid.strip("<>"), m.message_id.strip("<>")) for mid in parsed.original_message_ids
            ]
            out.append(retarget(raw, replacements=pairs))
        else:
            out.append(retarget(raw, replacements=pairs, to=m.envelope_from))
    return out


def _copy_store(seed: str, directory: str, name: str) -> str:
    target = os.path.join(directory, name)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(seed + suffix):
            shutil.copyfile(seed + suffix, target + suffix)
    return target


def ingest_once(
    seed: str, directory: str, messages: list[bytes], rep: int, maildir: bool = False
) -> tuple[float, dict[str, int]]:
    """Seconds one ``ingest`` of ``messages`` takes on a fresh copy of the store, and its counts."""
    from broadcast_domain import BroadcastService

    path = _copy_store(seed, directory, f"run{rep}{'-maildir' if maildir else ''}.db")
    svc = BroadcastService.open(
        f"sqlite:///{path}", return_path=RETURN_PATH, signing_key=SIGNING_KEY
    )
    try:
        svc.catch_up()
        source: Any
        if maildir:
            from broadcast_adapters.bounces.sources import MaildirSource

            box = mailbox.Maildir(os.path.join(directory, f"box{rep}"), create=True)
            for raw in messages:
                box.add(mailbox.MaildirMessage(raw))
            source = MaildirSource(os.path.join(directory, f"box{rep}"))
        else:
            source = ListSource(messages)
        counts: dict[str, int] = {}

        def go() -> None:
            counts.update(svc.ingest(source))

        seconds = _timed(go)
    finally:
        svc.close()
    return seconds, counts


def anchor_once(messages: list[bytes]) -> float:
    """Seconds flufl.bounce takes to parse and scan every message."""
    from flufl.bounce import scan_message

    def go() -> None:
        for raw in messages:
            scan_message(email.message_from_bytes(raw))

    return _timed(go)


def run(quick: bool) -> dict[str, Any]:
    """Measure B3 and return its table row."""
    n = 1_000 if quick else 5_000
    folder = _corpus()
    base = {
        "metric": "B3",
        "title": TITLE,
        "unit": "messages/s",
        "goal": GOAL,
        "size": f"{n:,} messages",
    }
    if folder is None:
        return {
            **base,
            "ours": None,
            "anchor": None,
            "ratio": None,
            "met": None,
            "note": "not yet: the bounce corpus is missing; set BROADCAST_CORPUS",
            "not_yet": True,
        }
    seeds = corpus_seeds(folder)
    directory = tempfile.mkdtemp(prefix="bd-bench-b3-")
    try:
        seed_db, sent = build_store(directory, n)
        messages = retargeted(seeds, sent)
        ours: list[float] = []
        anchor: list[float] = []
        counts: dict[str, int] = {}
        for rep in range(REPS):
            seconds, counts = ingest_once(seed_db, directory, messages, rep)
            ours.append(seconds)
            anchor.append(anchor_once(messages))
        maildir_seconds, maildir_counts = ingest_once(
            seed_db, directory, messages, 99, maildir=True
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    ours_rate = n / statistics.median(ours)
    anchor_rate = n / statistics.median(anchor)
    ratio = ours_rate / anchor_rate
    return {
        **base,
        "ours": round(ours_rate, 1),
        "anchor": round(anchor_rate, 1),
        "ratio": round(ratio, 3),
        "met": ratio >= 1.0,
        "note": (
            f"{len(seeds)} distinct corpus bounces; outcomes {counts}; "
            f"from a Maildir (reads, renames, fsyncs): {n / maildir_seconds:,.0f} messages/s "
            f"({maildir_counts.get('applied', 0)} applied)"
        ),
        "outcomes": counts,
        "maildir_rate": round(n / maildir_seconds, 1),
    }


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2, ensure_ascii=False))
