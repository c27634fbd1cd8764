"""The codec round-trips every event type through stored bytes."""

from __future__ import annotations

from hypothesis import given

from broadcast_domain.codec import EVENT_TYPES, AttrsMapper, decode_state, encode_state
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.projections.views import fold
from broadcast_domain.testing.strategies import domain_events

MAPPER = AttrsMapper()


@given(domain_events())
def test_every_event_round_trips_through_a_stored_event(event: DomainEvent) -> None:
    """to_stored_event then to_domain_event gives an equal event."""
    stored = MAPPER.to_stored_event(event)
    assert stored.topic in EVENT_TYPES
    assert MAPPER.to_domain_event(stored) == event


def test_every_registered_topic_names_a_distinct_class() -> None:
    """Topics and classes are one to one."""
    assert len(set(EVENT_TYPES.values())) == len(EVENT_TYPES)


@given(domain_events())
def test_view_rows_round_trip(event: DomainEvent) -> None:
    """The views kept as state (broadcasts, accounts, counts) survive encode_state/decode_state.

    Recipient rows are columns, not state: the view store contract tests their round trip.
    """
    views = (
        fold([(1, event)])
        if type(event).__name__ in ("Scheduled", "BroadcastScheduled", "AccountConfigured")
        else None
    )
    if views is None:
        return
    for row in [
        *views.broadcasts.values(),
        *views.accounts.values(),
        *views.counts.values(),
    ]:
        assert decode_state(encode_state(row), type(row)) == row
