"""Fuzzing the provider webhooks: whatever arrives, only BroadcastErrors come out.

Mutated payloads are re-signed with locally generated keys so that the fuzzing
reaches the payload parsers behind the signature checks, not just the checks.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis.strategies as st
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, event, given, settings

from broadcast_adapters.bounces.webhooks import (
    BasicAuth,
    MailgunWebhook,
    PostmarkWebhook,
    SendGridWebhook,
    SesWebhook,
    WebhookNormaliser,
)
from broadcast_domain.domain.values import BounceReport
from broadcast_domain.errors import BroadcastError

NOW = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000.pem"
MAILGUN_KEY = "key-fuzz"
ACTIONS = {"failed", "delayed", "delivered", "relayed", "expanded", "autoreply", "complaint"}

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
CERT_PEM = (
    x509.CertificateBuilder()
    .subject_name(_NAME)
    .issuer_name(_NAME)
    .public_key(RSA_KEY.public_key())
    .serial_number(1)
    .not_valid_before(NOW - timedelta(days=1))
    .not_valid_after(NOW + timedelta(days=1))
    .sign(RSA_KEY, hashes.SHA256())
    .public_bytes(serialization.Encoding.PEM)
)


class StaticLoader:
    """Serves the locally generated certificate for any URL."""

    def load(self, url: str) -> bytes:
        return CERT_PEM


SES = SesWebhook(StaticLoader(), topic_arns=[TOPIC])
SENDGRID = SendGridWebhook(
    base64.b64encode(
        EC_KEY.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
)
POSTMARK = PostmarkWebhook(BasicAuth("pm", "pw"))
POSTMARK_HEADERS = {"Authorization": "Basic " + base64.b64encode(b"pm:pw").decode()}
_tokens = itertools.count()


# --------------------------------------------------------------------------- valid seeds

STAMP = NOW - timedelta(seconds=10)
SES_SEEDS: list[dict[str, Any]] = [
    {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "a@example.com",
                    "status": "5.1.1",
                    "action": "failed",
                    "diagnosticCode": "smtp; 550 5.1.1 no such user",
                }
            ],
            "timestamp": "2026-11-27T08:59:00.000Z",
            "feedbackId": "fb-1",
            "remoteMtaIp": "192.0.2.1",
        },
        "mail": {
            "messageId": "ses-1",
            "source": "bounces+tok@mail.example.com",
            "headers": [{"name": "Message-ID", "value": "<m1@example.com>"}],
            "commonHeaders": {"messageId": "<m1@example.com>"},
        },
    },
    {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "a@example.com"}],
            "complaintFeedbackType": "abuse",
            "timestamp": "2026-11-27T08:59:00.000Z",
            "feedbackId": "fb-2",
        },
        "mail": {"messageId": "ses-2", "source": "news@example.com"},
    },
    {
        "eventType": "DeliveryDelay",
        "deliveryDelay": {
            "delayType": "MailboxFull",
            "delayedRecipients": [{"emailAddress": "a@example.com", "status": "4.2.2"}],
            "timestamp": "2026-11-27T08:59:00.000Z",
        },
        "mail": {"messageId": "ses-3"},
    },
    {
        "notificationType": "Delivery",
        "delivery": {
            "timestamp": "2026-11-27T08:59:00.000Z",
            "recipients": ["a@example.com"],
            "smtpResponse": "250 2.6.0 ok",
        },
        "mail": {"messageId": "ses-4"},
    },
]
SENDGRID_SEED: list[dict[str, Any]] = [
    {
        "email": "a@example.com",
        "timestamp": int(STAMP.timestamp()),
        "event": "bounce",
        "sg_event_id": "e1",
        "smtp-id": "<m1@example.com>",
        "status": "5.1.1",
        "reason": "550 5.1.1 unknown",
        "type": "bounce",
    },
    {
        "email": "b@example.com",
        "timestamp": int(STAMP.timestamp()),
        "event": "deferred",
        "sg_event_id": "e2",
        "response": "450 try later",
        "attempt": "2",
    },
    {
        "email": "c@example.com",
        "timestamp": int(STAMP.timestamp()),
        "event": "spamreport",
        "sg_event_id": "e3",
    },
]
MAILGUN_SEED: dict[str, Any] = {
    "event": "failed",
    "id": "mg-1",
    "timestamp": STAMP.timestamp(),
    "severity": "permanent",
    "reason": "bounce",
    "recipient": "a@example.com",
    "envelope": {"sender": "bounces+tok@mail.example.com"},
    "message": {"headers": {"message-id": "m1@example.com"}},
    "delivery-status": {
        "code": 550,
        "message": "5.1.1 unknown",
        "description": "",
        "mx-host": "mx.example.com",
    },
}
POSTMARK_SEED: dict[str, Any] = {
    "RecordType": "Bounce",
    "ID": 42,
    "Type": "HardBounce",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Description": "unknown user",
    "Details": "smtp;550 5.1.1 unknown",
    "Email": "a@example.com",
    "BouncedAt": "2026-11-27T08:59:00.1234567Z",
}

KEYS = sorted(
    {
        "notificationType",
        "eventType",
        "bounce",
        "complaint",
        "delivery",
        "deliveryDelay",
        "mail",
        "bounceType",
        "bouncedRecipients",
        "complainedRecipients",
        "recipients",
        "delayedRecipients",
        "emailAddress",
        "status",
        "diagnosticCode",
        "action",
        "timestamp",
        "feedbackId",
        "messageId",
        "source",
        "headers",
        "name",
        "value",
        "commonHeaders",
        "email",
        "event",
        "sg_event_id",
        "smtp-id",
        "reason",
        "type",
        "response",
        "id",
        "severity",
        "recipient",
        "envelope",
        "sender",
        "message",
        "message-id",
        "delivery-status",
        "code",
        "description",
        "enhanced-code",
        "RecordType",
        "ID",
        "Type",
        "MessageID",
        "Email",
        "BouncedAt",
        "Details",
        "Recipient",
        "DeliveredAt",
    }
)

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "Bounce",
            "Permanent",
            "a@example.com",
            "2026-11-27T08:59:00Z",
            "failed",
            "temporary",
            "bounce",
            "delivered",
            "HardBounce",
            "SpamComplaint",
            "1.5",
            "@",
            "",
            "Delivery",
            "Complaint",
            "Transient",
        ]
    )
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=15,
)


@st.composite
def mutated(draw: st.DrawFn, seed: Any) -> Any:
    """``seed`` with a few random edits: a key deleted, a value replaced, a type changed."""
    doc = copy.deepcopy(seed)
    # Path choices come from a seeded Random: hypothesis's own choices favour the
    # first key and the smallest integer, which would keep editing the same field.
    rnd = draw(st.randoms(use_true_random=False))
    for _ in range(rnd.randint(1, 3)):
        node = doc
        while True:
            children: list[Any] = (
                list(node)
                if isinstance(node, dict)
                else list(range(len(node)))
                if isinstance(node, list)
                else []
            )
            if not children:
                break
            key = rnd.choice(children)
            child = node[key]
            # Going deeper three times in four reaches the nested fields.
            if rnd.random() < 0.25 or not isinstance(child, dict | list) or not child:
                if rnd.random() < 0.3:
                    del node[key]
                else:
                    node[key] = draw(json_values)
                break
            node = child
        if not isinstance(doc, dict | list):
            break
    return doc


def assert_sane(reports: list[BounceReport], source: str) -> None:
    """What every successful normalisation promises about its reports."""
    for report in reports:
        assert isinstance(report, BounceReport)
        assert report.source == source
        assert "@" in report.recipient
        assert report.reported_at.utcoffset() is not None
        assert report.action in ACTIONS
        assert isinstance(report.status, str)
        assert isinstance(report.permanent, bool)
        assert report.report_id


def run(hook: WebhookNormaliser, body: bytes, headers: dict[str, str]) -> None:
    """Normalise; a BroadcastError is an accepted outcome, anything else fails the test."""
    try:
        reports = hook.normalise(body, headers, NOW)
    except BroadcastError as exc:
        event(f"{hook.source}: {type(exc).__name__}")
        return
    event(f"{hook.source}: {len(reports)} report(s)")
    assert_sane(reports, hook.source)


# --------------------------------------------------------------------------- signers


def sns_body(message: str) -> bytes:
    doc = {
        "Type": "Notification",
        "MessageId": "mid",
        "TopicArn": TOPIC,
        "Subject": "s",
        "Message": message,
        "Timestamp": "2026-11-27T08:59:00.000Z",
        "SignatureVersion": "2",
        "SigningCertURL": CERT_URL,
    }
    fields = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    canonical = "".join(f"{f}\n{doc[f]}\n" for f in fields).encode()
    doc["Signature"] = base64.b64encode(
        RSA_KEY.sign(canonical, padding.PKCS1v15(), hashes.SHA256())
    ).decode()
    return json.dumps(doc).encode()


def sendgrid_headers(body: bytes) -> dict[str, str]:
    stamp = str(int(STAMP.timestamp()))
    signature = EC_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def mailgun_body(event: Any) -> bytes:
    token = f"token-{next(_tokens)}"
    stamp = str(int(STAMP.timestamp()))
    digest = hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    signature = {"timestamp": stamp, "token": token, "signature": digest}
    return json.dumps({"signature": signature, "event-data": event}).encode()


# --------------------------------------------------------------------------- properties

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_seeds_are_accepted() -> None:
    """The unmutated seeds normalise, so the fuzzing starts from valid requests."""
    assert all(SES.normalise(sns_body(json.dumps(seed)), {}, NOW) for seed in SES_SEEDS)
    body = json.dumps(SENDGRID_SEED).encode()
    assert len(SENDGRID.normalise(body, sendgrid_headers(body), NOW)) == 3
    assert MailgunWebhook(MAILGUN_KEY).normalise(mailgun_body(MAILGUN_SEED), {}, NOW)
    assert POSTMARK.normalise(json.dumps(POSTMARK_SEED).encode(), POSTMARK_HEADERS, NOW)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_broadcast_errors(body: bytes) -> None:
    """Arbitrary bytes to any normaliser give reports or a BroadcastError, nothing else."""
    run(SES, body, {})
    run(SENDGRID, body, sendgrid_headers(body))
    run(MailgunWebhook(MAILGUN_KEY), body, {})
    run(POSTMARK, body, POSTMARK_HEADERS)


@FUZZ
@given(json_values)
def test_random_signed_json_only_raises_broadcast_errors(doc: Any) -> None:
    """Arbitrary JSON, correctly signed for each provider, never escapes as another error."""
    text = json.dumps(doc)
    run(SES, sns_body(text), {})
    run(SES, text.encode(), {})
    run(SENDGRID, text.encode(), sendgrid_headers(text.encode()))
    run(MailgunWebhook(MAILGUN_KEY), mailgun_body(doc), {})
    run(POSTMARK, text.encode(), POSTMARK_HEADERS)


@FUZZ
@given(st.data())
def test_mutated_ses_payloads_only_raise_broadcast_errors(data: st.DataObject) -> None:
    """A mutated SES notification inside a valid SNS signature gives reports or a BroadcastError."""
    seed = data.draw(st.sampled_from(SES_SEEDS))
    run(SES, sns_body(json.dumps(data.draw(mutated(seed)))), {})


@FUZZ
@given(st.data())
def test_mutated_sns_envelopes_only_raise_broadcast_errors(data: st.DataObject) -> None:
    """Editing the signed SNS envelope itself gives a BroadcastError, never another error."""
    envelope = json.loads(sns_body(json.dumps(SES_SEEDS[0])))
    run(SES, json.dumps(data.draw(mutated(envelope))).encode(), {})


@FUZZ
@given(mutated(SENDGRID_SEED))
def test_mutated_sendgrid_batches_only_raise_broadcast_errors(batch: Any) -> None:
    """A mutated, re-signed SendGrid batch gives reports or a BroadcastError."""
    body = json.dumps(batch).encode()
    run(SENDGRID, body, sendgrid_headers(body))


@FUZZ
@given(mutated(MAILGUN_SEED))
def test_mutated_mailgun_events_only_raise_broadcast_errors(event: Any) -> None:
    """A mutated, re-signed Mailgun event gives reports or a BroadcastError."""
    run(MailgunWebhook(MAILGUN_KEY), mailgun_body(event), {})


@FUZZ
@given(mutated({"signature": {"timestamp": "1", "token": "t", "signature": "s"}, "x": 1}))
def test_mutated_mailgun_signatures_only_raise_broadcast_errors(doc: Any) -> None:
    """A mangled Mailgun signature object is refused with a BroadcastError."""
    run(MailgunWebhook(MAILGUN_KEY), json.dumps(doc).encode(), {})


@FUZZ
@given(mutated(POSTMARK_SEED))
def test_mutated_postmark_payloads_only_raise_broadcast_errors(doc: Any) -> None:
    """A mutated, authenticated Postmark payload gives reports or a BroadcastError."""
    run(POSTMARK, json.dumps(doc).encode(), POSTMARK_HEADERS)


@FUZZ
@given(st.dictionaries(st.text(max_size=40), st.text(max_size=60), max_size=4))
def test_random_headers_only_raise_broadcast_errors(headers: dict[str, str]) -> None:
    """Random headers on an otherwise valid request give reports or a BroadcastError."""
    body = json.dumps(SENDGRID_SEED).encode()
    run(SENDGRID, body, headers)
    run(POSTMARK, json.dumps(POSTMARK_SEED).encode(), headers)
    run(SES, sns_body(json.dumps(SES_SEEDS[0])), headers)
