"""Unit tests for the Recipient aggregate's rules (SPEC section 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from broadcast_domain import BounceReport, DeliveryStatus, InvalidTransition
from broadcast_domain.domain.events import Scheduled
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.recipient import Recipient, derive_report_id, recipient_id

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
POLICY = DeliveryPolicy()


def scheduled() -> Recipient:
    bid = uuid4()
    e = Scheduled(
        originator_id=recipient_id(bid, "a@example.com"),
        originator_version=1,
        timestamp=T0,
        broadcast_id=bid,
        account_id="acme",
        address="a@example.com",
    )
    return e.apply(None)


def apply(state: Recipient, events: list) -> Recipient:  # type: ignore[type-arg]
    for e in events:
        state = e.apply(state)
    return state


def sending(at: datetime = T0) -> Recipient:
    r = scheduled()
    return apply(r, r.start_attempt(now=at, message_id="<m1@x>", policy=POLICY))


def succeeded(at: datetime = T0) -> Recipient:
    r = sending(at)
    return apply(r, r.record_reply(code=250, text="OK", now=at, policy=POLICY))


def report(**kw: object) -> BounceReport:
    base: dict[str, object] = {
        "recipient": "a@example.com",
        "status": "5.1.1",
        "diagnostic": "550 5.1.1 user unknown",
        "permanent": True,
        "reported_at": T0,
    }
    base.update(kw)
    return BounceReport(**base)  # type: ignore[arg-type]


def receive(r: Recipient, rep: BounceReport, received_at: datetime) -> tuple[str, Recipient]:
    kind, events = r.receive_report(
        rep,
        report_id=derive_report_id(rep),
        received_at=received_at,
        now=received_at,
        policy=POLICY,
    )
    return kind, apply(r, list(events))


def test_attempt_claims_the_recipient_as_sending() -> None:
    """Starting an attempt moves SCHEDULED to SENDING with attempt 1 and the Message-ID."""
    r = sending()
    assert r.status is DeliveryStatus.SENDING
    assert r.attempts == 1
    assert r.message_id == "<m1@x>"


def test_2xx_reply_succeeds_and_5xx_reply_is_an_error() -> None:
    """A 250 makes SUCCEEDED; a 550 makes ERROR with the reply as the detail."""
    assert succeeded().status is DeliveryStatus.SUCCEEDED
    r = sending()
    r = apply(r, r.record_reply(code=550, text="5.1.1 no such user", now=T0, policy=POLICY))
    assert r.status is DeliveryStatus.ERROR
    assert r.error_detail == "550 5.1.1 no such user"


def test_4xx_reply_stays_sending_until_attempts_are_used_up() -> None:
    """A 451 leaves SENDING with a backoff; after max_attempts it becomes ERROR."""
    policy = DeliveryPolicy(max_attempts=3)
    r = scheduled()
    now = T0
    for attempt in range(1, 4):
        r = apply(r, r.start_attempt(now=now, message_id=f"<m{attempt}@x>", policy=policy))
        r = apply(r, r.record_reply(code=451, text="try later", now=now, policy=policy))
        if attempt < 3:
            assert r.status is DeliveryStatus.SENDING
            assert r.retry_at == now + policy.retry_delay(attempt)
            assert not r.is_due(now)
            now = r.retry_at
            assert r.is_due(now)
    assert r.status is DeliveryStatus.ERROR
    assert r.error_permanent is False
    assert "gave up after 3 attempts" in (r.error_detail or "")


def test_lease_expiry_allows_a_retry_with_the_same_message_id() -> None:
    """A claimed recipient with no outcome is due again after the lease, same Message-ID."""
    r = sending()
    assert not r.is_due(T0 + POLICY.lease - timedelta(seconds=1))
    later = T0 + POLICY.lease
    assert r.is_due(later)
    r2 = apply(r, r.start_attempt(now=later, message_id="<new@x>", policy=POLICY))
    assert r2.message_id == "<m1@x>"
    assert r2.attempts == 2


def test_failure_report_within_window_turns_success_into_error() -> None:
    """A report received 23h59m after the success applies."""
    kind, r = receive(succeeded(), report(), T0 + timedelta(hours=23, minutes=59))
    assert kind == "applied"
    assert r.status is DeliveryStatus.ERROR


def test_failure_report_after_window_is_late_and_changes_nothing() -> None:
    """A report received after 24h is late and records nothing."""
    r0 = succeeded()
    kind, r = receive(r0, report(), T0 + timedelta(hours=24, seconds=1))
    assert kind == "late"
    assert r == r0


def test_window_runs_to_received_at_not_the_time_inside_the_report() -> None:
    """A report dated inside the window but received after it is late."""
    kind, _ = receive(
        succeeded(), report(reported_at=T0 + timedelta(hours=1)), T0 + timedelta(hours=30)
    )
    assert kind == "late"


def test_same_report_twice_is_a_duplicate() -> None:
    """Ingesting one report twice records one event."""
    kind, r = receive(succeeded(), report(report_id="r1"), T0)
    kind2, r2 = receive(r, report(report_id="r1"), T0)
    assert (kind, kind2) == ("applied", "duplicate")
    assert r2 == r


@pytest.mark.parametrize("action", ["delayed", "delivered", "relayed", "expanded", "autoreply"])
def test_non_failure_reports_are_ignored(action: str) -> None:
    """Delayed DSNs, auto-replies and the like are not delivery errors."""
    r0 = succeeded()
    kind, r = receive(r0, report(action=action), T0)
    assert kind == "ignored"
    assert r == r0


def test_complaint_is_recorded_but_is_not_an_error() -> None:
    """An ARF complaint counts on the recipient and leaves SUCCEEDED."""
    kind, r = receive(succeeded(), report(action="complaint", feedback_type="abuse"), T0)
    assert kind == "applied"
    assert r.status is DeliveryStatus.SUCCEEDED
    assert r.complaints == 1


def test_error_never_turns_back_into_success() -> None:
    """A success reply arriving after an error report records nothing."""
    r = sending()
    _, r = receive(r, report(), T0)
    assert r.status is DeliveryStatus.ERROR
    assert r.record_reply(code=250, text="OK", now=T0, policy=POLICY) == []


def test_report_for_a_recipient_never_sent_is_unmatched() -> None:
    """Nothing was sent, so no report can be about our delivery."""
    kind, _ = receive(scheduled(), report(), T0)
    assert kind == "unmatched"


def test_only_an_error_can_be_acknowledged_and_twice_records_nothing() -> None:
    """Acknowledging SUCCEEDED raises; acknowledging an error twice records one event."""
    with pytest.raises(InvalidTransition, match="only a delivery error"):
        succeeded().acknowledge(by="u", now=T0)
    _, r = receive(sending(), report(), T0)
    events = r.acknowledge(by="u", now=T0)
    assert len(events) == 1
    r = apply(r, events)
    assert r.acknowledged_by == "u"
    assert r.acknowledge(by="u", now=T0) == []


def test_not_due_recipient_cannot_be_claimed() -> None:
    """A SUCCEEDED recipient cannot start another attempt."""
    with pytest.raises(InvalidTransition):
        succeeded().start_attempt(now=T0, message_id="<x@y>", policy=POLICY)
