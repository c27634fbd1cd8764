"""Reading several aggregates at once gives what reading each one gives, on every store."""

from __future__ import annotations

import random
from uuid import uuid4

from test_core_service import create

from broadcast_domain import BroadcastService
from broadcast_domain.application.eventlog import GET_MANY_CHUNK
from broadcast_domain.domain.recipient import recipient_id
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.fakes import FakeTransport


def test_get_many_equals_get_for_each_id_across_chunks(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """More ids than one chunk, repeated and unknown ids, aggregates of one and of several
    events: the batch read keeps each aggregate's events in version order."""
    n = GET_MANY_CHUNK + 150
    bid = create(svc, clock, n=n)
    svc.dispatch_due(FakeTransport(), max_messages=n // 3)
    ids = [recipient_id(bid, f"user{i}@example.com") for i in range(n)]
    unknown = [uuid4() for _ in range(5)]
    asked = random.Random(7).sample(ids, len(ids)) + ids[:10] + unknown + [bid]

    found = svc.events.get_many(asked)

    assert set(found) == set(ids) | {bid}
    for aggregate_id in set(asked):
        assert found.get(aggregate_id, []) == svc.events.get(aggregate_id)
    assert {len(events) for events in found.values()} > {1}
    states = svc.gateway.recipients(asked)
    assert set(states) == set(ids)
    assert all(states[rid] == svc.gateway.recipient(rid) for rid in ids)
    assert svc.events.get_many([]) == {}
