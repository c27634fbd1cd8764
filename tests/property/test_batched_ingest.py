"""Batched ingestion decides exactly as one message at a time (SPEC section 2, bounces).

``ingest`` correlates a whole batch first (every recipient its messages name
read together) and then decides message by message on the states the earlier
ones left, recording the batch in one transaction. The property: over any
sequence of report messages (copies, several reports for one recipient,
complaints, delays, strangers, garbage), with the clock moving between
messages so that the bounce window runs out part-way, a batched ``ingest``
gives the same outcomes, in the same order, and records the same events as
``record_bounce_message`` called once per message on an identical store.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from broadcast_domain import BroadcastService
from broadcast_domain.application import intake as intake_module
from broadcast_domain.application.results import BounceOutcome
from broadcast_domain.domain.unmatched import message_digest
from broadcast_domain.ports import IncomingBounce
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.intake import SIGNING_KEY, Delivery, dispatched_world
from broadcast_domain.testing.reports import failure_report, report_message, report_on

ACCOUNTS = {
    "acme": ["a0@example.org", "a1@example.org", "shared@example.net"],
    "other": ["b0@example.org", "shared@example.net"],
}
RETURN_PATH = "bounces@mail.example.com"
STATUSES = ["5.1.1", "5.2.2", "4.2.2", "550"]
DIAGNOSTICS = ["user unknown", "mailbox full", "quota exceeded"]
KINDS = ["failed", "failed", "failed", "complaint", "delayed", "stranger", "unknown-id", "garbage"]


class TickingClock(FakeClock):
    """A fake clock that moves on by ``step`` every time it is read."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        super().__init__(start)
        self.step = step

    def __call__(self) -> datetime:
        now = super().__call__()
        self.advance(self.step)
        return now


@attrs.frozen
class Seed:
    """A dispatched store on a file, copied for each side of each example."""

    folder: Path
    deliveries: list[Delivery]
    now: datetime

    def open(self, name: str, step: timedelta) -> BroadcastService:
        target = self.folder / name
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.folder / 'seed.db'}{suffix}")
            if source.exists():
                shutil.copyfile(source, f"{target}{suffix}")
        return BroadcastService.open(
            f"sqlite:///{target}",
            return_path=RETURN_PATH,
            signing_key=SIGNING_KEY,
            clock=TickingClock(self.now, step),
        )


@pytest.fixture(scope="module")
def seed() -> Iterator[Seed]:
    folder = Path(tempfile.mkdtemp(prefix="batched-ingest-"))
    try:
        w = dispatched_world(ACCOUNTS, url=f"sqlite:///{folder / 'seed.db'}")
        now = w.clock()
        w.svc.close()
        yield Seed(folder, w.deliveries, now)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class ListSource:
    """A BounceSource over messages in memory, remembering what was done and set aside."""

    def __init__(self, messages: list[tuple[bytes, str | None]]) -> None:
        self.items = [
            IncomingBounce(key=str(i), raw=raw, envelope_recipient=envelope)
            for i, (raw, envelope) in enumerate(messages)
        ]
        self.done: list[str] = []
        self.aside: list[str] = []

    def __iter__(self) -> Iterator[IncomingBounce]:
        return iter(self.items)

    def mark_done(self, key: str) -> None:
        self.done.append(key)

    def set_aside(self, key: str, reason: str) -> None:
        self.aside.append(key)


@st.composite
def messages(draw: st.DrawFn, deliveries: list[Delivery], now: datetime) -> list[Any]:
    """Report messages about the deliveries: failures, copies, strangers, garbage."""
    out: list[tuple[bytes, str | None]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=14))):
        if out and draw(st.integers(min_value=0, max_value=3)) == 0:
            out.append(draw(st.sampled_from(out)))  # an exact copy of an earlier message
            continue
        d = draw(st.sampled_from(deliveries))
        kind = draw(st.sampled_from(KINDS))
        verp = draw(st.booleans())
        envelope = d.message.envelope_from if verp and draw(st.booleans()) else None
        if kind == "garbage":
            out.append((b"Subject: hello\n\nnot a report\n", None))
            continue
        status = draw(st.sampled_from(STATUSES))
        report = failure_report(
            "stranger@example.net" if kind == "stranger" else d.address,
            reported_at=now,
            status=status,
            diagnostic=draw(st.sampled_from(DIAGNOSTICS)),
            action="failed" if kind in ("stranger", "unknown-id") else kind,
        )
        if kind == "unknown-id":
            raw = report_message(report, original_message_id="<unknown@nowhere.example>")
        else:
            other = draw(st.none() | st.sampled_from(deliveries))
            also = (
                [failure_report(other.address, reported_at=now, status=status)]
                if other is not None and kind == "failed"
                else []
            )
            raw = report_on(d.message, report, verp=verp, also=also)
        out.append((raw, envelope))
    return out


def _events(svc: BroadcastService, after: int) -> list[tuple[str, Any]]:
    return [
        (type(e).__name__, attrs.asdict(e, recurse=False))
        for _, e in svc.events.read(after, 100_000)
    ]


def test_batched_ingest_decides_as_one_message_at_a_time(
    seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same outcomes in the same order, same events, for any batch size."""

    @given(
        data=st.data(),
        step=st.sampled_from([timedelta(0), timedelta(minutes=7), timedelta(hours=3)]),
        batch=st.sampled_from([1, 2, 3, 500]),
    )
    def check(data: st.DataObject, step: timedelta, batch: int) -> None:
        drawn = data.draw(messages(seed.deliveries, seed.now))
        monkeypatch.setattr(intake_module, "_INGEST_BATCH", batch)
        batched, alone = seed.open("batched.db", step), seed.open("alone.db", step)
        try:
            start = batched.events.max_position()
            assert alone.events.max_position() == start
            decided: list[list[BounceOutcome]] = []
            decide_all = batched.intake.decide_all

            def spy(*args: Any, **kwargs: Any) -> Any:
                results = decide_all(*args, **kwargs)
                decided.extend(r for r in results if isinstance(r, list))
                return results

            monkeypatch.setattr(batched.intake, "decide_all", spy)
            source = ListSource(drawn)
            counts = batched.ingest(source)
            one_by_one = [
                alone.record_bounce_message(raw, envelope_recipient=envelope)
                for raw, envelope in drawn
            ]
            assert decided == one_by_one
            kinds: Counter[str] = Counter(o.kind for outcomes in one_by_one for o in outcomes)
            for kind in kinds:
                event(kind)  # how often each outcome came up: --hypothesis-show-statistics
            expected: dict[str, int] = dict.fromkeys(intake_module.OUTCOME_KINDS, 0)
            expected.update(kinds)
            expected.update(set_aside=0, messages=len(drawn))
            assert counts == expected
            assert source.done == [str(i) for i in range(len(drawn))]
            assert _events(batched, start) == _events(alone, start)
            # What the unmatched log keeps is named by the digest of the whole message
            # (a later copy that matches may have resolved it since).
            digests = {message_digest(raw) for raw, _ in drawn}
            kept = {
                fields["digest"]
                for name, fields in _events(batched, start)
                if name == "BounceUnmatched"
            }
            assert kept <= digests and bool(kept) == bool(kinds["unmatched"])
        finally:
            batched.close()
            alone.close()

    check()
