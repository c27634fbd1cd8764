"""A projection follower: a process that keeps the views up to date as events are recorded.

Every ``BroadcastService`` read already catches up before it answers, so a
follower is not needed for correctness; it keeps the views fresh for readers
that are cheap only when there is little to catch up (status bars polled by a
web app), and takes the projection work off the dispatchers. On PostgreSQL it
listens: eventsourcing's ``recorder.subscribe(gt=position)`` wakes on the
NOTIFY that every event write sends. SQLite has no notifications, so there it
polls. Several followers (and every service's own catch-up) may run at once:
the view store's tracking position makes each event apply exactly once.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from broadcast_domain.application.components import load_components, view_store_for
from broadcast_domain.application.eventlog import EventLog, parse_store_url
from broadcast_domain.application.projector import Projector
from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import ViewStore

__all__ = ["follow_projections"]

_BATCH = 5_000
"""Events a listening follower applies per batch, at most."""


class Stopper(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` or a ``multiprocessing.Event``."""

    def is_set(self) -> bool:
        """True once the follower should stop."""
        ...


def _poll(
    projector: Projector,
    stop: Stopper,
    interval: float,
    on_applied: Callable[[int], None] | None,
) -> int:
    total = 0

    def applied(position: int, count: int) -> None:
        nonlocal total
        total += count
        if count and on_applied is not None:
            on_applied(position)

    wake = threading.Event()
    while not stop.is_set():
        projector.catch_up(applied, stop=stop.is_set)
        wake.wait(interval)
    return total


def _listen(
    log: EventLog,
    projector: Projector,
    stop: Stopper,
    interval: float,
    on_applied: Callable[[int], None] | None,
) -> int:
    total = 0
    decode = log.mapper.decode
    inbox: queue.Queue[Any] = queue.Queue(maxsize=4 * _BATCH)
    failure: list[BaseException] = []
    with log.recorder.subscribe(gt=projector.position()) as subscription:

        def pump() -> None:
            # The subscription's iterator blocks; a thread turns it into a queue
            # that the loop below can drain in batches and time out on.
            try:
                for n in subscription:
                    inbox.put(
                        (n.id, decode(n.topic, n.originator_id, n.originator_version, n.state))
                    )
            except BaseException as e:  # handed to the loop, which re-raises it
                failure.append(e)
            finally:
                inbox.put(None)

        pumper = threading.Thread(target=pump, name="projection-follower", daemon=True)
        pumper.start()
        try:
            while not stop.is_set():
                try:
                    first = inbox.get(timeout=interval)
                except queue.Empty:
                    continue
                if first is None:
                    break
                batch = [first]
                ended = False
                while len(batch) < _BATCH:
                    try:
                        item = inbox.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        ended = True
                        break
                    batch.append(item)
                n = projector.apply(batch)
                total += n
                if n and on_applied is not None:
                    on_applied(projector.position())
                if ended:
                    break
        finally:
            subscription.stop()
            while pumper.is_alive():
                # Unblock a pump waiting on a full queue so it can see the stop.
                with contextlib.suppress(queue.Empty):
                    inbox.get(timeout=0.05)
    if failure:
        raise failure[0]
    return total


def follow_projections(
    url: str,
    *,
    stop: Stopper,
    poll_interval: float = 0.2,
    on_applied: Callable[[int], None] | None = None,
    view_store: ViewStore | None = None,
) -> int:
    """Keep the projections of the store at ``url`` up to date until ``stop.is_set()``.

    Meant to run as its own process (``multiprocessing`` or a service
    manager). Returns how many events this follower applied; ``on_applied`` is
    called with the new position after each batch it applied.
    """
    store = parse_store_url(url)
    if store.kind == "memory":
        raise InvalidInput(
            "a memory:// store lives inside one process, so nothing can follow it; "
            "use a sqlite:/// or postgresql:// store",
            field="url",
        )
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, int | float)
        or poll_interval <= 0
    ):
        raise InvalidInput(
            "poll_interval must be a positive number of seconds", field="poll_interval"
        )
    views = view_store or view_store_for(store, load_components())
    log = EventLog(store)
    projector = Projector(log, views)
    try:
        if store.kind == "postgresql":
            return _listen(log, projector, stop, float(poll_interval), on_applied)
        return _poll(projector, stop, float(poll_interval), on_applied)
    finally:
        log.close()
        if view_store is None:
            views.close()
