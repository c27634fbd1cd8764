"""A replay of the whole log, recipient by recipient: the views a rebuild writes.

:func:`~broadcast_domain.projections.views.fold` takes the log in position
order, so a recipient's row is made by its Scheduled event and changed by each
later event, which may lie hundreds of thousands of positions further on: a
store applying batches in that order writes each row several times and reads
it back in between. :class:`Replay` gives the same views from the log read
another way: every event that is not a recipient's, in position order
(:meth:`Replay.other`), then each recipient's whole history at once
(:meth:`Replay.recipient`), which makes its final row, written once.

The rules stay the fold's: a row is the fold of its events
(:func:`~broadcast_domain.projections.rows.advance`), and a broadcast's counts
are the sum of what each final row counts (:meth:`Counts.add_row`: every step
of the fold takes back what the row before it counted). The parts of the fold
that depend on the order between recipients are resolved with the positions
the histories carry:

- a broadcast's ``first_attempt_at`` is the time of its first Sent event by
  position, its ``last_outcome_at`` the time of the last event that recorded
  an outcome (:func:`~broadcast_domain.projections.views.outcome_of`);
- a first outcome counts in its account's month in the time zone the account
  had at that position (the account events are replayed first, and each
  configuration is kept with its position);
- a Message-ID names the recipient of the last Sent event that used it
  (:meth:`Replay.recipient` gives each with its position; the store keeps the latest).

That this gives what :func:`~broadcast_domain.projections.views.fold` gives is
a property test over generated histories.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from uuid import UUID

import attrs

from broadcast_domain.domain.account import Account, AccountConfigured
from broadcast_domain.domain.events import DomainEvent, RecipientEvent, Sent
from broadcast_domain.projections.rows import RecipientRow, advance
from broadcast_domain.projections.views import (
    FIRST_OUTCOME,
    Counts,
    Views,
    month_key,
    outcome_of,
    project,
)

__all__ = ["Replay", "SentMessage", "replay_all"]

SentMessage = tuple[str, UUID, int]
"""A Message-ID, the recipient it was sent to and the position of that Sent event."""


@attrs.define
class _Order:
    # Where a broadcast's order-dependent count fields came from.
    first_attempt: int = 0  # position of the Sent event that gave first_attempt_at (0: none)
    last_outcome: int = 0  # position of the event that gave last_outcome_at (0: none)


class Replay:
    """Views folded from the log's other events, then from one recipient's history at a time.

    Feed it every event that is not a :class:`RecipientEvent` with :meth:`other`,
    in position order, before any recipient; then each recipient's events,
    oldest first, with :meth:`recipient`, in any order of recipients. :meth:`views`
    is then what ``fold`` of the whole log in position order gives, except the
    recipient rows and Message-IDs, which :meth:`recipient` hands out one
    recipient at a time for the caller to write.
    """

    def __init__(self) -> None:
        self._views = Views()
        # Each account's configurations with the positions they were recorded at.
        self._configured: dict[str, tuple[list[int], list[Account]]] = {}
        # Each broadcast's counts (in the views) and where their order-dependent fields came from.
        self._broadcasts: dict[UUID, tuple[Counts, _Order]] = {}
        self._recipients_seen = False

    def other(self, event: DomainEvent, position: int) -> None:
        """Fold an event that is not a recipient's (in position order, before any recipient)."""
        if isinstance(event, RecipientEvent):
            raise ValueError(f"{type(event).__name__} is a recipient event: give it to recipient()")
        if self._recipients_seen:
            raise ValueError("every other event must be replayed before the first recipient")
        views = self._views
        project(views, event, position)
        if isinstance(event, AccountConfigured):
            positions, states = self._configured.setdefault(event.account_id, ([], []))
            positions.append(position)
            states.append(views.accounts[event.account_id])

    def recipient(
        self, history: Sequence[tuple[int, RecipientEvent]]
    ) -> tuple[RecipientRow, list[SentMessage]]:
        """Fold one recipient's (position, event) pairs, oldest first: its row and the
        Message-IDs its Sent events used. A history that the fold refuses (one that
        does not start with Scheduled) raises ValueError as the fold does."""
        self._recipients_seen = True
        rid = history[0][1].originator_id
        row: RecipientRow | None = None
        sent: list[SentMessage] = []
        first_attempt = last_outcome = first_outcome = 0
        first_attempt_at = last_outcome_at = None
        for position, event in history:
            oid = event.originator_id
            if oid is not rid and oid != rid:  # (the same object, mostly: no __eq__ call)
                raise ValueError(
                    f"a history of recipient {rid} holds an event of {event.originator_id}"
                )
            before = row
            row = advance(before, event, position)
            if before is None:
                continue  # Scheduled: the row starts
            if isinstance(event, Sent):
                sent.append((event.message_id, rid, position))
                if not first_attempt:
                    first_attempt, first_attempt_at = position, event.timestamp
            outcome = outcome_of(before, row)
            if outcome:
                last_outcome, last_outcome_at = position, event.timestamp
                if outcome == FIRST_OUTCOME:
                    first_outcome = position
        assert row is not None  # noqa: S101 - a history holds one event at least
        counts, order = self._counts(row.broadcast_id, history[0][0], history[-1][0])
        counts.add_row(row)
        if first_attempt and (not order.first_attempt or first_attempt < order.first_attempt):
            order.first_attempt = first_attempt
            counts.first_attempt_at = first_attempt_at
        if last_outcome > order.last_outcome:
            order.last_outcome = last_outcome
            counts.last_outcome_at = last_outcome_at
        if first_outcome:
            key = month_key(row, self._timezone_at(row.account_id, first_outcome))
            monthly = self._views.monthly
            monthly[key] = monthly.get(key, 0) + 1
        return row, sent

    def _timezone_at(self, account_id: str, position: int) -> str:
        # The account's time zone when the event at ``position`` was recorded (the fold
        # counts a first outcome in that zone's month): UTC before any configuration.
        configured = self._configured.get(account_id)
        if configured is None:
            return "UTC"
        positions, states = configured
        at = bisect.bisect_left(positions, position)
        return states[at - 1].timezone if at else "UTC"

    def _counts(self, bid: UUID, first: int, last: int) -> tuple[Counts, _Order]:
        # The broadcast's counts, with the span of positions widened to [first, last],
        # and where its order-dependent fields came from.
        known = self._broadcasts.get(bid)
        if known is None:
            known = self._broadcasts[bid] = (Counts(), _Order())
            self._views.counts[bid] = known[0]
        counts, order = known
        if not counts.first_position or first < counts.first_position:
            counts.first_position = first
        if last > counts.last_position:  # noqa: PLR1730
            counts.last_position = last
        return counts, order

    def views(self, position: int) -> Views:
        """The views replayed, at ``position`` (the last position replayed), every one dirty.

        They hold no recipient rows and no Message-IDs (:meth:`recipient` gave those).
        """
        views = self._views
        if position > views.position:  # noqa: PLR1730
            views.position = position
        views.dirty_broadcasts = set(views.broadcasts)
        views.dirty_counts = set(views.counts)
        views.dirty_accounts = set(views.accounts)
        views.dirty_monthly = set(views.monthly)
        views.dirty_unmatched = set(views.unmatched)
        return views


def replay_all(
    history: Iterable[tuple[int, DomainEvent]],
) -> tuple[list[RecipientRow], list[SentMessage], Views]:
    """A history held in memory, replayed as a rebuild replays the log: the recipient
    rows, the Message-IDs with the positions of their Sent events, and the other views
    (for a :meth:`~broadcast_domain.ports.ViewStore.replacing` of a small store, and
    to check the replay against :func:`~broadcast_domain.projections.views.fold`)."""
    replay = Replay()
    histories: dict[UUID, list[tuple[int, RecipientEvent]]] = {}
    last = 0
    for position, event in history:
        last = max(last, position)
        if isinstance(event, RecipientEvent):
            histories.setdefault(event.originator_id, []).append((position, event))
        else:
            replay.other(event, position)
    rows: list[RecipientRow] = []
    sent: list[SentMessage] = []
    for events in histories.values():
        row, messages = replay.recipient(events)
        rows.append(row)
        sent.extend(messages)
    return rows, sent, replay.views(last)
