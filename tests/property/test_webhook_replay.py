"""Replayed and stale webhook requests: refused outside the tolerance, recorded once inside it.

The signing keys and the SNS certificate are the fuzzing module's (generated
locally). Signed timestamps are drawn around the receiving clock, so the
boundary of each provider's tolerance is exercised, and genuine requests are
delivered again to check that a replay inside the tolerance records nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis.strategies as st
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from hypothesis import HealthCheck, given, settings
from test_webhook_fuzz import CERT_URL, EC_KEY, RSA_KEY, SENDGRID, SES, TOPIC

from broadcast_adapters.bounces.webhooks import MailgunWebhook
from broadcast_domain import (
    Actor,
    AddressBookSource,
    BroadcastService,
    Contact,
    DeliveryStatus,
    InboxRole,
    InvalidSignature,
)
from broadcast_domain.domain.events import Sent
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.fakes import FakeTransport

NOW = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
MAILGUN_KEY = "key-replay"
REPLAY = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
TOLERANCE = {
    "ses": timedelta(hours=1),
    "sendgrid": timedelta(minutes=5),
    "mailgun": timedelta(minutes=5),
}


def sendgrid_request(events: list[dict[str, Any]], stamp: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    signature = EC_KEY.sign(str(stamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(stamp),
    }


def mailgun_request(event: dict[str, Any], stamp: int, token: str) -> bytes:
    digest = hmac.new(MAILGUN_KEY.encode(), f"{stamp}{token}".encode(), hashlib.sha256)
    signature = {"timestamp": str(stamp), "token": token, "signature": digest.hexdigest()}
    return json.dumps({"signature": signature, "event-data": event}).encode()


def ses_request(message: dict[str, Any], stamp: datetime) -> bytes:
    doc = {
        "Type": "Notification",
        "MessageId": "mid-replay",
        "TopicArn": TOPIC,
        "Subject": "s",
        "Message": json.dumps(message),
        "Timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SignatureVersion": "2",
        "SigningCertURL": CERT_URL,
    }
    fields = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    canonical = "".join(f"{f}\n{doc[f]}\n" for f in fields).encode()
    signature = RSA_KEY.sign(canonical, padding.PKCS1v15(), hashes.SHA256())
    doc["Signature"] = base64.b64encode(signature).decode()
    return json.dumps(doc).encode()


def sendgrid_bounce(message_id: str, stamp: int) -> dict[str, Any]:
    return {
        "email": "a@example.com",
        "timestamp": stamp,
        "event": "bounce",
        "sg_event_id": "evt-1",
        "smtp-id": message_id,
        "status": "5.1.1",
        "reason": "550 5.1.1 unknown user",
        "type": "bounce",
    }


def ses_bounce(stamp: datetime) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "a@example.com", "status": "5.1.1"}],
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "feedbackId": "fb-replay",
        },
        "mail": {"messageId": "ses-replay", "source": "news@example.com"},
    }


def mailgun_failure(stamp: int) -> dict[str, Any]:
    return {
        "event": "failed",
        "id": "mg-replay",
        "timestamp": float(stamp),
        "severity": "permanent",
        "reason": "bounce",
        "recipient": "a@example.com",
        "delivery-status": {"code": 550, "message": "5.1.1 unknown", "description": ""},
    }


def normalise_at(provider: str, offset: int, now: datetime) -> Any:
    """Normalise a genuine failure signed ``offset`` seconds after ``now``."""
    signed_at = now + timedelta(seconds=offset)
    stamp = int(signed_at.timestamp())
    if provider == "sendgrid":
        body, headers = sendgrid_request([sendgrid_bounce("<m@x>", stamp)], stamp)
        return SENDGRID.normalise(body, headers, now)
    if provider == "mailgun":
        body = mailgun_request(mailgun_failure(stamp), stamp, f"tok-{offset}-{stamp}")
        return MailgunWebhook(MAILGUN_KEY).normalise(body, {}, now)
    return SES.normalise(ses_request(ses_bounce(signed_at), signed_at), {}, now)


@REPLAY
@given(
    provider=st.sampled_from(sorted(TOLERANCE)),
    offset=st.integers(-3 * 3600, 3 * 3600) | st.sampled_from([-3601, -3600, -301, -300, 300, 301]),
)
def test_signed_requests_are_accepted_only_within_the_tolerance(provider: str, offset: int) -> None:
    """A request signed at now+offset normalises iff |offset| is within the provider's
    tolerance; otherwise InvalidSignature says it is stale, replayed or from the future."""
    tolerance = TOLERANCE[provider].total_seconds()
    if abs(offset) <= tolerance:
        assert len(normalise_at(provider, offset, NOW)) == 1
    else:
        with pytest.raises(InvalidSignature, match=r"stale or replayed|in the future"):
            normalise_at(provider, offset, NOW)


@REPLAY
@given(delays=st.lists(st.integers(0, 299), min_size=1, max_size=4))
def test_a_mailgun_token_replayed_with_another_event_is_refused_within_the_tolerance(
    delays: list[int],
) -> None:
    """A signed Mailgun token presented again with an altered event, however soon, is
    refused; presented again with its own event it gives the same reports (a retry)."""
    hook = MailgunWebhook(MAILGUN_KEY)
    stamp = int(NOW.timestamp())
    body = mailgun_request(mailgun_failure(stamp), stamp, "tok-once")
    first = hook.normalise(body, {}, NOW)
    assert len(first) == 1
    for i, delay in enumerate(delays):
        altered = mailgun_failure(stamp)
        altered["recipient"] = f"victim{i}@example.com"
        with pytest.raises(InvalidSignature, match="replayed"):
            hook.normalise(
                mailgun_request(altered, stamp, "tok-once"), {}, NOW + timedelta(seconds=delay)
            )
        assert hook.normalise(body, {}, NOW + timedelta(seconds=delay)) == first


@pytest.fixture(scope="module")
def sent() -> Iterator[tuple[BroadcastService, Any, str]]:
    """A service where a@example.com was handed over; with its Message-ID."""
    svc = BroadcastService.open(
        "memory://",
        return_path="bounces@mail.example.com",
        signing_key=b"replay-signing-key-0123456789abc",
        clock=FakeClock(NOW - timedelta(minutes=10)),
    )
    bid = svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="s",
        text_body="b",
        source=AddressBookSource("book-1"),
        recipients=[Contact("a@example.com")],
        scheduled_at=NOW - timedelta(minutes=10),
        actor=Actor("op", inbox_roles={"support": InboxRole.OPERATOR}),
    )
    svc.dispatch_due(FakeTransport())
    message_id = next(e for e in svc.history(bid, "a@example.com") if isinstance(e, Sent))
    yield svc, bid, message_id.message_id
    svc.close()


@REPLAY
@given(delays=st.lists(st.integers(0, 299), min_size=1, max_size=4))
def test_a_replayed_sendgrid_report_inside_the_tolerance_is_recorded_once(
    sent: tuple[BroadcastService, Any, str], delays: list[int]
) -> None:
    """SendGrid keeps no replay list, so a replay passes the signature check; recording it
    again is a duplicate and the event log does not move."""
    svc, bid, message_id = sent
    stamp = int(NOW.timestamp())
    body, headers = sendgrid_request([sendgrid_bounce(message_id, stamp)], stamp)
    first = svc.record_bounce(SENDGRID.normalise(body, headers, NOW)[0], received_at=NOW)
    assert first.kind in ("applied", "duplicate")
    position = svc.events.max_position()
    for delay in delays:
        at = NOW + timedelta(seconds=delay)
        (report,) = SENDGRID.normalise(body, headers, at)
        assert svc.record_bounce(report, received_at=at).kind == "duplicate"
    assert svc.events.max_position() == position
    assert svc.recipients(bid).items[0].status is DeliveryStatus.ERROR
