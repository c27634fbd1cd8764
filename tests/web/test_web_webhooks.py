"""The webhook routes over HTTP: real signatures in, status codes that make providers behave.

Each test runs the app on uvicorn (127.0.0.1) and posts with httpx, signed by
keys made for the test the way each provider signs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_support import (
    POSTMARK_PASSWORD,
    POSTMARK_USER,
    SECRET,
    TOPIC,
    Keys,
    Seeded,
    actor_for,
    basic,
    mailgun_body,
    make_keys,
    seed,
    sendgrid_request,
    served,
    ses_bounce,
    sns_body,
    verp_token,
)

from broadcast_adapters.web import create_app
from broadcast_domain import DeliveryStatus


@pytest.fixture(scope="module")
def keys() -> Keys:
    return make_keys()


@pytest.fixture
def seeded() -> Iterator[Seeded]:
    s = seed(recipients=30)
    try:
        yield s
    finally:
        s.svc.close()


def _client(seeded: Seeded, keys: Keys, **options: Any) -> Any:
    app = create_app(
        seeded.svc,
        actor_for=actor_for,
        secret_key=SECRET,
        webhooks=options.pop("webhooks", keys.webhooks(seeded.clock())),
        **options,
    )
    return served(app)


def _accepted(seeded: Seeded, index: int = 0) -> tuple[str, str]:
    """Address and VERP token of a message the receiving server accepted (no report yet)."""
    reported = {
        item.address
        for item in seeded.svc.recipients(seeded.csv_broadcast, per_page=500).items
        if item.status is DeliveryStatus.ERROR
    }
    fresh = [m for m in seeded.transport.accepted if m.recipient not in reported]
    message = fresh[index]
    return message.recipient, verp_token(message.envelope_from)


def _state(seeded: Seeded) -> tuple[Any, int]:
    return seeded.svc.summary(seeded.csv_broadcast), seeded.svc.projection_lag()


def test_ses_bounce_is_recorded_once_and_answered_2xx_every_time(
    seeded: Seeded, keys: Keys
) -> None:
    """A signed SES bounce is applied; the same notification again is a 2xx duplicate."""
    address, token = _accepted(seeded)
    before = seeded.svc.summary(seeded.csv_broadcast)
    body = sns_body(keys.sns, ses_bounce(address, token), seeded.clock())
    headers = {"x-amz-sns-message-type": "Notification", "content-type": "text/plain"}
    with _client(seeded, keys) as url, httpx.Client(base_url=url) as http:
        first = http.post("/webhooks/ses", content=body, headers=headers)
        again = http.post("/webhooks/ses", content=body, headers=headers)
        metrics = http.get("/metrics").text
    assert first.status_code == 200, first.text
    assert first.json()["outcomes"] == {"applied": 1}
    assert again.status_code == 200
    assert again.json()["outcomes"] == {"duplicate": 1}
    after = seeded.svc.summary(seeded.csv_broadcast)
    assert after.errors == before.errors + 1
    assert 'broadcast_reports_total{outcome="applied"} 1.0' in metrics
    assert 'broadcast_reports_total{outcome="duplicate"} 1.0' in metrics


def test_the_service_clock_decides_freshness_and_lateness(seeded: Seeded, keys: Keys) -> None:
    """SNS timestamps are checked against svc.now(), and received_at is svc.now() too."""
    address, token = _accepted(seeded)
    seeded.clock.advance(hours=30)  # past the 24 h bounce window of the success
    body = sns_body(keys.sns, ses_bounce(address, token), seeded.clock())
    with _client(seeded, keys) as url, httpx.Client(base_url=url) as http:
        response = http.post("/webhooks/ses", content=body)
    assert response.status_code == 200, response.text
    assert response.json()["outcomes"] == {"late": 1}


def test_unmatched_and_ignored_reports_are_still_2xx(seeded: Seeded, keys: Keys) -> None:
    """A report naming no delivery of ours is answered 2xx (unmatched): retrying cannot help."""
    body = sns_body(keys.sns, ses_bounce("nobody@example.org", "no.such"), seeded.clock())
    with _client(seeded, keys) as url, httpx.Client(base_url=url) as http:
        response = http.post("/webhooks/ses", content=body)
    assert response.status_code == 200
    assert response.json()["outcomes"] == {"unmatched": 1}


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda d: d.update(Message=d["Message"].replace("5.1.1", "5.2.2")), id="body"),
        pytest.param(lambda d: d.pop("Signature"), id="no-signature"),
        pytest.param(lambda d: d.update(TopicArn=TOPIC + "-other"), id="other-topic"),
    ],
)
def test_bad_or_missing_ses_signature_is_refused_and_records_nothing(
    seeded: Seeded, keys: Keys, tamper: Any
) -> None:
    """A tampered, unsigned or foreign-topic SNS message gets 401/403 and changes nothing."""
    address, token = _accepted(seeded)
    doc = json.loads(sns_body(keys.sns, ses_bounce(address, token), seeded.clock()))
    tamper(doc)
    before = _state(seeded)
    with _client(seeded, keys) as url, httpx.Client(base_url=url) as http:
        response = http.post("/webhooks/ses", content=json.dumps(doc).encode())
    assert response.status_code in (401, 403), response.text
    assert _state(seeded) == before


def test_stale_signature_by_the_service_clock_is_refused(seeded: Seeded, keys: Keys) -> None:
    """An SNS message signed two hours before svc.now() is refused as stale."""
    address, token = _accepted(seeded)
    body = sns_body(keys.sns, ses_bounce(address, token), seeded.clock() - timedelta(hours=2))
    with _client(seeded, keys) as url, httpx.Client(base_url=url) as http:
        response = http.post("/webhooks/ses", content=body)
    assert response.status_code == 403
    assert "older" in response.json()["error"]


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"Type": "Nonsense"}'])
def test_malformed_body_is_400(seeded: Seeded, keys: Keys, body: bytes) -> None:
    """A body that is not what SNS sends is 400 and records nothing."""
    before = _state(seeded)
    with _client(seeded, keys) as url, httpx.Client(base_url=url) as http:
        response = http.post("/webhooks/ses", content=body)
    assert response.status_code == 400, response.text
    assert _state(seeded) == before


def test_subscription_confirmation_is_logged_and_not_confirmed_by_default(
    seeded: Seeded, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the setting, the SubscribeURL is logged for a person and never fetched."""
    fetched: list[str] = []
    body = sns_body(
        keys.sns, "You have chosen to subscribe", seeded.clock(), kind="SubscriptionConfirmation"
    )
    caplog.set_level(logging.INFO, logger="broadcast_adapters.web")
    with (
        _client(seeded, keys, subscription_confirmer=fetched.append) as url,
        httpx.Client(base_url=url) as http,
    ):
        response = http.post("/webhooks/ses", content=body)
    assert response.status_code == 200
    assert fetched == []
    assert any(
        "NOT confirmed" in r.getMessage() and "ConfirmSubscription" in r.getMessage()
        for r in caplog.records
    )


def test_subscription_confirmation_is_confirmed_when_allowed(seeded: Seeded, keys: Keys) -> None:
    """With confirm_subscriptions=True the validated SubscribeURL is fetched once."""
    fetched: list[str] = []
    body = sns_body(
        keys.sns, "You have chosen to subscribe", seeded.clock(), kind="SubscriptionConfirmation"
    )
    with (
        _client(
            seeded, keys, confirm_subscriptions=True, subscription_confirmer=fetched.append
        ) as url,
        httpx.Client(base_url=url) as http,
    ):
        response = http.post("/webhooks/ses", content=body)
    assert response.status_code == 200
    assert len(fetched) == 1
    assert fetched[0].startswith(
        "https://sns.ap-northeast-1.amazonaws.com/?Action=ConfirmSubscription"
    )


def test_sendgrid_signed_batch_is_recorded_and_a_bad_signature_is_403(
    seeded: Seeded, keys: Keys
) -> None:
    """SendGrid's ECDSA-signed batch records its bounce; re-signed by another key it is 403."""
    address, token = _accepted(seeded)
    stamp = int(seeded.clock().timestamp())
    events = [
        {"email": address, "event": "processed", "sg_event_id": "p1", "timestamp": stamp},
        {
            "email": address,
            "event": "bounce",
            "sg_event_id": "b1",
            "timestamp": stamp,
            "reason": "550 5.1.1 The email account that you tried to reach does not exist",
            "status": "5.1.1",
            "type": "bounce",
            "smtp-id": seeded.transport.accepted[0].message_id,
            "verp_token": token,
        },
    ]
    body, headers = sendgrid_request(keys.sendgrid, events, seeded.clock())
    other = make_keys().sendgrid
    forged_body, forged_headers = sendgrid_request(other, events, seeded.clock())
    before = _state(seeded)
    with _client(seeded, keys) as url, httpx.Client(base_url=url) as http:
        forged = http.post("/webhooks/sendgrid", content=forged_body, headers=forged_headers)
        assert forged.status_code == 403
        assert _state(seeded) == before
        response = http.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert sum(response.json()["outcomes"].values()) == response.json()["recorded"] >= 1


def test_mailgun_signed_event_is_recorded_and_a_replayed_token_is_refused(
    seeded: Seeded, keys: Keys
) -> None:
    """Mailgun's HMAC is checked; a retried request is a 2xx duplicate, its token on another
    event is refused."""
    address, token = _accepted(seeded)
    event = {
        "event": "failed",
        "id": "mg-event-1",
        "timestamp": seeded.clock().timestamp(),
        "recipient": address,
        "severity": "permanent",
        "reason": "bounce",
        "delivery-status": {"code": 550, "message": "5.1.1 user unknown"},
        "envelope": {"sender": f"bounces+{token}@mail.example.com"},
    }
    body = mailgun_body(event, seeded.clock())
    bad = mailgun_body(event, seeded.clock(), key="another-key")
    before = _state(seeded)
    with _client(seeded, keys) as url, httpx.Client(base_url=url) as http:
        assert http.post("/webhooks/mailgun", content=bad).status_code == 403
        assert _state(seeded) == before
        first = http.post("/webhooks/mailgun", content=body)
        retried = http.post("/webhooks/mailgun", content=body)
        doc = json.loads(body)
        doc["event-data"]["id"] = "mg-event-2"
        replay = http.post("/webhooks/mailgun", content=json.dumps(doc).encode())
    assert first.status_code == 200, first.text
    assert first.json()["outcomes"] == {"applied": 1}
    assert retried.status_code == 200
    assert retried.json()["outcomes"] == {"duplicate": 1}
    assert replay.status_code == 403


def test_postmark_needs_its_basic_credentials(seeded: Seeded, keys: Keys) -> None:
    """Postmark signs nothing: wrong or missing Basic credentials are 401 and record nothing."""
    address, _ = _accepted(seeded)
    message = next(m for m in seeded.transport.accepted if m.recipient == address)
    body = json.dumps(
        {
            "RecordType": "Bounce",
            "ID": 4323372036854775807,
            "Type": "HardBounce",
            "MessageID": message.message_id.strip("<>"),
            "Email": address,
            "BouncedAt": seeded.clock().isoformat(),
            "Details": "smtp;550 5.1.1 The email account does not exist",
        }
    ).encode()
    before = _state(seeded)
    with _client(seeded, keys) as url, httpx.Client(base_url=url) as http:
        missing = http.post("/webhooks/postmark", content=body)
        wrong = http.post("/webhooks/postmark", content=body, headers=basic(POSTMARK_USER, "guess"))
        assert _state(seeded) == before
        right = http.post(
            "/webhooks/postmark", content=body, headers=basic(POSTMARK_USER, POSTMARK_PASSWORD)
        )
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Basic")
    assert wrong.status_code == 401
    assert right.status_code == 200, right.text


def test_over_the_limit_is_413_before_anything_else(seeded: Seeded, keys: Keys) -> None:
    """413 by Content-Length or while streaming, even for a provider that is not configured."""
    before = _state(seeded)
    big = b"x" * 2_000
    with (
        _client(seeded, keys, max_body_bytes=1_000, webhooks={}) as url,
        httpx.Client(base_url=url) as http,
    ):
        declared = http.post("/webhooks/ses", content=big)

        def chunks() -> Iterator[bytes]:
            for _ in range(20):
                yield b"y" * 100

        streamed = http.post("/webhooks/ses", content=chunks())
        small = http.post("/webhooks/ses", content=b"{}")
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert small.status_code == 404
    assert _state(seeded) == before


@pytest.mark.parametrize("provider", ["ses", "sendgrid", "mailgun", "postmark", "other"])
def test_provider_not_configured_is_404(seeded: Seeded, keys: Keys, provider: str) -> None:
    """A provider the host did not configure (or does not exist) is 404."""
    with (
        _client(seeded, keys, webhooks={}) as url,
        httpx.Client(base_url=url) as http,
    ):
        response = http.post(f"/webhooks/{provider}", content=b"{}")
    assert response.status_code == 404


def test_store_unavailable_is_503_so_the_provider_retries(keys: Keys, tmp_path: Path) -> None:
    """With the SQLite store closed under it, a valid notification is 503, and /healthz says so."""
    s = seed(f"sqlite:///{tmp_path / 'closed.db'}", recipients=10)
    address, token = _accepted(s)
    body = sns_body(keys.sns, ses_bounce(address, token), s.clock())
    with _client(s, keys) as url, httpx.Client(base_url=url) as http:
        assert http.get("/healthz").json()["store"] == "reachable"
        s.svc.close()
        response = http.post("/webhooks/ses", content=body)
        health = http.get("/healthz")
        metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert "broadcast_projection_lag_events NaN" in metrics.text
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert health.status_code == 503
    assert health.json()["store"] == "unreachable"
