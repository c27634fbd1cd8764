"""The ViewStore contract, run on every store: memory://, a SQLite file and PostgreSQL."""

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
from broadcast_domain.application.service import compare_views
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.projections.views import fold
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
    return svc._log.read(0, 1_000_000)


def test_a_stale_expected_position_applies_nothing(store_url: str) -> None:
    """apply() with a position other than the stored one returns False and writes nothing."""
    with _open(store_url) as svc:
        _create(svc, [Contact(f"a{i}@example.com") for i in range(5)])
        history = _history(svc)
        views = svc._views
        assert views.position() == 0
        assert views.apply(history[:2], expected_position=0)
        before = views.dump()
        assert not views.apply(history[2:], expected_position=0)
        assert compare_views(before, views.dump()) == []
        assert views.apply(history[2:], expected_position=history[1][0])
        assert views.position() == history[-1][0]


def test_applied_batches_equal_a_fold_and_survive_a_reset(store_url: str) -> None:
    """The stored views equal a plain fold of the history, before and after a rebuild."""
    with _open(store_url) as svc:
        bid = _create(svc, [Contact(f"a{i}@example.com", last_name="山田") for i in range(30)])
        transport = ScriptedTransport()
        transport.replies["a3@example.com"] = (550, "5.1.1 no such user")
        transport.replies["a4@example.com"] = (451, "4.3.0 try later")
        svc.dispatch_due(transport)
        svc.catch_up()
        expected = fold(_history(svc))
        assert compare_views(expected, svc._views.dump()) == []
        svc.rebuild_projections()
        assert compare_views(expected, svc._views.dump()) == []
        summary = svc.summary(bid)  # type: ignore[arg-type]
        assert (summary.succeeded, summary.errors, summary.sending) == (28, 1, 1)


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
        streamed = [r.address for r in svc._views.iter_recipients(bid)]  # type: ignore[arg-type]
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
