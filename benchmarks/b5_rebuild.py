"""B5: rebuild every projection from 1,000,000 events on SQLite.

The store holds broadcasts whose recipients went through realistic stories
(success, retry then success, error, acknowledged error). Ours:
``rebuild_projections()`` (drop the views and replay the whole log into the
SQLite view tables). Anchor: eventsourcing's ``select_notifications`` plus
decoding of the same events, nothing applied. Ratio: our rate / the anchor's.
"""

from __future__ import annotations

from typing import Any

from benchmarks._common import (
    REPS,
    median_of,
    open_service,
    record_history,
    result,
    scratch_dir,
    timed,
)

GOAL = ">= 0.6"
_STORIES = ("ok", "ok", "retry", "acked")


def read_all(svc: Any) -> int:
    """Read every event with eventsourcing's ``select_notifications`` and decode it; the count.

    The anchor is eventsourcing's reader, not ours (the projections read the
    SQLite log with a leaner query of their own), with our decoder.
    """
    recorder, decode = svc.events.recorder, svc.events.mapper.decode
    position, count = 0, 0
    while True:
        notes = recorder.select_notifications(start=position, limit=5_000, inclusive_of_start=False)
        if not notes:
            return count
        for n in notes:
            decode(n.topic, n.originator_id, n.originator_version, n.state)
        count += len(notes)
        position = notes[-1].id


def run(quick: bool) -> dict[str, Any]:
    target = 40_000 if quick else 1_000_000
    recipients = int(target / 3.75)  # the stories average 3.75 events per recipient
    with scratch_dir() as d:
        svc = open_service(d)
        try:
            events = record_history(svc, recipients, lambda i: _STORIES[i % len(_STORIES)])
            ours, anchor = [], []
            for _ in range(REPS):
                anchor.append(timed(lambda: read_all(svc)))
                ours.append(timed(svc.rebuild_projections))
            assert svc.verify_projections() == [] if quick else True
        finally:
            svc.close()
    ours_rate, anchor_rate = events / median_of(ours), events / median_of(anchor)
    return result(
        "B5",
        title="rebuild every projection, SQLite",
        ours=ours_rate,
        anchor=anchor_rate,
        unit="events/s",
        ratio=ours_rate / anchor_rate,
        goal=GOAL,
        size=f"{events:,} events{' (quick)' if quick else ''}",
        note="ratio = ours / select_notifications+decode",
        events=events,
    )
