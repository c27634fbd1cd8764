"""Why an error happened: every error has a reason and a detail, counted and filtered by reason."""

from __future__ import annotations

import collections
from datetime import timedelta
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcast_domain import (
    REASONS,
    Actor,
    AddressBookSource,
    BounceReport,
    BroadcastService,
    Contact,
    DeliveryStatus,
    InboxRole,
    InvalidInput,
)
from broadcast_domain.domain.reasons import STATUS_DESCRIPTIONS
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.machine import ScriptedTransport
from broadcast_domain.testing.reports import verp_token_of

RETURN_PATH = "bounces@mail.example.com"
SIGNING_KEY = b"test-signing-key-0123456789abcdef"
OPERATOR = Actor("operator-1", inbox_roles={"support": InboxRole.OPERATOR})

STATUSES = ["5.1.1", "5.2.2", "5.7.1", "4.4.7", "5.0.0", "5.3.4", "550", "554", "5.9.9"]
DIAGNOSTICS = ["", "   ", "user unknown", "rejected as spam", "Mailbox is full", "no reason"]


def create(svc: BroadcastService, clock: FakeClock, n: int) -> UUID:
    return svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="お知らせ",
        text_body="本文",
        source=AddressBookSource("book-1"),
        recipients=[Contact(f"user{i}@example.com") for i in range(n)],
        scheduled_at=clock(),
        actor=OPERATOR,
    )


def _token(transport: ScriptedTransport, address: str) -> str:
    # What a real bounce carries: the token of the VERP return path it came back to.
    token = verp_token_of(next(m for m in transport.sent if m.recipient == address).envelope_from)
    assert token is not None
    return token


@settings(max_examples=25, deadline=None)
@given(
    reports=st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from(STATUSES), st.sampled_from(DIAGNOSTICS)),
        max_size=12,
    ),
    rejected=st.sets(st.integers(0, 5), max_size=3),
)
def test_every_error_has_a_reason_and_a_detail_and_the_counts_follow(
    reports: list[tuple[int, str, str]], rejected: set[int]
) -> None:
    """Whatever the reports say (or leave out), each error carries a reason and a non-empty
    detail, the errors by reason sum to the errors and the reason filter finds exactly them."""
    clock = FakeClock()
    svc = BroadcastService.open(
        "memory://", return_path=RETURN_PATH, signing_key=SIGNING_KEY, clock=clock
    )
    try:
        bid = create(svc, clock, n=6)
        transport = ScriptedTransport()
        for i in rejected:
            transport.replies[f"user{i}@example.com"] = (550, "5.1.1 No such user here")
        svc.dispatch_due(transport)
        for i, status, diagnostic in reports:
            address = f"user{i}@example.com"
            clock.advance(timedelta(minutes=1))
            svc.record_bounce(
                BounceReport(
                    recipient=address,
                    status=status,
                    diagnostic=diagnostic,
                    permanent=status.startswith("5"),
                    reported_at=clock(),
                    verp_token=_token(transport, address),
                )
            )
        s = svc.summary(bid)
        items = svc.recipients(bid).items
        errors = [item for item in items if item.status is DeliveryStatus.ERROR]
        assert len(errors) == s.errors
        for item in items:
            if item.status is DeliveryStatus.ERROR:
                assert item.reason in REASONS
                assert item.detail_message.strip()
            else:
                assert item.reason is None
        tally = collections.Counter(item.reason for item in errors)
        assert dict(s.errors_by_reason) == dict(tally)
        assert list(s.errors_by_reason) == [r for r in REASONS if r in tally]
        for reason in REASONS:
            assert svc.recipients(bid, reason=reason).total == tally.get(reason, 0)
        assert svc.verify_projections() == []
    finally:
        svc.close()


def test_an_smtp_rejection_and_given_up_retries_have_their_reasons(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """A 550 "no such user" is userunknown; retries used up are expired."""
    bid = create(svc, clock, n=2)
    transport = ScriptedTransport()
    transport.replies["user0@example.com"] = (550, "5.1.1 <user0@example.com>: No such user")
    transport.replies["user1@example.com"] = (451, "4.3.0 try again later")
    svc.dispatch_due(transport)
    for _ in range(svc.policy.max_attempts):
        clock.advance(svc.policy.max_backoff)
        svc.dispatch_due(transport)
    by_address = {i.address: i for i in svc.recipients(bid).items}
    assert by_address["user0@example.com"].reason == "userunknown"
    assert by_address["user1@example.com"].status is DeliveryStatus.ERROR
    assert by_address["user1@example.com"].reason == "expired"
    assert svc.summary(bid).errors_by_reason == {"userunknown": 1, "expired": 1}


def test_a_report_without_a_diagnostic_shows_the_status_description(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """With no diagnostic, the detail is the RFC 3463 description of the status code."""
    bid = create(svc, clock, n=1)
    transport = ScriptedTransport()
    svc.dispatch_due(transport)
    svc.record_bounce(
        BounceReport(
            recipient="user0@example.com",
            status="5.2.2",
            diagnostic="",
            permanent=True,
            reported_at=clock(),
            verp_token=_token(transport, "user0@example.com"),
        )
    )
    (item,) = svc.recipients(bid).items
    assert item.detail_message == f"5.2.2 {STATUS_DESCRIPTIONS['X.2.2']}"
    assert item.reason == "mailboxfull"


def test_a_reason_given_by_the_reporter_is_kept_and_an_unknown_one_refused(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """A webhook's own verdict, when it is one of REASONS, wins; anything else is bad input."""
    bid = create(svc, clock, n=1)
    transport = ScriptedTransport()
    svc.dispatch_due(transport)
    token = _token(transport, "user0@example.com")
    report = BounceReport(
        recipient="user0@example.com",
        status="5.0.0",
        diagnostic="bounced",
        permanent=True,
        reported_at=clock(),
        verp_token=token,
        reason="suspend",
    )
    with pytest.raises(InvalidInput, match="reason"):
        svc.record_bounce(
            BounceReport(
                recipient="user0@example.com",
                status="5.0.0",
                diagnostic="bounced",
                permanent=True,
                reported_at=clock(),
                verp_token=token,
                reason="not-a-reason",
            )
        )
    assert svc.summary(bid).errors == 0
    assert svc.record_bounce(report).kind == "applied"
    assert svc.recipients(bid).items[0].reason == "suspend"


@pytest.mark.parametrize("bad", ["nope", "", "USERUNKNOWN", 3])
def test_the_reason_filter_refuses_a_name_not_in_reasons(
    svc: BroadcastService, clock: FakeClock, bad: object
) -> None:
    """The reason filter takes a name of REASONS and nothing else."""
    bid = create(svc, clock, n=1)
    with pytest.raises(InvalidInput, match="reason"):
        svc.recipients(bid, reason=bad)  # type: ignore[arg-type]


def test_every_reason_has_an_english_and_a_japanese_label() -> None:
    """REASONS maps each of Sisimai's 32 names to two non-empty labels."""
    assert len(REASONS) == 32
    assert "undefined" in REASONS
    for english, japanese in REASONS.values():
        assert english.isascii() and english
        assert japanese and not japanese.isascii()
