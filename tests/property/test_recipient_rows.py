"""Recipient rows (the columns the views keep) against the Recipient aggregate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcast_domain.domain.events import DomainEvent, RecipientEvent, Sent
from broadcast_domain.domain.recipient import Recipient
from broadcast_domain.domain.values import search_key
from broadcast_domain.projections.rows import (
    RecipientRow,
    advance,
    error_rank,
    recipient_search_text,
    row_of,
)
from broadcast_domain.projections.views import Needs, Views, fold, months_needed, project
from broadcast_domain.testing.strategies import histories

History = list[tuple[int, DomainEvent]]


def _by_recipient(history: History) -> dict[UUID, list[tuple[int, RecipientEvent]]]:
    out: dict[UUID, list[tuple[int, RecipientEvent]]] = {}
    for position, event in history:
        if isinstance(event, RecipientEvent):
            out.setdefault(event.originator_id, []).append((position, event))
    return out


@given(history=histories())
def test_the_row_fold_is_the_row_of_the_folded_aggregate(history: History) -> None:
    """Folding a recipient's events into rows gives the row of its aggregate state."""
    for events in _by_recipient(history).values():
        state = Recipient.fold(e for _, e in events)
        assert state is not None
        row: RecipientRow | None = None
        error_at = None
        for position, event in events:
            row = advance(row, event, position)
            if error_at is None and row.error_position is not None:
                error_at = position
        assert row == row_of(state, error_at)


@given(history=histories())
def test_every_row_of_the_fold_answers_as_its_aggregate(history: History) -> None:
    """A row is due, an unacknowledged error and shows a detail exactly as its aggregate."""
    views = fold(history)
    for rid, events in _by_recipient(history).items():
        state = Recipient.fold(e for _, e in events)
        assert state is not None
        row = views.recipients[rid]
        assert row.unacknowledged_error == state.unacknowledged_error
        assert row.detail_message == state.detail_message
        last = max(e.timestamp for _, e in events)
        for minutes in (0, 11, 600):
            now = last + timedelta(minutes=minutes)
            assert row.is_due(now) == state.is_due(now)


@given(history=histories(), cut=st.integers(0, 10_000))
def test_a_batch_needs_only_what_it_names_and_what_its_rows_name(
    history: History, cut: int
) -> None:
    """Folding a batch onto just the views Needs and months_needed name gives the full fold."""
    cut = cut % (len(history) + 1)
    before, batch = history[:cut], history[cut:]
    whole = fold(before)
    loaded = Views(position=whole.position)
    needs = Needs.of(batch)
    for rid in needs.recipients:
        if rid in whole.recipients:
            loaded.recipients[rid] = whole.recipients[rid]
    needs.add_rows(loaded)
    for bid in needs.broadcasts:
        if bid in whole.broadcasts:
            loaded.broadcasts[bid] = whole.broadcasts[bid]
        if bid in whole.counts:
            loaded.counts[bid] = whole.counts[bid]
    for aid in needs.accounts:
        if aid in whole.accounts:
            loaded.accounts[aid] = whole.accounts[aid]
    for key in months_needed(batch, loaded):
        if key in whole.monthly:
            loaded.monthly[key] = whole.monthly[key]
    for position, event in batch:
        project(whole, event, position)
        project(loaded, event, position)
    for rid in loaded.dirty_recipients:
        assert loaded.recipients[rid] == whole.recipients[rid]
    for bid in loaded.dirty_counts:
        assert loaded.counts[bid] == whole.counts[bid]
    for key in loaded.dirty_monthly:
        assert loaded.monthly[key] == whole.monthly[key]
    for mid in loaded.dirty_message_ids:
        assert loaded.message_ids[mid] == whole.message_ids[mid]


@given(
    a=st.tuples(st.booleans(), st.datetimes(timezones=st.just(UTC)), st.text(max_size=5)),
    b=st.tuples(st.booleans(), st.datetimes(timezones=st.just(UTC)), st.text(max_size=5)),
)
def test_error_rank_orders_as_the_aggregates_tuple(
    a: tuple[bool, datetime, str], b: tuple[bool, datetime, str]
) -> None:
    """The rank string sorts reports as (temporary?, reported ISO time, report id) does."""
    key_a = (not a[0], a[1].isoformat(), a[2])
    key_b = (not b[0], b[1].isoformat(), b[2])
    rank_a, rank_b = error_rank(*a), error_rank(*b)
    assert (rank_a < rank_b) == (key_a < key_b)
    assert (rank_a == rank_b) == (key_a == key_b)


def test_an_event_before_scheduled_is_refused() -> None:
    """A recipient event without its Scheduled event is a corrupt history, named as such."""
    sent = Sent(
        originator_id=UUID(int=1),
        originator_version=2,
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        attempt=1,
        message_id="<m@x>",
        lease_until=datetime(2026, 1, 1, 0, 10, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="before its Scheduled event"):
        advance(None, sent, 1)


# Any text, and parts that normalisation changes: half-width kana, full-width
# letters, title case, final sigma, combining marks (alone too), ligatures, spaces.
_NAME_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["山田", "ﾔﾏﾀﾞ", "Ａｂｃ", "ǅ", "Σς", "a\u0301", "\u0301", "ß", "ﬁ", " \t\u3000"]
)


@given(last=_NAME_TEXT, first=_NAME_TEXT, address=_NAME_TEXT, company=_NAME_TEXT)
def test_the_search_text_normalises_each_part_once_with_the_same_result(
    last: str, first: str, address: str, company: str
) -> None:
    """The search text (each part keyed once) is the keys of the joined parts, in both orders."""
    assert recipient_search_text(last, first, address, company) == "\x1f".join(
        (
            search_key(last, first),
            search_key(first, last),
            search_key(address),
            search_key(company),
        )
    )
