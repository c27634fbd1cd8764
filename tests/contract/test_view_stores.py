"""View store behaviour beyond the contract, on every store: memory://, SQLite, PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broadcast_domain import (
    Actor,
    AddressBookSource,
    BroadcastService,
    Contact,
    DeliveryStatus,
    InboxRole,
)
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.testing.machine import ScriptedTransport

ACTOR = Actor("operator-1", inbox_roles={"inbox": InboxRole.OPERATOR})
KEY = b"contract-signing-key-0123456789ab"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _open(url: str) -> BroadcastService:
    return BroadcastService.open(
        url, return_path="bounces@mail.example.com", signing_key=KEY, clock=lambda: START
    )


def _create(svc: BroadcastService, contacts: list[Contact]) -> object:
    return svc.create_broadcast(
        account_id="acme",
        inbox_id="inbox",
        sender="news@example.com",
        subject="Hello",
        text_body="Hi",
        source=AddressBookSource("book-1"),
        recipients=contacts,
        scheduled_at=START - timedelta(minutes=1),
        actor=ACTOR,
    )


def _history(svc: BroadcastService) -> list[tuple[int, DomainEvent]]:
    return svc.events.read(0, 1_000_000)


def test_keyword_search_is_literal_and_width_insensitive(store_url: str) -> None:
    """Keywords match full- and half-width forms and '%' or '_' match only themselves."""
    with _open(store_url) as svc:
        bid = _create(
            svc,
            [
                Contact("a@example.com", company="ＡＣＭＥ株式会社"),
                Contact("b@example.com", company="100%_off"),
                Contact("c@example.com", company="1000 off"),
            ],
        )
        found = svc.recipients(bid, keyword="acme")  # type: ignore[arg-type]
        assert [r.address for r in found.items] == ["a@example.com"]
        found = svc.recipients(bid, keyword="%_")  # type: ignore[arg-type]
        assert [r.address for r in found.items] == ["b@example.com"]


def test_pages_and_streams_keep_position_order(store_url: str) -> None:
    """Pages and the streamed list return every recipient once, in position order."""
    n = 1_234
    with _open(store_url) as svc:
        bid = _create(svc, [Contact(f"r{i:05d}@example.com") for i in range(n)])
        svc.catch_up()
        streamed = [r.address for r in svc.views.iter_recipients(bid)]  # type: ignore[arg-type]
        assert streamed == [f"r{i:05d}@example.com" for i in range(n)]
        page = svc.recipients(bid, page=3, per_page=100)  # type: ignore[arg-type]
        assert page.total == n
        assert [r.address for r in page.items] == streamed[200:300]
        scheduled = svc.recipients(bid, status=DeliveryStatus.SCHEDULED, per_page=10)  # type: ignore[arg-type]
        assert scheduled.total == n


@pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_two_services_on_one_store_share_events_and_views(store_url: str) -> None:
    """A second service on the same store sees the first's writes; reopening is harmless."""
    first = _open(store_url)
    second = _open(store_url)
    try:
        bid = _create(first, [Contact(f"a{i}@example.com") for i in range(10)])
        second.dispatch_due(ScriptedTransport())
        assert first.summary(bid).succeeded == 10  # type: ignore[arg-type]
        assert first.verify_projections() == []
        assert second.verify_projections() == []
    finally:
        first.close()
        second.close()
    with _open(store_url) as third:
        assert third.summary(bid).delivered == 10  # type: ignore[arg-type]
