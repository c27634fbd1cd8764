"""The facade on every store: commands, reads, bad input, reopening, rebuild."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from broadcast_domain import (
    Actor,
    AddressBookRole,
    AddressBookSource,
    BounceReport,
    BroadcastService,
    BroadcastStatus,
    BroadcastView,
    Contact,
    CsvSource,
    DeliveryStatus,
    InboxRole,
    InvalidInput,
    InvalidTransition,
    PermissionDenied,
    UnknownBroadcast,
    UnknownRecipient,
)
from broadcast_domain.application import commands
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.machine import ScriptedTransport
from broadcast_domain.testing.reports import failure_report, verp_token_of

ServiceFactory = Any
RETURN_PATH = "bounces@mail.example.com"
SIGNING_KEY = b"test-signing-key-0123456789abcdef"
OPERATOR = Actor(
    "operator-1",
    inbox_roles={"support": InboxRole.OPERATOR},
    address_book_roles={"book-1": AddressBookRole.ADMIN},
)


def create(svc: BroadcastService, clock: FakeClock, n: int = 3, **kw: Any) -> Any:
    params: dict[str, Any] = {
        "account_id": "acme",
        "inbox_id": "support",
        "sender": "news@example.com",
        "subject": "11月のお知らせ",
        "text_body": "本文",
        "source": AddressBookSource("book-1"),
        "recipients": [
            Contact(f"user{i}@example.com", last_name="山田", first_name=f"太郎{i}", company="ACME")
            for i in range(n)
        ],
        "scheduled_at": clock(),
        "actor": OPERATOR,
    }
    params.update(kw)
    return svc.create_broadcast(**params)


def positions(svc: BroadcastService) -> int:
    return svc.events.max_position()


def test_create_records_broadcast_and_recipients_and_folds_duplicates(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """Recipients are folded by normalised address; the summary counts them scheduled."""
    bid = create(
        svc,
        clock,
        recipients=[Contact("A@Example.com"), Contact("a@example.com"), Contact("b@example.com")],
    )
    s = svc.summary(bid)
    assert (s.status, s.recipients, s.scheduled, s.delivered) == (
        BroadcastStatus.SCHEDULED,
        2,
        2,
        0,
    )
    assert [i.address for i in svc.recipients(bid).items] == ["A@Example.com", "b@example.com"]


def test_dispatch_outcomes_and_lists(svc: BroadcastService, clock: FakeClock) -> None:
    """250/550/451 give succeeded/error/sending; lists show the broadcast as sending, then sent."""
    bid = create(svc, clock)
    t = ScriptedTransport()
    t.replies["user1@example.com"] = (550, "5.1.1 unknown user")
    t.replies["user2@example.com"] = (451, "4.2.2 try later")
    report = svc.dispatch_due(t)
    assert (report.sent, report.succeeded, report.errors, report.retried) == (3, 1, 1, 1)
    s = svc.summary(bid)
    assert (s.status, s.succeeded, s.errors, s.sending, s.delivered) == (
        BroadcastStatus.SENDING,
        1,
        1,
        1,
        2,
    )
    assert s.unacknowledged_errors == 1
    assert svc.list_broadcasts("support", view=BroadcastView.SENDING).total == 1
    clock.advance(hours=1)
    t.replies["user2@example.com"] = (250, "ok")
    svc.dispatch_due(t)
    assert svc.summary(bid).status is BroadcastStatus.SENT
    assert svc.list_broadcasts("support", view=BroadcastView.SENT).items[0].broadcast_id == bid
    assert svc.list_broadcasts("support", view=BroadcastView.SENDING).total == 0
    # The receiving server received one message per recipient attempt, distinct VERP senders.
    senders = {m.envelope_from for m in t.sent}
    assert len(senders) == 3
    assert all(s.startswith("bounces+") and s.endswith("@mail.example.com") for s in senders)


def test_broadcast_lists_are_newest_first(svc: BroadcastService, clock: FakeClock) -> None:
    """ALL lists every broadcast of the inbox, newest created first."""
    ids = []
    for _ in range(3):
        ids.append(create(svc, clock))
        clock.advance(minutes=1)
    page = svc.list_broadcasts("support")
    assert [i.broadcast_id for i in page.items] == list(reversed(ids))
    assert svc.list_broadcasts("other").total == 0


def test_bounce_by_verp_within_window_then_late(svc: BroadcastService, clock: FakeClock) -> None:
    """A report by VERP token applies within 24 h, later ones are late; the month counts once."""
    bid = create(svc, clock, n=2)
    t = ScriptedTransport()
    svc.dispatch_due(t)
    rep = failure_report(
        "user0@example.com", reported_at=clock(), verp_token=verp_token_of(t.sent[0].envelope_from)
    )
    out = svc.record_bounce(rep, received_at=clock() + timedelta(hours=23))
    assert out.kind == "applied" and out.address == "user0@example.com"
    assert svc.record_bounce(rep, received_at=clock() + timedelta(hours=23)).kind == "duplicate"
    late = failure_report(
        "user1@example.com", reported_at=clock(), verp_token=verp_token_of(t.sent[1].envelope_from)
    )
    assert svc.record_bounce(late, received_at=clock() + timedelta(hours=25)).kind == "late"
    s = svc.summary(bid)
    assert (s.succeeded, s.errors) == (1, 1)
    usage = svc.monthly_usage("acme", year=clock().year, month=clock().month)
    assert usage.count == 2


def test_forged_token_and_unknown_message_id_are_unmatched(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """A tampered VERP token never matches; nothing is recorded."""
    create(svc, clock, n=1)
    t = ScriptedTransport()
    svc.dispatch_due(t)
    token = verp_token_of(t.sent[0].envelope_from)
    assert token is not None
    forged = token[:-1] + ("a" if token[-1] != "a" else "b")
    before = positions(svc)
    for rep in (
        failure_report("user0@example.com", reported_at=clock(), verp_token=forged),
        failure_report("user0@example.com", reported_at=clock(), message_id="<nobody@example.com>"),
        failure_report("user0@example.com", reported_at=clock()),
    ):
        assert svc.record_bounce(rep).kind == "unmatched"
    assert positions(svc) == before


def test_bounce_by_message_id(svc: BroadcastService, clock: FakeClock) -> None:
    """The Message-ID of the original correlates when there is no token."""
    bid = create(svc, clock, n=1)
    t = ScriptedTransport()
    svc.dispatch_due(t)
    rep = failure_report(
        "user0@example.com",
        status="5.2.2",
        diagnostic="mailbox full",
        reported_at=clock(),
        message_id=t.sent[0].message_id,
    )
    assert svc.record_bounce(rep).kind == "applied"
    item = svc.recipients(bid).items[0]
    assert item.status is DeliveryStatus.ERROR
    assert item.detail_message == "mailbox full"


def test_acknowledge_all_as_of_and_single(svc: BroadcastService, clock: FakeClock) -> None:
    """Errors up to as_of are acknowledged; a later error stays; acknowledging a success raises."""
    bid = create(svc, clock, n=4)
    t = ScriptedTransport()
    for i in range(3):
        t.replies[f"user{i}@example.com"] = (550, "rejected")
    t.replies["user3@example.com"] = (451, "later")
    svc.dispatch_due(t)
    page = svc.unacknowledged_errors(bid)
    assert page.total == 3
    clock.advance(hours=1)
    t.replies["user3@example.com"] = (550, "rejected")
    svc.dispatch_due(t)
    assert svc.acknowledge_errors(bid, actor=OPERATOR, as_of=page.as_of) == 3
    assert svc.summary(bid).unacknowledged_errors == 1
    assert svc.acknowledge_error(bid, "user3@example.com", actor=OPERATOR) is True
    assert svc.acknowledge_error(bid, "user3@example.com", actor=OPERATOR) is False
    assert svc.summary(bid).unacknowledged_errors == 0


@pytest.mark.parametrize("chunk", [1, 3])
def test_acknowledging_takes_as_many_writes_as_it_needs(
    svc: BroadcastService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Only conflicts count towards giving up: more batches than the retry limit all land."""
    monkeypatch.setattr(commands, "WRITE_CHUNK", chunk)
    n = svc.gateway.max_retries + 5
    bid = create(svc, clock, n=n)
    t = ScriptedTransport()
    t.replies.update({f"user{i}@example.com": (550, "rejected") for i in range(n)})
    svc.dispatch_due(t)
    assert svc.acknowledge_errors(bid, actor=OPERATOR) == n
    assert svc.summary(bid).unacknowledged_errors == 0


def test_acknowledging_a_non_error_raises_and_records_nothing(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """Only an ERROR can be acknowledged."""
    bid = create(svc, clock, n=1)
    svc.dispatch_due(ScriptedTransport())
    before = positions(svc)
    with pytest.raises(InvalidTransition, match="only a delivery error"):
        svc.acknowledge_error(bid, "user0@example.com", actor=OPERATOR)
    assert positions(svc) == before


def test_cancel_only_before_sending(svc: BroadcastService, clock: FakeClock) -> None:
    """A scheduled broadcast can be cancelled and is never sent; a sending one cannot."""
    later = create(svc, clock, scheduled_at=clock() + timedelta(hours=1))
    svc.cancel_broadcast(later, actor=OPERATOR)
    assert svc.summary(later).status is BroadcastStatus.CANCELLED
    clock.advance(hours=2)
    assert svc.dispatch_due(ScriptedTransport()).sent == 0
    now = create(svc, clock)
    svc.dispatch_due(ScriptedTransport(), max_messages=1)
    with pytest.raises(InvalidTransition, match=r"cannot be cancelled|only a broadcast"):
        svc.cancel_broadcast(now, actor=OPERATOR)


def test_monthly_limit_pauses_and_resumes(svc: BroadcastService, clock: FakeClock) -> None:
    """The dispatcher never passes the limit; raising it resumes the broadcast."""
    svc.configure_account("acme", monthly_limit=2, timezone="Asia/Tokyo")
    bid = create(svc, clock, n=5)
    report = svc.dispatch_due(ScriptedTransport())
    assert report.sent == 2 and report.paused == (bid,)
    s = svc.summary(bid)
    assert s.status is BroadcastStatus.PAUSED and s.scheduled == 3
    assert "monthly limit of 2" in (s.paused_reason or "")
    usage = svc.monthly_usage("acme", year=2026, month=11)
    assert (usage.count, usage.limit, usage.remaining) == (2, 2, 0)
    svc.configure_account("acme", monthly_limit=10, timezone="Asia/Tokyo")
    assert svc.summary(bid).status is BroadcastStatus.SENDING
    svc.dispatch_due(ScriptedTransport())
    assert svc.summary(bid).status is BroadcastStatus.SENT


def test_month_turn_resumes_a_paused_broadcast(svc: BroadcastService, clock: FakeClock) -> None:
    """A broadcast paused by the limit resumes in the next month (account time zone)."""
    clock.set(datetime(2026, 11, 30, 14, 0, tzinfo=UTC))  # 23:00 in Tokyo
    svc.configure_account("acme", monthly_limit=1, timezone="Asia/Tokyo")
    bid = create(svc, clock, n=2)
    assert svc.dispatch_due(ScriptedTransport()).paused == (bid,)
    clock.advance(hours=1, minutes=1)  # 00:01 on 1 December in Tokyo
    report = svc.dispatch_due(ScriptedTransport())
    assert report.sent == 1
    assert svc.summary(bid).status is BroadcastStatus.SENT
    assert svc.monthly_usage("acme", year=2026, month=12).count == 1


@pytest.mark.parametrize(
    ("field", "change", "match"),
    [
        ("scheduled_at", datetime(2026, 11, 2, 9, 0), "naive datetime"),
        ("subject", "hello\r\nBcc: victim@example.com", "CR character"),
        ("sender", "not an address", "sender"),
        (
            "recipients",
            [Contact("ok@example.com"), Contact("bad@@example.com")],
            r"recipients\[1\]\.address",
        ),
        (
            "recipients",
            [Contact("ok@example.com", last_name="a\nb")],
            r"recipients\[0\]\.last_name",
        ),
        ("recipients", [], "at least one recipient"),
        ("source", "book-1", "source must be"),
        ("account_id", "", "account_id"),
    ],
)
def test_bad_input_is_named_and_records_nothing(
    svc: BroadcastService, clock: FakeClock, field: str, change: object, match: str
) -> None:
    """Each bad input raises InvalidInput saying what and where, and records nothing."""
    before = positions(svc)
    bad: dict[str, Any] = {field: change}
    with pytest.raises(InvalidInput, match=match):
        create(svc, clock, **bad)
    assert positions(svc) == before


def test_permission_needed_to_create_and_cancel(svc: BroadcastService, clock: FakeClock) -> None:
    """A VIEWER cannot create or cancel; the error names the role needed."""
    viewer = Actor("v", inbox_roles={"support": InboxRole.VIEWER})
    with pytest.raises(PermissionDenied, match="OPERATOR") as e:
        create(svc, clock, actor=viewer)
    assert e.value.required == "InboxRole.OPERATOR"
    bid = create(svc, clock, scheduled_at=clock() + timedelta(hours=1))
    before = positions(svc)
    with pytest.raises(PermissionDenied):
        svc.cancel_broadcast(bid, actor=viewer)
    assert positions(svc) == before


def test_unknown_ids_and_naive_times_are_named(svc: BroadcastService, clock: FakeClock) -> None:
    """Unknown broadcasts and recipients, naive report times: named errors."""
    with pytest.raises(UnknownBroadcast):
        svc.summary(uuid4())
    with pytest.raises(UnknownBroadcast):
        svc.summary("not-a-uuid")  # type: ignore[arg-type]
    bid = create(svc, clock, n=1)
    with pytest.raises(UnknownRecipient):
        svc.history(bid, "nobody@example.com")
    rep = BounceReport(
        recipient="a@example.com",
        status="5.1.1",
        diagnostic="x",
        permanent=True,
        reported_at=datetime(2026, 1, 1),
    )
    with pytest.raises(InvalidInput, match="naive"):
        svc.record_bounce(rep)
    with pytest.raises(InvalidInput, match="timezone"):
        svc.configure_account("acme", timezone="Mars/Olympus")
    with pytest.raises(InvalidInput, match="monthly_limit"):
        svc.configure_account("acme", monthly_limit=-1)


def test_history_lists_a_recipients_events_oldest_first(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """Scheduled, Sent, Succeeded in order."""
    bid = create(svc, clock, n=1)
    svc.dispatch_due(ScriptedTransport())
    names = [type(e).__name__ for e in svc.history(bid, "USER0@example.com")]
    assert names == ["Scheduled", "Sent", "Succeeded"]


def test_rebuild_equals_incremental_and_verify_is_clean(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """Dropping and replaying every projection gives the same answers."""
    svc.configure_account("acme", monthly_limit=100, timezone="Asia/Tokyo")
    bid = create(svc, clock, n=6, source=CsvSource("members.csv"))
    t = ScriptedTransport()
    t.replies["user2@example.com"] = (550, "no")
    t.replies["user3@example.com"] = (451, "later")
    svc.dispatch_due(t)
    before = (
        svc.summary(bid),
        svc.recipients(bid, keyword="太郎2"),
        svc.monthly_usage("acme", year=2026, month=11),
    )
    assert svc.verify_projections() == []
    svc.rebuild_projections()
    after = (
        svc.summary(bid),
        svc.recipients(bid, keyword="太郎2"),
        svc.monthly_usage("acme", year=2026, month=11),
    )
    assert before == after
    assert svc.verify_projections() == []


def test_reopening_a_sqlite_file_gives_the_same_answers(tmp_path: Any, clock: FakeClock) -> None:
    """Close, reopen the same file: same summary, list and month count."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    svc = BroadcastService.open(url, return_path=RETURN_PATH, signing_key=SIGNING_KEY, clock=clock)
    bid = create(svc, clock, n=4)
    svc.dispatch_due(ScriptedTransport())
    first = (
        svc.summary(bid),
        svc.list_broadcasts("support"),
        svc.monthly_usage("acme", year=2026, month=11),
    )
    svc.close()
    again = BroadcastService.open(
        url, return_path=RETURN_PATH, signing_key=SIGNING_KEY, clock=clock
    )
    try:
        assert (
            again.summary(bid),
            again.list_broadcasts("support"),
            again.monthly_usage("acme", year=2026, month=11),
        ) == first
        assert again.verify_projections() == []
    finally:
        again.close()


def test_two_services_on_one_file_see_each_others_writes(
    open_service: ServiceFactory, clock: FakeClock, store_url: str
) -> None:
    """Two services (as two processes would) on one SQLite file share events and views."""
    if store_url.startswith("memory"):
        pytest.skip("memory stores are per service")
    a = open_service()
    b = open_service()
    bid = create(a, clock, n=3)
    assert b.summary(bid).recipients == 3
    b.dispatch_due(ScriptedTransport())
    assert a.summary(bid).status is BroadcastStatus.SENT
    assert a.verify_projections() == [] and b.verify_projections() == []


def test_bad_store_urls_and_keys(clock: FakeClock) -> None:
    """Unknown URL schemes, short keys and bad return paths are named."""
    with pytest.raises(InvalidInput, match="scheme"):
        BroadcastService.open("mysql://x", return_path=RETURN_PATH, signing_key=SIGNING_KEY)
    with pytest.raises(InvalidInput, match="signing_key"):
        BroadcastService.open("memory://", return_path=RETURN_PATH, signing_key=b"short")
    with pytest.raises(InvalidInput, match="return_path"):
        BroadcastService.open("memory://", return_path="no-at-sign", signing_key=SIGNING_KEY)
