"""B9: one broadcast of 1,000,000 recipients end to end on SQLite, in bounded memory.

Phases, each timed: schedule (``create_broadcast``), send (``dispatch_due``
until nothing is due), projections (``rebuild_projections`` from the whole
log, then ``summary``), export (the result CSV, streamed to a file).

The send phase uses an in-process transport that accepts every message: over
SMTP to the aiosmtpd sink the run would take far longer (B2 measures SMTP),
while the messages are still built in full (MIME, VERP, Message-ID) and every
claim and outcome is recorded, which is the memory this benchmark is about.

Memory is the peak RSS of this process (``ru_maxrss``), read after each phase.

Run: ``python benchmarks/b9_million.py [--quick]`` (quick: 20,000 recipients).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
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
GOAL_MB = 1024
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
    """The process's peak resident set size so far, in MB (Linux reports KB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / (1024 * 1024)


def contacts(n: int) -> Iterator[Contact]:
    for i in range(n):
        yield Contact(
            f"member{i:07d}@example.jp", last_name="山田", first_name=f"太郎{i}", company="ACME"
        )


def run(quick: bool) -> dict[str, Any]:
    """Run B9 (20,000 recipients when ``quick``) and return its figures."""
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
            recipients=list(contacts(n)),
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
        svc.close()

    complete = summary.succeeded == n and sent == n and rows == n
    peak = max(rss.values())
    return {
        "metric": "B9",
        "ours": f"{n:,} recipients, {sum(phases.values()):.0f} s, peak RSS {peak:.0f} MB",
        "anchor": None,
        "ratio": None,
        "goal": "completes; peak RSS < 1 GB",
        "met": complete and peak < GOAL_MB,
        "recipients": n,
        "completed": complete,
        "peak_rss_mb": peak,
        "peak_rss_mb_after": rss,
        "seconds": phases,
        "transport": "in-process, accepts all (messages built in full)",
    }


def _export(svc: BroadcastService, bid: Any, out: Path) -> int:
    export = getattr(svc, "export_results_csv", None)
    with out.open("wb") as f:
        if export is not None:
            count: int = export(bid, f, actor=ACTOR)
            return count
        # Until the facade's export lands: the same streamed rows through the codec.
        from broadcast_adapters.csv_io import CsvCodec

        def cells() -> Iterator[list[str]]:
            for r in svc.views.iter_recipients(bid):
                yield [
                    r.status.value,
                    "",
                    r.last_name,
                    r.first_name,
                    r.address,
                    r.company,
                    r.error_detail or "",
                    "",
                ]

        return CsvCodec().write_rows(cells(), f, header=["s"] * 8, encoding="utf-8-sig")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 recipients")
    result = run(parser.parse_args().quick)
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
