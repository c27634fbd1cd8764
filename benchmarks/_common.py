"""Helpers shared by the benchmark modules: timing, results, stores, contacts, memory."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "REPS",
    "actor",
    "contacts",
    "judge",
    "median_of",
    "not_yet",
    "open_service",
    "result",
    "scratch_dir",
    "timed",
]

REPS = 3
"""Repetitions per measurement; the median is reported."""

SIGNING_KEY = b"benchmark-signing-key-0123456789"


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes (garbage collected before, not during)."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(samples: list[float]) -> float:
    """The median of the repetitions."""
    return statistics.median(samples)


@contextlib.contextmanager
def scratch_dir() -> Iterator[str]:
    """A fresh temporary directory, removed afterwards."""
    path = tempfile.mkdtemp(prefix="bd-bench-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def open_service(directory: str, name: str = "bench.db") -> Any:
    """A BroadcastService on a new SQLite file in ``directory``."""
    from broadcast_domain import BroadcastService

    return BroadcastService.open(
        f"sqlite:///{os.path.join(directory, name)}",
        return_path="bounces@bench.example.com",
        signing_key=SIGNING_KEY,
    )


def actor(inbox_id: str = "support") -> Any:
    """An actor allowed to create, acknowledge and export (any address book named book-*)."""
    from broadcast_domain import Actor, AddressBookRole, InboxRole

    books = {f"book-{i}": AddressBookRole.ADMIN for i in range(1, 4)} | {
        "book": AddressBookRole.ADMIN
    }
    return Actor("bench", inbox_roles={inbox_id: InboxRole.ADMIN}, address_book_roles=books)


def contacts(n: int, prefix: str = "user") -> list[Any]:
    """``n`` distinct contacts with Japanese names and a company."""
    from broadcast_domain import Contact

    return [
        Contact(
            f"{prefix}{i}@example.com",
            last_name="山田",
            first_name=f"太郎{i}",
            company="株式会社エイシーエムイー",
        )
        for i in range(n)
    ]


def create_broadcast(svc: Any, recipients: list[Any], inbox_id: str = "support") -> Any:
    """Schedule a broadcast of ``recipients`` now; return its id."""
    from datetime import UTC, datetime

    from broadcast_domain import AddressBookSource

    return svc.create_broadcast(
        account_id="acme",
        inbox_id=inbox_id,
        sender="news@example.com",
        subject="Benchmark news",
        text_body="Hello,\nthis is the benchmark broadcast.\n",
        source=AddressBookSource("book-1"),
        recipients=recipients,
        scheduled_at=datetime.now(UTC),
        actor=actor(inbox_id),
    )


_GOAL = re.compile(r"^\s*(<=|>=|<|>)\s*([0-9.]+)")


def judge(ratio: float | None, goal: str) -> bool | None:
    """Whether ``ratio`` meets a goal written as ``<= 3`` or ``>= 0.5`` (None if unknown)."""
    m = _GOAL.match(goal)
    if ratio is None or m is None:
        return None
    op, bound = m.group(1), float(m.group(2))
    return {"<=": ratio <= bound, ">=": ratio >= bound, "<": ratio < bound, ">": ratio > bound}[op]


def result(
    metric: str,
    *,
    title: str,
    ours: float | None,
    anchor: float | None,
    unit: str,
    ratio: float | None,
    goal: str,
    size: str,
    met: bool | None = None,
    note: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """One row of the table (and of the JSON)."""
    return {
        "metric": metric,
        "title": title,
        "ours": ours,
        "anchor": anchor,
        "unit": unit,
        "ratio": ratio,
        "goal": goal,
        "met": judge(ratio, goal) if met is None else met,
        "size": size,
        "note": note,
        **extra,
    }


def not_yet(metric: str, title: str, goal: str, reason: str, **extra: Any) -> dict[str, Any]:
    """A row for a metric whose parts are not in the tree yet: nothing is measured for it."""
    return {
        "metric": metric,
        "title": title,
        "ours": None,
        "anchor": extra.pop("anchor", None),
        "unit": extra.pop("unit", ""),
        "ratio": None,
        "goal": goal,
        "met": None,
        "size": extra.pop("size", ""),
        "note": f"not yet: {reason}",
        "not_yet": True,
        **extra,
    }


def record_history(
    svc: Any, recipients: int, outcome: Callable[[int], str], chunk: int = 50_000
) -> int:
    """Schedule ``recipients`` and record a delivery history for each; return the event count.

    ``outcome(i)`` picks recipient i's story: ``"ok"`` (Sent, Succeeded),
    ``"retry"`` (Sent, Deferred, Sent, Succeeded), ``"error"`` (Sent, Bounced),
    ``"acked"`` (Sent, Bounced, ErrorAcknowledged) or ``"scheduled"``. Events are
    made by the domain's own commands and written in batches through the log.
    """
    from datetime import UTC, datetime

    from broadcast_domain.domain.events import Scheduled
    from broadcast_domain.domain.recipient import Recipient

    log, policy = svc.events, svc.policy
    now = datetime.now(UTC)
    start = int(log.max_position())
    done = 0
    while done < recipients:
        n = min(chunk, recipients - done)
        create_broadcast(svc, contacts(n, prefix=f"h{done}-"))
        done += n
    position, end = start, log.max_position()
    while position < end:
        batch = [(p, e) for p, e in log.read(position, 10_000) if p <= end]
        if not batch:
            break
        position = batch[-1][0]
        events: list[Any] = []
        for _, e in batch:
            if not isinstance(e, Scheduled):
                continue
            story = outcome(e.position)
            r = Recipient.started(e)
            steps = {
                "ok": [250],
                "retry": [451, 250],
                "error": [550],
                "acked": [550],
                "scheduled": [],
            }[story]
            t = now
            for attempt, code in enumerate(steps):
                t = r.retry_at or t  # a retry waits for its backoff
                for new in r.start_attempt(
                    now=t, message_id=f"<{r.id.hex}.{attempt}@bench>", policy=policy
                ):
                    events.append(new)
                    r = new.apply(r)
                for new in r.record_reply(code=code, text="bench", now=t, policy=policy):
                    events.append(new)
                    r = new.apply(r)
            if story == "acked":
                for new in r.acknowledge(by="bench", now=now):
                    events.append(new)
                    r = new.apply(r)
        for i in range(0, len(events), 10_000):
            log.put(events[i : i + 10_000])
    end_position = int(log.max_position())
    return end_position - start
