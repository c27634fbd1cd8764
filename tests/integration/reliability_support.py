"""Shared pieces of the reliability tests: the test broadcast, and the SPEC invariants.

Both the test modules and ``reliability_worker.py`` (the script run in child
processes) import this, so a child and its parent agree on keys, clock and
addresses.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from broadcast_domain import (
    Actor,
    AddressBookRole,
    AddressBookSource,
    BroadcastService,
    Contact,
    DeliveryPolicy,
    DeliveryStatus,
    InboxRole,
)
from broadcast_domain.domain.events import Bounced, Sent, Succeeded
from broadcast_domain.domain.recipient import Recipient

SIGNING_KEY = b"reliability-signing-key-0123456789"
RETURN_PATH = "bounces@mail.example.com"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
OPERATOR = Actor(
    "operator-1",
    inbox_roles={"support": InboxRole.OPERATOR},
    address_book_roles={"book-1": AddressBookRole.ADMIN},
)


def address(i: int) -> str:
    """The address of recipient number ``i``."""
    return f"user{i:05d}@example.com"


def open_service(
    url: str, clock: Any, *, policy: DeliveryPolicy | None = None, key: bytes = SIGNING_KEY
) -> BroadcastService:
    """A service on ``url`` with the shared return path and signing key."""
    return BroadcastService.open(
        url, return_path=RETURN_PATH, signing_key=key, clock=clock, policy=policy
    )


def create(svc: BroadcastService, n: int, *, scheduled_at: datetime = T0) -> UUID:
    """A broadcast of ``n`` recipients, due at ``scheduled_at``."""
    return svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="お知らせ",
        text_body="本文です。",
        source=AddressBookSource("book-1"),
        recipients=[Contact(address(i), last_name="山田", first_name=f"{i}") for i in range(n)],
        scheduled_at=scheduled_at,
        actor=OPERATOR,
    )


def transport_outcomes(events: Sequence[Any]) -> list[Any]:
    """The outcomes of hand-overs in a recipient's history (a success or a transport error)."""
    return [
        e
        for e in events
        if isinstance(e, Succeeded) or (isinstance(e, Bounced) and e.source in ("smtp", "retries"))
    ]


def assert_spec_invariants(svc: BroadcastService, bid: UUID, addresses: Sequence[str]) -> None:
    """Counts add up and match the histories; every recipient has one hand-over outcome."""
    s = svc.summary(bid)
    for n in (s.scheduled, s.sending, s.succeeded, s.errors, s.unacknowledged_errors):
        assert n >= 0
    assert s.delivered == s.succeeded + s.errors
    assert s.scheduled + s.sending + s.delivered == s.recipients == len(addresses)
    tally: collections.Counter[DeliveryStatus] = collections.Counter()
    unacknowledged = 0
    for a in addresses:
        history = svc.history(bid, a)
        state = Recipient.fold(history)  # type: ignore[arg-type]
        assert state is not None
        tally[state.status] += 1
        unacknowledged += state.unacknowledged_error
        if state.status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.ERROR):
            assert len(transport_outcomes(history)) <= 1, f"{a} has two hand-over outcomes"
            sent = [e for e in history if isinstance(e, Sent)]
            assert sent, f"{a} has an outcome but was never sent"
    assert (s.scheduled, s.sending, s.succeeded, s.errors) == (
        tally[DeliveryStatus.SCHEDULED],
        tally[DeliveryStatus.SENDING],
        tally[DeliveryStatus.SUCCEEDED],
        tally[DeliveryStatus.ERROR],
    )
    assert s.unacknowledged_errors == unacknowledged
    assert svc.verify_projections() == []
