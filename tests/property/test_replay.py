"""The rebuild's replay, recipient by recipient, against the fold in position order."""

from __future__ import annotations

import random
from uuid import UUID

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcast_domain.application.projector import compare_views
from broadcast_domain.domain.events import DomainEvent, RecipientEvent, Sent
from broadcast_domain.domain.values import Contact
from broadcast_domain.projections.replay import Replay, SentMessage, replay_all
from broadcast_domain.projections.rows import RecipientRow
from broadcast_domain.projections.views import Views, fold
from broadcast_domain.testing.histories import HistoryBuilder
from broadcast_domain.testing.strategies import histories

History = list[tuple[int, DomainEvent]]


def _split(history: History) -> tuple[History, dict[UUID, list[tuple[int, RecipientEvent]]]]:
    # The events that are not a recipient's, and each recipient's, in log order.
    others: History = []
    by_recipient: dict[UUID, list[tuple[int, RecipientEvent]]] = {}
    for position, event in history:
        if isinstance(event, RecipientEvent):
            by_recipient.setdefault(event.originator_id, []).append((position, event))
        else:
            others.append((position, event))
    return others, by_recipient


def _assembled(rows: list[RecipientRow], sent: list[SentMessage], views: Views) -> Views:
    # The views a store holds after a replacement: the rows, the latest Sent event's
    # recipient for each Message-ID (the ViewReplacement contract), the rest as given.
    latest: dict[str, tuple[int, UUID]] = {}
    for message_id, rid, position in sent:
        if message_id not in latest or position > latest[message_id][0]:
            latest[message_id] = (position, rid)
    return attrs.evolve(
        views,
        recipients={row.id: row for row in rows},
        message_ids={mid: rid for mid, (_, rid) in latest.items()},
    )


@given(history=histories(max_steps=60), order=st.randoms(use_true_random=False))
def test_a_replay_recipient_by_recipient_is_the_fold(
    history: History, order: random.Random
) -> None:
    """The other events by position, then each recipient's whole history, recipients
    in any order, give what the fold of the log in position order gives: rows, counts
    (send-rate times included), monthly usage in the zone of the time, Message-IDs."""
    others, by_recipient = _split(history)
    replay = Replay()
    for position, event in others:
        replay.other(event, position)
    ids = list(by_recipient)
    order.shuffle(ids)
    rows: list[RecipientRow] = []
    sent: list[SentMessage] = []
    for rid in ids:
        row, messages = replay.recipient(by_recipient[rid])
        rows.append(row)
        sent.extend(messages)
    last = max((position for position, _ in history), default=0)
    assert compare_views(fold(history), _assembled(rows, sent, replay.views(last))) == []


@given(history=histories())
def test_replay_all_is_the_fold(history: History) -> None:
    """replay_all of a history in memory gives the fold's views."""
    assert compare_views(fold(history), _assembled(*replay_all(history))) == []


def _two_sends_one_id() -> History:
    # Two recipients sent to with one Message-ID (a host's own ids may repeat): the
    # later Sent event names the recipient.
    h = HistoryBuilder()
    people = [Contact("a@example.com"), Contact("b@example.com")]
    bid = h.create_broadcast(people)
    h.start_sending(bid)
    h.attempt(bid, "b@example.com")
    h.attempt(bid, "a@example.com")
    return [
        (p, attrs.evolve(e, message_id="<same@example.com>") if isinstance(e, Sent) else e)
        for p, e in h.history
    ]


def test_a_message_id_names_the_recipient_of_its_latest_sent_event() -> None:
    """Of two Sent events with one Message-ID, the later names its recipient, whatever
    order the recipients are replayed in."""
    history = _two_sends_one_id()
    expected = fold(history)
    rows, sent, views = replay_all(history)
    assert compare_views(expected, _assembled(rows, sent, views)) == []
    assert compare_views(expected, _assembled(rows, sent[::-1], views)) == []
    assert len({rid for _, rid, _ in sent}) == 2


def test_a_replay_refuses_what_the_fold_refuses_and_mixed_input() -> None:
    """A history not starting with Scheduled raises as the fold does; a recipient event
    given as another event, another event after the first recipient, and one history
    holding two recipients' events are refused."""
    h = HistoryBuilder()
    bid = h.create_broadcast([Contact("a@example.com"), Contact("b@example.com")])
    h.start_sending(bid)
    h.attempt(bid, "a@example.com")
    others, by_recipient = _split(h.history)
    first, second = by_recipient.values()
    replay = Replay()
    for position, event in others:
        replay.other(event, position)
    with pytest.raises(ValueError, match="before its Scheduled event"):
        fold(first[1:])
    with pytest.raises(ValueError, match="before its Scheduled event"):
        replay.recipient(first[1:])
    with pytest.raises(ValueError, match="recipient event"):
        replay.other(first[0][1], first[0][0])
    with pytest.raises(ValueError, match="holds an event of"):
        replay.recipient([*first, *second])
    with pytest.raises(ValueError, match="before the first recipient"):
        replay.other(others[0][1], others[0][0])
