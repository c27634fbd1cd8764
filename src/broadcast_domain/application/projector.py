"""The projector: the one loop that brings the views up to date with the event log.

Reads (``BroadcastService`` catches up before it answers), the projection
follower, ``rebuild_projections`` and ``verify_projections`` all go through
:class:`Projector` (a rebuild replays the log recipient by recipient into a
new set of views, then catches up too). The view store's tracking position
makes each event apply exactly once even when several processes (and several
threads of one process) catch up at the same time: a batch another process
applied first is dropped and the loop reads on from the new position.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

from broadcast_domain.application.eventlog import EventLog
from broadcast_domain.domain.events import DomainEvent, RecipientEvent
from broadcast_domain.ports import ViewStore
from broadcast_domain.projections.replay import Replay, SentMessage
from broadcast_domain.projections.rows import RecipientRow
from broadcast_domain.projections.views import BulkAcknowledgement, Views, fold

__all__ = ["READ_CHUNK", "REBUILD_CHUNK", "Projector", "compare_views"]

READ_CHUNK = 5_000
"""Events read from the log and applied per batch."""

REBUILD_CHUNK = 10_000
"""Events a rebuild reads per query (whole recipient histories, written in one go)."""

_RECIPIENT_EVENTS = (RecipientEvent,)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    # A batch builds tens of thousands of objects (events, rows, the store's working
    # set) that all live until it ends and form no cycles: the cyclic collector would
    # walk them, and the row cache, again and again for nothing (a fifth of a rebuild).
    # It runs again after each batch, so whatever cycles a batch left are still freed.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Projector:
    """Applies the log's events to one view store."""

    def __init__(self, log: EventLog, views: ViewStore, *, chunk: int = READ_CHUNK) -> None:
        self.log = log
        self.views = views
        self.chunk = chunk
        # One catch-up at a time per process: threads of one service share the store.
        self._lock = threading.Lock()

    def position(self) -> int:
        """The position of the last event the views hold."""
        return self.views.position()

    def lag(self) -> int:
        """How many recorded events the views have not applied yet (0 when current)."""
        return max(0, self.log.max_position() - self.views.position())

    def apply(self, batch: Sequence[tuple[int, DomainEvent]]) -> int:
        """Apply what the views do not hold yet of ``batch``; return how many this call applied."""
        with self._lock:
            return self._apply(batch)

    def _apply(self, batch: Sequence[tuple[int, DomainEvent]]) -> int:
        while batch:
            position = self.views.position()
            batch = [item for item in batch if item[0] > position]
            if not batch:
                break
            if self.views.apply(batch, expected_position=position):
                return len(batch)
            # Another process moved the position meanwhile: drop what it applied, try again.
        return 0

    def apply_recorded(self, positions: Sequence[int], events: Sequence[DomainEvent]) -> bool:
        """Apply events just recorded at ``positions`` without reading them back.

        Only when they are the next the views lack (nothing recorded between
        the views' position and theirs); False otherwise, and nothing is applied
        (a catch-up reads them from the log then).
        """
        if not positions or len(positions) != len(events):
            return False
        with self._lock, _collector_paused():
            position = self.views.position()
            if position != positions[0] - 1:
                return False
            batch = list(zip(positions, events, strict=True))
            return self.views.apply(batch, expected_position=position)

    def apply_acknowledgements(self, bulk: BulkAcknowledgement) -> bool:
        """Apply a bulk acknowledgement just recorded, without reading or folding its events.

        Only when its events are the next the views lack (as :meth:`apply_recorded`)
        and the store finds every row as the acknowledgement read it; False
        otherwise, and nothing is applied (a catch-up folds them from the log then).
        """
        positions = bulk.positions
        if not positions or positions[-1] != positions[0] + len(positions) - 1:
            return False  # not one run of positions: some other event lies between
        with self._lock, _collector_paused():
            position = self.views.position()
            if position != positions[0] - 1:
                return False
            return self.views.apply_acknowledgements(bulk, expected_position=position)

    def catch_up(
        self,
        on_batch: Callable[[int, int], None] | None = None,
        *,
        stop: Callable[[], bool] | None = None,
        chunk: int | None = None,
    ) -> int:
        """Apply every recorded event the views lack; return the position reached.

        ``on_batch(position, applied)`` is called after each batch read, with
        how many of its events this call applied (0 when another process had).
        ``stop()``, checked before each batch, ends the loop early.
        """
        with self._lock:
            while True:
                position = self.views.position()
                if stop is not None and stop():
                    return position
                with _collector_paused():
                    batch = self.log.read(position, chunk or self.chunk)
                    if not batch:
                        return position
                    applied = self._apply(batch)
                if on_batch is not None:
                    on_batch(batch[-1][0], applied)

    def rebuild(self, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Replay the whole log into a new set of views, put it in place of the live one,
        then catch up with what was recorded meanwhile; return the position reached.

        The log is read twice, neither time in position order only: every event that
        is not a recipient's, by position, then the recipients' events aggregate by
        aggregate, so each recipient's whole history is folded at once and its row
        written once (:class:`~broadcast_domain.projections.replay.Replay`). The live
        views answer until the new ones replace them in one transaction.

        ``on_progress(done, last)`` is called after each batch of histories, with
        ``last`` the position of the last event recorded when the rebuild began and
        ``done`` how many events are replayed (``last`` at the end).
        """
        with self._lock, _collector_paused():
            last = self.log.max_position()
            replay = Replay()
            done = 0
            for batch in self.log.read_other_than(_RECIPIENT_EVENTS, last, REBUILD_CHUNK):
                for position, event in batch:
                    replay.other(event, position)
                done += len(batch)
            with self.views.replacing() as target:
                for histories in self.log.read_by_aggregate(_RECIPIENT_EVENTS, last, REBUILD_CHUNK):
                    rows: list[RecipientRow] = []
                    sent: list[SentMessage] = []
                    for history in histories:
                        row, messages = replay.recipient(cast(Sequence[Any], history))
                        rows.append(row)
                        sent.extend(messages)
                        done += len(history)
                    target.add(rows, sent)
                    if on_progress is not None:
                        on_progress(min(done, last), last)
                target.commit(replay.views(last))
        if on_progress is not None:
            on_progress(last, last)
        return self.catch_up()

    def history(self) -> Iterable[tuple[int, DomainEvent]]:
        """Every recorded (position, event), oldest first, read in batches."""
        position = 0
        while True:
            batch = self.log.read(position, self.chunk)
            if not batch:
                return
            yield from batch
            position = batch[-1][0]

    def replay(self) -> Views:
        """The whole log folded into a scratch set of views (the live ones are not touched)."""
        return fold(self.history())

    def verify(self) -> list[str]:
        """Replay the log and compare with the live views ([] when they agree)."""
        self.catch_up()
        live = self.views.dump()
        return compare_views(self.replay(), live)


def compare_views(expected: Views, actual: Views, limit: int = 100) -> list[str]:
    """Differences between two sets of views, as readable lines (at most ``limit``)."""
    diffs: list[str] = []

    def cmp(name: str, a: dict[Any, Any], b: dict[Any, Any]) -> None:
        for key in sorted(set(a) | set(b), key=str):
            if len(diffs) >= limit:
                return
            va, vb = a.get(key), b.get(key)
            if va != vb:
                diffs.append(f"{name}[{key}]: replay={va!r} live={vb!r}")

    cmp("recipient", expected.recipients, actual.recipients)
    cmp("broadcast", expected.broadcasts, actual.broadcasts)
    cmp("counts", expected.counts, actual.counts)
    cmp("account", expected.accounts, actual.accounts)
    cmp(
        "monthly",
        {k: v for k, v in expected.monthly.items() if v},
        {k: v for k, v in actual.monthly.items() if v},
    )
    cmp("message_id", expected.message_ids, actual.message_ids)
    cmp("unmatched", expected.unmatched, actual.unmatched)
    if expected.position != actual.position:
        diffs.append(f"position: replay={expected.position} live={actual.position}")
    return diffs
