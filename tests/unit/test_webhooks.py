"""Provider bounce webhooks: valid requests normalise to BounceReports, bad ones raise.

Every key pair and certificate is generated here with ``cryptography``; the
payloads are modelled on each provider's documented examples.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from broadcast_adapters.bounces.webhooks import (
    BasicAuth,
    CachingCertificateLoader,
    HeaderSecret,
    InMemorySeenTokens,
    MailgunWebhook,
    PostmarkWebhook,
    SendGridWebhook,
    SesWebhook,
    WebhookNormaliser,
    validate_sns_url,
)
from broadcast_domain.errors import InvalidInput, InvalidSignature

NOW = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000.pem"


# --------------------------------------------------------------------------- key material


def _self_signed(key: rsa.RSAPrivateKey, not_before: datetime, not_after: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def cert_pem(rsa_key: rsa.RSAPrivateKey) -> bytes:
    return _self_signed(rsa_key, NOW - timedelta(days=30), NOW + timedelta(days=365))


class RecordingLoader:
    """A CertificateLoader that serves one PEM and records every URL asked for."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.urls: list[str] = []

    def load(self, url: str) -> bytes:
        self.urls.append(url)
        return self.pem


class FailingLoader:
    """A CertificateLoader whose fetch always fails like a network error would."""

    def load(self, url: str) -> bytes:
        raise ConnectionError(f"cannot reach {url}")


# --------------------------------------------------------------------------- SES builders


def ses_bounce(**overrides: Any) -> dict[str, Any]:
    """An SES bounce notification shaped like the AWS documentation example."""
    doc: dict[str, Any] = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "jane@example.com",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                },
                {
                    "emailAddress": "richard@example.com",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                },
            ],
            "timestamp": "2026-11-27T08:58:38.237Z",
            "feedbackId": "00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000",
            "remoteMtaIp": "127.0.2.0",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-11-27T08:58:37.000Z",
            "source": "bounces+tok123.sig@mail.example.com",
            "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/mail.example.com",
            "sourceIp": "127.0.3.0",
            "sendingAccountId": "123456789012",
            "messageId": "00000137860315fd-34208509-5b74-41f3-95c5-22c1edc3c924-000000",
            "destination": ["jane@example.com", "richard@example.com"],
            "headersTruncated": False,
            "headers": [
                {"name": "From", "value": "News <news@example.com>"},
                {"name": "Message-ID", "value": "<bcast-1.jane@mail.example.com>"},
                {"name": "Subject", "value": "Hello"},
            ],
            "commonHeaders": {
                "from": ["News <news@example.com>"],
                "to": ["jane@example.com"],
                "messageId": "<bcast-1.jane@mail.example.com>",
                "subject": "Hello",
            },
        },
    }
    doc.update(overrides)
    return doc


def ses_complaint() -> dict[str, Any]:
    """An SES complaint notification (ARF feedback type abuse)."""
    doc = ses_bounce()
    del doc["bounce"]
    doc["notificationType"] = "Complaint"
    doc["complaint"] = {
        "userAgent": "AnyCompany Feedback Loop (V0.01)",
        "complainedRecipients": [{"emailAddress": "richard@example.com"}],
        "complaintFeedbackType": "abuse",
        "arrivalDate": "2026-11-27T08:59:00.000Z",
        "timestamp": "2026-11-27T08:59:01.000Z",
        "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
    }
    return doc


def ses_delivery() -> dict[str, Any]:
    """An SES delivery notification."""
    doc = ses_bounce()
    del doc["bounce"]
    doc["notificationType"] = "Delivery"
    doc["delivery"] = {
        "timestamp": "2026-11-27T08:58:39.000Z",
        "processingTimeMillis": 546,
        "recipients": ["jane@example.com"],
        "smtpResponse": "250 2.6.0 Message received",
        "remoteMtaIp": "203.0.113.5",
        "reportingMTA": "a8-70.smtp-out.amazonses.com",
    }
    return doc


def sns_envelope(
    message: str,
    key: rsa.RSAPrivateKey,
    *,
    kind: str = "Notification",
    version: str = "2",
    timestamp: datetime = NOW - timedelta(minutes=1),
    topic: str = TOPIC,
    cert_url: str = CERT_URL,
    subject: str | None = "Amazon SES Email Event Notification",
) -> dict[str, Any]:
    """A signed SNS message around ``message``, signed the way SNS documents it."""
    doc: dict[str, Any] = {
        "Type": kind,
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": topic,
        "Message": message,
        "Timestamp": timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
    }
    if kind == "Notification":
        if subject is not None:
            doc["Subject"] = subject
        doc["UnsubscribeURL"] = "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
        fields = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        doc["Token"] = "2336412f37fb687f5d51e6e2425c464de12884"
        doc["SubscribeURL"] = (
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
            f"&TopicArn={topic}&Token=2336412f37fb687f5d51e6e2425c464de12884"
        )
        fields = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    sign(doc, key, fields, version)
    return doc


def sign(doc: dict[str, Any], key: rsa.RSAPrivateKey, fields: list[str], version: str) -> None:
    """(Re)compute ``doc["Signature"]`` over its canonical SNS string."""
    canonical = "".join(f"{f}\n{doc[f]}\n" for f in fields if f in doc)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1
    signature = key.sign(canonical.encode(), padding.PKCS1v15(), algorithm)
    doc["Signature"] = base64.b64encode(signature).decode()


def body_of(doc: Any) -> bytes:
    return json.dumps(doc).encode()


@pytest.fixture
def loader(cert_pem: bytes) -> RecordingLoader:
    return RecordingLoader(cert_pem)


@pytest.fixture
def ses(loader: RecordingLoader) -> SesWebhook:
    return SesWebhook(loader, topic_arns=[TOPIC])


SNS_HEADERS = {"x-amz-sns-message-type": "Notification"}


# --------------------------------------------------------------------------- SES tests


def test_ses_permanent_bounce_normalises_every_recipient(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey, loader: RecordingLoader
) -> None:
    """A signed SES bounce yields one permanent failed report per bounced recipient."""
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key))
    reports = ses.normalise(body, SNS_HEADERS, NOW)
    assert [r.recipient for r in reports] == ["jane@example.com", "richard@example.com"]
    first = reports[0]
    assert first.status == "5.1.1"
    assert first.diagnostic == "smtp; 550 5.1.1 user unknown"
    assert first.permanent is True
    assert first.action == "failed"
    assert first.source == "ses"
    assert first.reported_at == datetime(2026, 11, 27, 8, 58, 38, 237000, tzinfo=UTC)
    assert first.verp_token == "tok123.sig"
    assert first.message_id == "<bcast-1.jane@mail.example.com>"
    assert first.remote_mta == "127.0.2.0"
    assert first.report_id == (
        "ses:00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000:jane@example.com"
    )
    assert len({r.report_id for r in reports}) == 2
    assert loader.urls == [CERT_URL]


def test_ses_signature_version_1_is_accepted(ses: SesWebhook, rsa_key: rsa.RSAPrivateKey) -> None:
    """SignatureVersion 1 (SHA1withRSA) verifies like version 2."""
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key, version="1"))
    assert len(ses.normalise(body, {}, NOW)) == 2


def test_ses_notification_without_subject_verifies(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey
) -> None:
    """Subject is left out of the canonical string when the message has none."""
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key, subject=None))
    assert len(ses.normalise(body, {}, NOW)) == 2


def test_ses_transient_bounce_is_a_non_permanent_failure(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A Transient bounce is a failure that is not permanent; a missing status is derived."""
    doc = ses_bounce()
    doc["bounce"]["bounceType"] = "Transient"
    doc["bounce"]["bounceSubType"] = "MailboxFull"
    doc["bounce"]["bouncedRecipients"] = [
        {"emailAddress": "jane@example.com", "diagnosticCode": "smtp; 452 4.2.2 mailbox full"}
    ]
    (report,) = ses.normalise(body_of(sns_envelope(json.dumps(doc), rsa_key)), {}, NOW)
    assert report.permanent is False
    assert report.action == "failed"
    assert report.status == "4.2.2"


def test_ses_complaint_is_a_complaint_not_an_error(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey
) -> None:
    """An SES complaint becomes action complaint with its feedback type."""
    body = body_of(sns_envelope(json.dumps(ses_complaint()), rsa_key))
    (report,) = ses.normalise(body, {}, NOW)
    assert report.action == "complaint"
    assert report.recipient == "richard@example.com"
    assert report.feedback_type == "abuse"
    assert report.permanent is False
    assert report.report_id is not None
    assert report.report_id.startswith("ses:000001378603177f")


def test_ses_delivery_is_delivered(ses: SesWebhook, rsa_key: rsa.RSAPrivateKey) -> None:
    """An SES delivery becomes action delivered with the status from the SMTP response."""
    body = body_of(sns_envelope(json.dumps(ses_delivery()), rsa_key))
    (report,) = ses.normalise(body, {}, NOW)
    assert report.action == "delivered"
    assert report.status == "2.6.0"
    assert report.remote_mta == "203.0.113.5"


def test_ses_verp_token_falls_back_to_return_path_header(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey
) -> None:
    """Without a + in mail.source, the Return-Path header's VERP token is used."""
    doc = ses_bounce()
    doc["mail"]["source"] = "news@example.com"
    doc["mail"]["headers"].append(
        {"name": "Return-Path", "value": "<bounces+fromheader@mail.example.com>"}
    )
    reports = ses.normalise(body_of(sns_envelope(json.dumps(doc), rsa_key)), {}, NOW)
    assert {r.verp_token for r in reports} == {"fromheader"}


def test_ses_without_plus_has_no_verp_token(ses: SesWebhook, rsa_key: rsa.RSAPrivateKey) -> None:
    """A return path without + gives no VERP token rather than a guessed one."""
    doc = ses_bounce()
    doc["mail"]["source"] = "bounces@mail.example.com"
    reports = ses.normalise(body_of(sns_envelope(json.dumps(doc), rsa_key)), {}, NOW)
    assert {r.verp_token for r in reports} == {None}


def test_ses_subscription_confirmation_exposes_subscribe_url(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A SubscriptionConfirmation gives no reports but hands back the SubscribeURL."""
    doc = sns_envelope("You have chosen to subscribe ...", rsa_key, kind="SubscriptionConfirmation")
    headers = {"X-Amz-Sns-Message-Type": "SubscriptionConfirmation"}
    result = ses.handle(body_of(doc), headers, NOW)
    assert result.reports == ()
    assert result.subscribe_url == doc["SubscribeURL"]
    assert result.message.token == doc["Token"]
    assert ses.normalise(body_of(doc), headers, NOW) == []


def test_ses_subscription_succeeded_notice_has_no_reports(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey
) -> None:
    """SES's AmazonSnsSubscriptionSucceeded notification carries no reports."""
    message = json.dumps({"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "ok"})
    result = ses.handle(body_of(sns_envelope(message, rsa_key)), {}, NOW)
    assert result.reports == ()
    assert result.subscribe_url is None


def test_ses_signed_by_another_key_is_refused(
    ses: SesWebhook, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    """A message signed by a key other than the certificate's is refused."""
    body = body_of(sns_envelope(json.dumps(ses_bounce()), other_rsa_key))
    with pytest.raises(InvalidSignature):
        ses.normalise(body, {}, NOW)


@pytest.mark.parametrize("field", ["Signature", "SignatureVersion", "SigningCertURL"])
def test_ses_missing_signature_field_is_refused(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey, field: str
) -> None:
    """A message without its signature, version or certificate URL is refused."""
    doc = sns_envelope(json.dumps(ses_bounce()), rsa_key)
    del doc[field]
    with pytest.raises(InvalidSignature, match=field):
        ses.normalise(body_of(doc), {}, NOW)


@pytest.mark.parametrize("field", ["Message", "MessageId", "Subject", "Timestamp", "Type"])
def test_ses_tampered_signed_field_is_refused(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey, field: str
) -> None:
    """Changing any signed field after signing breaks the signature."""
    doc = sns_envelope(json.dumps(ses_bounce()), rsa_key)
    if field == "Message":
        doc[field] = doc[field].replace("jane@example.com", "mallory@example.com")
    elif field == "Timestamp":
        doc[field] = (NOW - timedelta(minutes=2)).isoformat()
    elif field == "Type":
        doc[field] = "UnsubscribeConfirmation"
        doc["SubscribeURL"] = "https://sns.us-east-1.amazonaws.com/?Action=x"
        doc["Token"] = "t"
    else:
        doc[field] = doc[field] + "x"
    with pytest.raises(InvalidSignature):
        ses.normalise(body_of(doc), {}, NOW)


def test_ses_unsupported_signature_version_is_refused(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey
) -> None:
    """Only SignatureVersion 1 and 2 exist."""
    doc = sns_envelope(json.dumps(ses_bounce()), rsa_key)
    doc["SignatureVersion"] = "3"
    with pytest.raises(InvalidSignature, match="SignatureVersion"):
        ses.normalise(body_of(doc), {}, NOW)


@pytest.mark.parametrize(
    "timestamp", [NOW - timedelta(hours=1, seconds=1), NOW + timedelta(hours=1, seconds=1)]
)
def test_ses_stale_or_future_timestamp_is_refused(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey, timestamp: datetime
) -> None:
    """A correctly signed message older or newer than the tolerance is refused."""
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key, timestamp=timestamp))
    with pytest.raises(InvalidSignature, match="Timestamp"):
        ses.normalise(body, {}, NOW)


def test_ses_tolerance_is_configurable(loader: RecordingLoader, rsa_key: rsa.RSAPrivateKey) -> None:
    """A shorter tolerance refuses a message the default would accept."""
    strict = SesWebhook(loader, topic_arns=[TOPIC], tolerance=timedelta(seconds=30))
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key))
    with pytest.raises(InvalidSignature):
        strict.normalise(body, {}, NOW)


def test_ses_unknown_topic_is_refused_before_loading(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey, loader: RecordingLoader
) -> None:
    """A genuine SNS message from a topic not configured is refused without a fetch."""
    other = "arn:aws:sns:us-east-1:999999999999:someone-elses-topic"
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key, topic=other))
    with pytest.raises(InvalidSignature, match="TopicArn"):
        ses.normalise(body, {}, NOW)
    assert loader.urls == []


BAD_CERT_URLS = [
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
    "https://evil.example/sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com@evil.example/SimpleNotificationService-1.pem",
    "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem",
    "https://evilsns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.evil.amazonaws.com/SimpleNotificationService-1.pem",
    "https://s3.amazonaws.com/sns.us-east-1.amazonaws.com/x.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.txt",
    "https://sns.us-east-1.amazonaws.com/x.pem?redirect=https://evil.example",
    "https://sns.us-east-1.amazona\nws.com/SimpleNotificationService-1.pem",
    "https://SNS.US-EAST-1.AMAZONAWS.COM/SimpleNotificationService-1.pem",
    "file:///etc/ssl/cert.pem",
    "//sns.us-east-1.amazonaws.com/x.pem",
    "",
]


@pytest.mark.parametrize("url", BAD_CERT_URLS)
def test_ses_untrusted_cert_url_is_refused_before_loading(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey, loader: RecordingLoader, url: str
) -> None:
    """A SigningCertURL that is not https://sns.<region>.amazonaws.com/*.pem is never fetched."""
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key, cert_url=url))
    with pytest.raises(InvalidSignature):
        ses.normalise(body, {}, NOW)
    assert loader.urls == []


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
    ],
)
def test_genuine_sns_cert_urls_are_accepted(url: str) -> None:
    """The URLs SNS really uses pass the check unchanged."""
    assert validate_sns_url(url) == url


def test_ses_certificate_fetch_failure_is_invalid_signature(rsa_key: rsa.RSAPrivateKey) -> None:
    """A loader that fails makes the message unverifiable, not a crash."""
    ses = SesWebhook(FailingLoader(), topic_arns=[TOPIC])
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key))
    with pytest.raises(InvalidSignature, match="could not load"):
        ses.normalise(body, {}, NOW)


def test_ses_expired_certificate_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """A certificate outside its validity period does not verify anything."""
    expired = _self_signed(rsa_key, NOW - timedelta(days=400), NOW - timedelta(days=35))
    ses = SesWebhook(RecordingLoader(expired), topic_arns=[TOPIC])
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key))
    with pytest.raises(InvalidSignature, match="not valid now"):
        ses.normalise(body, {}, NOW)


def test_ses_garbage_certificate_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """Bytes that are not a PEM certificate are refused."""
    ses = SesWebhook(RecordingLoader(b"<html>not a cert</html>"), topic_arns=[TOPIC])
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key))
    with pytest.raises(InvalidSignature, match="not a PEM"):
        ses.normalise(body, {}, NOW)


def test_ses_signed_but_malformed_message_names_the_field(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A correctly signed Message that is not JSON is InvalidInput naming Message."""
    body = body_of(sns_envelope("{not json", rsa_key))
    with pytest.raises(InvalidInput) as info:
        ses.normalise(body, {}, NOW)
    assert info.value.field == "Message"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda d: d["bounce"]["bouncedRecipients"][1].pop("emailAddress"),
            "Message.bounce.bouncedRecipients[1].emailAddress",
        ),
        (lambda d: d["bounce"].__setitem__("bounceType", "Sometimes"), "Message.bounce.bounceType"),
        (lambda d: d["bounce"].__setitem__("timestamp", 12), "Message.bounce.timestamp"),
        (
            lambda d: d["bounce"].__setitem__("timestamp", "2026-11-27T08:58:38"),
            "Message.bounce.timestamp",
        ),
        (
            lambda d: d["bounce"].__setitem__("bouncedRecipients", []),
            "Message.bounce.bouncedRecipients",
        ),
        (lambda d: d.pop("mail"), "Message.mail"),
        (lambda d: d["mail"].__setitem__("headers", "From: x"), "Message.mail.headers"),
        (
            lambda d: d["bounce"]["bouncedRecipients"][0].__setitem__("status", 511),
            "Message.bounce.bouncedRecipients[0].status",
        ),
    ],
)
def test_ses_signed_but_wrong_fields_name_the_field(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey, mutate: Any, field: str
) -> None:
    """A signed SES payload with a missing or mistyped field is InvalidInput naming it."""
    doc = ses_bounce()
    mutate(doc)
    with pytest.raises(InvalidInput) as info:
        ses.normalise(body_of(sns_envelope(json.dumps(doc), rsa_key)), {}, NOW)
    assert info.value.field == field


def test_ses_message_type_header_must_match_body(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey
) -> None:
    """An x-amz-sns-message-type header that contradicts Type is refused."""
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key))
    with pytest.raises(InvalidInput, match="x-amz-sns-message-type"):
        ses.normalise(body, {"X-Amz-Sns-Message-Type": "SubscriptionConfirmation"}, NOW)


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b"\xff\xfe", b'{"Type": 1}', b"[" * 100_000]
)
def test_ses_malformed_envelope_is_invalid_input(ses: SesWebhook, body: bytes) -> None:
    """A body that is not an SNS JSON object is InvalidInput, never another exception."""
    with pytest.raises(InvalidInput):
        ses.normalise(body, {}, NOW)


def test_ses_naive_now_is_refused(ses: SesWebhook, rsa_key: rsa.RSAPrivateKey) -> None:
    """The current time must be timezone-aware."""
    body = body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key))
    with pytest.raises(InvalidInput, match="now"):
        ses.normalise(body, {}, NOW.replace(tzinfo=None))


def test_ses_needs_at_least_one_topic(loader: RecordingLoader) -> None:
    """Without a topic allow-list any AWS customer's topic could post reports."""
    with pytest.raises(InvalidInput, match="topic_arns"):
        SesWebhook(loader, topic_arns=[])
    with pytest.raises(InvalidInput, match="topic_arns"):
        SesWebhook(loader, topic_arns=TOPIC)


def test_caching_loader_fetches_each_url_once(cert_pem: bytes) -> None:
    """The caching loader asks its inner loader once per URL and bounds its size."""
    inner = RecordingLoader(cert_pem)
    cache = CachingCertificateLoader(inner, max_entries=2)
    for url in ["a", "a", "b", "a", "c", "a"]:
        assert cache.load(url) == cert_pem
    assert inner.urls == ["a", "b", "c", "a"]


# --------------------------------------------------------------------------- SendGrid


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_public_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sendgrid_headers(
    key: ec.EllipticCurvePrivateKey, body: bytes, stamp: int | None = None
) -> dict[str, str]:
    stamp = int((NOW - timedelta(seconds=5)).timestamp()) if stamp is None else stamp
    signature = key.sign(str(stamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(stamp),
    }


SENT = int((NOW - timedelta(minutes=1)).timestamp())


def sendgrid_batch() -> list[dict[str, Any]]:
    """A SendGrid event batch shaped like the documented event examples."""
    base = {
        "timestamp": SENT,
        "smtp-id": "<bcast-1.jane@mail.example.com>",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    }
    return [
        {**base, "email": "jane@example.com", "event": "processed", "sg_event_id": "p1"},
        {
            **base,
            "email": "jane@example.com",
            "event": "bounce",
            "sg_event_id": "b1",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist",
            "status": "5.1.1",
            "type": "bounce",
            "bounce_classification": "Invalid Address",
        },
        {
            **base,
            "email": "bob@example.com",
            "event": "bounce",
            "sg_event_id": "b2",
            "reason": "554 5.7.1 Service unavailable; client host blocked",
            "status": "5.7.1",
            "type": "blocked",
        },
        {
            **base,
            "email": "carol@example.com",
            "event": "dropped",
            "sg_event_id": "d1",
            "reason": "Bounced Address",
            "status": "5.0.0",
        },
        {
            **base,
            "email": "dave@example.com",
            "event": "deferred",
            "sg_event_id": "df1",
            "response": "400 4.2.2 try again later",
            "attempt": "5",
        },
        {
            **base,
            "email": "erin@example.com",
            "event": "delivered",
            "sg_event_id": "dl1",
            "response": "250 OK",
        },
        {**base, "email": "frank@example.com", "event": "spamreport", "sg_event_id": "s1"},
        {
            **base,
            "email": "frank@example.com",
            "event": "open",
            "sg_event_id": "o1",
            "useragent": "Mozilla/4.0",
            "ip": "255.255.255.255",
        },
    ]


def test_sendgrid_batch_normalises_outcome_events(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """Every outcome event of a signed batch maps to its action; opens are skipped."""
    hook = SendGridWebhook(sendgrid_public_key(ec_key))
    body = body_of(sendgrid_batch())
    reports = hook.normalise(body, sendgrid_headers(ec_key, body), NOW)
    by_id = {r.report_id: r for r in reports}
    assert set(by_id) == {f"sendgrid:{i}" for i in ("b1", "b2", "d1", "df1", "dl1", "s1")}
    bounce = by_id["sendgrid:b1"]
    assert (bounce.action, bounce.permanent, bounce.status) == ("failed", True, "5.1.1")
    assert bounce.recipient == "jane@example.com"
    assert bounce.message_id == "<bcast-1.jane@mail.example.com>"
    assert bounce.reported_at == NOW - timedelta(minutes=1)
    assert bounce.source == "sendgrid"
    assert bounce.diagnostic.startswith("550 5.1.1")
    blocked = by_id["sendgrid:b2"]
    assert (blocked.action, blocked.permanent) == ("failed", False)
    dropped = by_id["sendgrid:d1"]
    assert (dropped.action, dropped.permanent, dropped.diagnostic) == (
        "failed",
        True,
        "Bounced Address",
    )
    deferred = by_id["sendgrid:df1"]
    assert (deferred.action, deferred.status) == ("delayed", "4.2.2")
    assert by_id["sendgrid:dl1"].action == "delivered"
    assert by_id["sendgrid:dl1"].status == "250"
    spam = by_id["sendgrid:s1"]
    assert (spam.action, spam.feedback_type) == ("complaint", "abuse")


def test_sendgrid_accepts_pem_key_and_lowercase_headers(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    """A PEM verification key works and header names are matched case-insensitively."""
    pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hook = SendGridWebhook(pem.decode())
    body = body_of(sendgrid_batch())
    headers = {k.lower(): v for k, v in sendgrid_headers(ec_key, body).items()}
    assert len(hook.normalise(body, headers, NOW)) == 6


def test_sendgrid_wrong_key_is_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """A batch signed by another key is refused."""
    hook = SendGridWebhook(sendgrid_public_key(ec_key))
    body = body_of(sendgrid_batch())
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidSignature, match="does not match"):
        hook.normalise(body, sendgrid_headers(other, body), NOW)


@pytest.mark.parametrize(
    "header",
    ["X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"],
)
def test_sendgrid_missing_header_is_refused(
    ec_key: ec.EllipticCurvePrivateKey, header: str
) -> None:
    """Without the signature or timestamp header nothing is accepted."""
    hook = SendGridWebhook(sendgrid_public_key(ec_key))
    body = body_of(sendgrid_batch())
    headers = sendgrid_headers(ec_key, body)
    del headers[header]
    with pytest.raises(InvalidSignature, match=header):
        hook.normalise(body, headers, NOW)


def test_sendgrid_tampered_body_is_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """Changing one byte of the signed body breaks the signature."""
    hook = SendGridWebhook(sendgrid_public_key(ec_key))
    body = body_of(sendgrid_batch())
    headers = sendgrid_headers(ec_key, body)
    tampered = body.replace(b'"type": "bounce"', b'"type": "blockd"')
    assert tampered != body
    with pytest.raises(InvalidSignature):
        hook.normalise(tampered, headers, NOW)


def test_sendgrid_tampered_timestamp_is_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """The timestamp is signed: moving it forward breaks the signature."""
    hook = SendGridWebhook(sendgrid_public_key(ec_key))
    body = body_of(sendgrid_batch())
    headers = sendgrid_headers(ec_key, body)
    headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(NOW.timestamp()))
    with pytest.raises(InvalidSignature):
        hook.normalise(body, headers, NOW)


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_sendgrid_stale_or_future_timestamp_is_refused(
    ec_key: ec.EllipticCurvePrivateKey, offset: timedelta
) -> None:
    """A validly signed batch stamped outside the tolerance is refused."""
    hook = SendGridWebhook(sendgrid_public_key(ec_key))
    body = body_of(sendgrid_batch())
    headers = sendgrid_headers(ec_key, body, stamp=int((NOW + offset).timestamp()))
    with pytest.raises(InvalidSignature, match="Timestamp"):
        hook.normalise(body, headers, NOW)


def test_sendgrid_garbled_signature_is_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """A signature header that is not base64 is refused as a bad signature."""
    hook = SendGridWebhook(sendgrid_public_key(ec_key))
    body = body_of(sendgrid_batch())
    headers = sendgrid_headers(ec_key, body)
    headers["X-Twilio-Email-Event-Webhook-Signature"] = "%%%not base64%%%"
    with pytest.raises(InvalidSignature):
        hook.normalise(body, headers, NOW)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"{oops", "body"),
        (b'{"event": "bounce"}', "body"),
        (
            json.dumps([{"event": "bounce", "timestamp": SENT, "sg_event_id": "x"}]).encode(),
            "body[0].email",
        ),
        (
            json.dumps(
                [
                    {
                        "event": "bounce",
                        "email": "a@example.com",
                        "sg_event_id": "x",
                        "timestamp": "yesterday",
                    }
                ]
            ).encode(),
            "body[0].timestamp",
        ),
        (
            json.dumps(
                [{"event": "delivered", "email": "a@example.com", "timestamp": SENT}]
            ).encode(),
            "body[0].sg_event_id",
        ),
        (json.dumps([1]).encode(), "body[0]"),
    ],
)
def test_sendgrid_signed_but_malformed_names_the_field(
    ec_key: ec.EllipticCurvePrivateKey, payload: bytes, field: str
) -> None:
    """A correctly signed but malformed batch is InvalidInput naming the field."""
    hook = SendGridWebhook(sendgrid_public_key(ec_key))
    with pytest.raises(InvalidInput) as info:
        hook.normalise(payload, sendgrid_headers(ec_key, payload), NOW)
    assert info.value.field == field


@pytest.mark.parametrize("key", ["", "not base64!", base64.b64encode(b"junk").decode()])
def test_sendgrid_bad_public_key_is_refused_at_construction(key: str) -> None:
    """A verification key that is not an ECDSA P-256 public key is refused up front."""
    with pytest.raises(InvalidInput, match="public_key"):
        SendGridWebhook(key)


def test_sendgrid_rejects_a_non_p256_key() -> None:
    """A P-384 key is not what SendGrid uses and is refused."""
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(InvalidInput, match="P-256"):
        SendGridWebhook(sendgrid_public_key(p384))


# --------------------------------------------------------------------------- Mailgun

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
MAILGUN_TOKEN = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"


def mailgun_signature(token: str, stamp: int, key: str = MAILGUN_KEY) -> dict[str, str]:
    digest = hmac.new(key.encode(), f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": str(stamp), "token": token, "signature": digest}


def mailgun_failed(severity: str = "permanent") -> dict[str, Any]:
    """A Mailgun "failed" event-data shaped like the documented example."""
    return {
        "event": "failed",
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": (NOW - timedelta(seconds=30)).timestamp(),
        "log-level": "error",
        "severity": severity,
        "reason": "bounce" if severity == "permanent" else "generic",
        "envelope": {
            "sender": "bounces+tok456.sig@mail.example.com",
            "transport": "smtp",
            "targets": "alice@example.com",
        },
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False},
        "recipient": "alice@example.com",
        "recipient-domain": "example.com",
        "message": {
            "headers": {
                "to": "Alice <alice@example.com>",
                "message-id": "bcast-1.alice@mail.example.com",
                "from": "News <news@example.com>",
                "subject": "Hello",
            },
            "attachments": [],
            "size": 111,
        },
        "delivery-status": {
            "attempt-no": 1,
            "message": "5.1.1 The email account that you tried to reach does not exist",
            "code": 550 if severity == "permanent" else 451,
            "description": "",
            "session-seconds": 0.1,
            "mx-host": "mx.example.com",
        },
    }


def mailgun_body(
    event: dict[str, Any],
    token: str = MAILGUN_TOKEN,
    stamp: int | None = None,
) -> bytes:
    stamp = int((NOW - timedelta(seconds=20)).timestamp()) if stamp is None else stamp
    return body_of({"signature": mailgun_signature(token, stamp), "event-data": event})


def test_mailgun_permanent_failure_normalises(mailgun: MailgunWebhook) -> None:
    """A signed permanent failure is a permanent failed report with every correlation hint."""
    (report,) = mailgun.normalise(mailgun_body(mailgun_failed()), {}, NOW)
    assert report.recipient == "alice@example.com"
    assert report.action == "failed"
    assert report.permanent is True
    assert report.status == "5.1.1"
    assert report.diagnostic.startswith("550 5.1.1 The email account")
    assert report.message_id == "<bcast-1.alice@mail.example.com>"
    assert report.verp_token == "tok456.sig"
    assert report.report_id == "mailgun:G9Bn5sl1TC6nu79C8C0bwg"
    assert report.remote_mta == "mx.example.com"
    assert report.source == "mailgun"
    assert abs(report.reported_at - (NOW - timedelta(seconds=30))) < timedelta(milliseconds=1)


def test_mailgun_temporary_failure_is_a_delay(mailgun: MailgunWebhook) -> None:
    """A temporary failure is not permanent and is reported as delayed (Mailgun retries)."""
    event = mailgun_failed("temporary")
    event["delivery-status"]["message"] = "4.2.2 mailbox full"
    (report,) = mailgun.normalise(mailgun_body(event), {}, NOW)
    assert (report.action, report.permanent, report.status) == ("delayed", False, "4.2.2")


def test_mailgun_delivered_and_complained(mailgun: MailgunWebhook) -> None:
    """delivered and complained events map to delivered and complaint."""
    delivered = mailgun_failed()
    delivered.update(event="delivered", id="dlv1")
    delivered.pop("severity")
    delivered["delivery-status"] = {"code": 250, "message": "OK", "description": ""}
    (report,) = mailgun.normalise(mailgun_body(delivered, token="t-delivered"), {}, NOW)
    assert (report.action, report.status) == ("delivered", "250")
    complained = mailgun_failed()
    complained.update(event="complained", id="cpl1")
    (report,) = mailgun.normalise(mailgun_body(complained, token="t-complained"), {}, NOW)
    assert (report.action, report.report_id) == ("complaint", "mailgun:cpl1")


def test_mailgun_other_events_give_no_reports(mailgun: MailgunWebhook) -> None:
    """An opened event is verified but yields nothing."""
    event = {"event": "opened", "id": "o1", "timestamp": NOW.timestamp(), "recipient": "a@b.c"}
    assert mailgun.normalise(mailgun_body(event), {}, NOW) == []


@pytest.fixture
def mailgun() -> MailgunWebhook:
    return MailgunWebhook(MAILGUN_KEY)


def test_mailgun_token_with_another_event_is_refused(mailgun: MailgunWebhook) -> None:
    """A signed token accepted once is refused when it comes back with another event."""
    assert len(mailgun.normalise(mailgun_body(mailgun_failed()), {}, NOW)) == 1
    altered = mailgun_failed()
    altered["recipient"] = "someone-else@example.com"
    with pytest.raises(InvalidSignature, match="another event"):
        mailgun.normalise(mailgun_body(altered), {}, NOW + timedelta(seconds=1))


def test_mailgun_retry_of_the_same_request_is_accepted(mailgun: MailgunWebhook) -> None:
    """The same request again (Mailgun retrying one the host did not record) gives the
    same reports, which record idempotently by their report_id."""
    body = mailgun_body(mailgun_failed())
    first = mailgun.normalise(body, {}, NOW)
    assert mailgun.normalise(body, {}, NOW + timedelta(seconds=30)) == first


def test_mailgun_replay_store_is_shared_between_instances() -> None:
    """Two webhooks sharing one token store refuse each other's tokens with other events."""
    shared = InMemorySeenTokens()
    first = MailgunWebhook(MAILGUN_KEY, seen_tokens=shared)
    second = MailgunWebhook(MAILGUN_KEY, seen_tokens=shared)
    first.normalise(mailgun_body(mailgun_failed()), {}, NOW)
    altered = mailgun_failed("temporary")
    with pytest.raises(InvalidSignature):
        second.normalise(mailgun_body(altered), {}, NOW)


def test_mailgun_token_is_not_spent_by_a_rejected_request(mailgun: MailgunWebhook) -> None:
    """A request refused as malformed leaves its token unused."""
    broken = mailgun_failed()
    del broken["recipient"]
    with pytest.raises(InvalidInput):
        mailgun.normalise(mailgun_body(broken), {}, NOW)
    assert len(mailgun.normalise(mailgun_body(mailgun_failed()), {}, NOW)) == 1


def test_mailgun_wrong_key_is_refused() -> None:
    """A signature made with another signing key is refused."""
    hook = MailgunWebhook("key-someone-else")
    with pytest.raises(InvalidSignature, match="does not match"):
        hook.normalise(mailgun_body(mailgun_failed()), {}, NOW)


@pytest.mark.parametrize("part", ["timestamp", "token", "signature"])
def test_mailgun_missing_signature_part_is_refused(mailgun: MailgunWebhook, part: str) -> None:
    """Each of timestamp, token and signature is required."""
    doc = json.loads(mailgun_body(mailgun_failed()))
    del doc["signature"][part]
    with pytest.raises(InvalidSignature, match=part):
        mailgun.normalise(body_of(doc), {}, NOW)


def test_mailgun_missing_signature_object_is_refused(mailgun: MailgunWebhook) -> None:
    """An unsigned request is refused."""
    with pytest.raises(InvalidSignature):
        mailgun.normalise(body_of({"event-data": mailgun_failed()}), {}, NOW)


def test_mailgun_swapped_token_is_refused(mailgun: MailgunWebhook) -> None:
    """A fresh token under an old signature does not verify."""
    doc = json.loads(mailgun_body(mailgun_failed()))
    doc["signature"]["token"] = "f" * 50
    with pytest.raises(InvalidSignature):
        mailgun.normalise(body_of(doc), {}, NOW)


@pytest.mark.parametrize("offset", [timedelta(minutes=-5, seconds=-1), timedelta(minutes=6)])
def test_mailgun_stale_or_future_timestamp_is_refused(
    mailgun: MailgunWebhook, offset: timedelta
) -> None:
    """A correctly signed request stamped outside five minutes is refused."""
    body = mailgun_body(mailgun_failed(), stamp=int((NOW + offset).timestamp()))
    with pytest.raises(InvalidSignature, match=r"signature\.timestamp"):
        mailgun.normalise(body, {}, NOW)


def test_mailgun_tolerance_is_configurable() -> None:
    """A longer tolerance accepts what the default refuses."""
    hook = MailgunWebhook(MAILGUN_KEY, tolerance=timedelta(minutes=30))
    body = mailgun_body(mailgun_failed(), stamp=int((NOW - timedelta(minutes=20)).timestamp()))
    assert len(hook.normalise(body, {}, NOW)) == 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.pop("severity"), "event-data.severity"),
        (lambda e: e.__setitem__("severity", "sometimes"), "event-data.severity"),
        (lambda e: e.__setitem__("timestamp", True), "event-data.timestamp"),
        (lambda e: e.__setitem__("timestamp", 1e300), "event-data.timestamp"),
        (lambda e: e.__setitem__("delivery-status", []), "event-data.delivery-status"),
        (
            lambda e: e["delivery-status"].__setitem__("code", [550]),
            "event-data.delivery-status.code",
        ),
        (lambda e: e["message"].__setitem__("headers", "x"), "event-data.message.headers"),
        (lambda e: e.__setitem__("recipient", "no-at-sign"), "event-data.recipient"),
        (lambda e: e.pop("id"), "event-data.id"),
    ],
)
def test_mailgun_signed_but_malformed_names_the_field(
    mailgun: MailgunWebhook, mutate: Any, field: str
) -> None:
    """A correctly signed but malformed event is InvalidInput naming the field."""
    event = mailgun_failed()
    mutate(event)
    with pytest.raises(InvalidInput) as info:
        mailgun.normalise(mailgun_body(event), {}, NOW)
    assert info.value.field == field


def test_seen_tokens_forget_expired_tokens_and_stay_bounded() -> None:
    """Expired tokens may come back and the store never exceeds its bound."""
    store = InMemorySeenTokens(max_tokens=3)
    later = NOW + timedelta(minutes=5)
    assert store.claim("a", "d1", expires_at=later, now=NOW)
    assert store.claim("a", "d1", expires_at=later, now=NOW)
    assert not store.claim("a", "d2", expires_at=later, now=NOW)
    assert store.claim("a", "d2", expires_at=later + timedelta(minutes=5), now=later)
    for token in ["b", "c", "d", "e"]:
        assert store.claim(token, "d", expires_at=later + timedelta(minutes=1), now=NOW)
        assert len(store) <= 3


# --------------------------------------------------------------------------- Postmark

BASIC = BasicAuth("postmark", "s3cret-pass")


def basic_header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def postmark_bounce(**overrides: Any) -> dict[str, Any]:
    """A Postmark bounce webhook shaped like the documented example."""
    doc: dict[str, Any] = {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Test",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"a_key": "a_value"},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, "
        "mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "john@example.com",
        "From": "sender@example.com",
        "BouncedAt": "2026-11-27T08:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Test subject",
        "Content": "Return-Path: <>...",
    }
    doc.update(overrides)
    return doc


def test_postmark_hard_bounce_normalises() -> None:
    """A hard bounce with valid basic auth is a permanent failure; Postmark's own MessageID
    (its UUID) is never taken for our Message-ID."""
    hook = PostmarkWebhook(BASIC)
    (report,) = hook.normalise(
        body_of(postmark_bounce()), basic_header("postmark", "s3cret-pass"), NOW
    )
    assert report.recipient == "john@example.com"
    assert (report.action, report.permanent, report.status) == ("failed", True, "5.1.1")
    assert report.diagnostic.startswith("smtp;550 5.1.1")
    assert report.report_id == "postmark:4323372036854775807"
    assert report.message_id is None
    assert report.verp_token is None
    assert report.reported_at == datetime(2026, 11, 27, 8, 33, 54, 907025, tzinfo=UTC)
    assert report.source == "postmark"


@pytest.mark.parametrize(
    ("bounce_type", "action", "permanent"),
    [
        ("SoftBounce", "failed", False),
        ("Transient", "delayed", False),
        ("AutoResponder", "autoreply", False),
        ("BadEmailAddress", "failed", True),
        ("SomethingNew", "failed", False),
    ],
)
def test_postmark_bounce_types_map_to_actions(
    bounce_type: str, action: str, permanent: bool
) -> None:
    """Each Postmark bounce Type maps to its action and permanence."""
    hook = PostmarkWebhook(BASIC)
    doc = postmark_bounce(Type=bounce_type, Details="", Description="")
    (report,) = hook.normalise(body_of(doc), basic_header("postmark", "s3cret-pass"), NOW)
    assert (report.action, report.permanent) == (action, permanent)
    assert report.status in {"5.0.0", "4.0.0"}


def test_postmark_spam_complaint_and_delivery() -> None:
    """SpamComplaint is a complaint and Delivery is delivered."""
    hook = PostmarkWebhook(HeaderSecret("X-Webhook-Secret", "shh-123"))
    headers = {"x-webhook-secret": "shh-123"}
    complaint = postmark_bounce(RecordType="SpamComplaint", Type="SpamComplaint", ID=42)
    (report,) = hook.normalise(body_of(complaint), headers, NOW)
    assert (report.action, report.feedback_type, report.report_id) == (
        "complaint",
        "abuse",
        "postmark:42",
    )
    delivery = {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Recipient": "john@example.com",
        "Tag": "welcome-email",
        "DeliveredAt": "2026-11-27T08:33:54.9070259Z",
        "Details": "Test delivery webhook details",
        "Metadata": {},
    }
    (report,) = hook.normalise(body_of(delivery), headers, NOW)
    assert report.action == "delivered"


def test_postmark_other_record_types_give_no_reports() -> None:
    """Open and Click records are authenticated but carry no outcome."""
    hook = PostmarkWebhook(BASIC)
    body = body_of({"RecordType": "Open", "MessageID": "x", "Recipient": "a@b.c"})
    assert hook.normalise(body, basic_header("postmark", "s3cret-pass"), NOW) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic_header("postmark", "wrong"),
        basic_header("someone", "s3cret-pass"),
        basic_header("postmark", "s3cret-pass-and-more"),
        {"Authorization": "Bearer s3cret-pass"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"postmarks3cret-pass").decode()},
    ],
)
def test_postmark_bad_basic_auth_is_refused(headers: dict[str, str]) -> None:
    """Missing or wrong basic-auth credentials are refused."""
    with pytest.raises(InvalidSignature):
        PostmarkWebhook(BASIC).normalise(body_of(postmark_bounce()), headers, NOW)


@pytest.mark.parametrize("headers", [{}, {"X-Webhook-Secret": "shh-12"}, {"X-Other": "shh-123"}])
def test_postmark_bad_shared_secret_is_refused(headers: dict[str, str]) -> None:
    """A missing or wrong shared-secret header is refused."""
    hook = PostmarkWebhook(HeaderSecret("X-Webhook-Secret", "shh-123"))
    with pytest.raises(InvalidSignature):
        hook.normalise(body_of(postmark_bounce()), headers, NOW)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (postmark_bounce(Email=None), "Email"),
        (postmark_bounce(ID=True), "ID"),
        (postmark_bounce(BouncedAt="last tuesday"), "BouncedAt"),
        (postmark_bounce(Type=7), "Type"),
        ({"Type": "HardBounce"}, "RecordType"),
        ([postmark_bounce()], "body"),
    ],
)
def test_postmark_malformed_payload_names_the_field(doc: Any, field: str) -> None:
    """An authenticated but malformed payload is InvalidInput naming the field."""
    with pytest.raises(InvalidInput) as info:
        PostmarkWebhook(BASIC).normalise(body_of(doc), basic_header("postmark", "s3cret-pass"), NOW)
    assert info.value.field == field


# --------------------------------------------------------------------------- shared


def test_every_normaliser_satisfies_the_protocol(
    ses: SesWebhook, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """Each provider class is a WebhookNormaliser with its own source name."""
    hooks: list[WebhookNormaliser] = [
        ses,
        SendGridWebhook(sendgrid_public_key(ec_key)),
        MailgunWebhook(MAILGUN_KEY),
        PostmarkWebhook(BASIC),
    ]
    assert all(isinstance(h, WebhookNormaliser) for h in hooks)
    assert [h.source for h in hooks] == ["ses", "sendgrid", "mailgun", "postmark"]


def test_ses_delivery_delay_is_delayed(ses: SesWebhook, rsa_key: rsa.RSAPrivateKey) -> None:
    """A published DeliveryDelay event becomes a delayed, non-permanent report."""
    doc = ses_bounce()
    del doc["bounce"], doc["notificationType"]
    doc["eventType"] = "DeliveryDelay"
    doc["deliveryDelay"] = {
        "timestamp": "2026-11-27T08:58:50.000Z",
        "delayType": "MailboxFull",
        "expirationTime": "2026-11-28T08:58:37.000Z",
        "delayedRecipients": [
            {
                "emailAddress": "jane@example.com",
                "status": "4.2.2",
                "diagnosticCode": "smtp; 452 4.2.2 mailbox full",
            }
        ],
    }
    (report,) = ses.normalise(body_of(sns_envelope(json.dumps(doc), rsa_key)), {}, NOW)
    assert (report.action, report.permanent, report.status) == ("delayed", False, "4.2.2")


def test_redelivered_requests_give_the_same_report_ids(
    ses: SesWebhook, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """A provider retry of the same event yields the same report_id, so it is recorded once."""
    first = ses.normalise(body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key)), {}, NOW)
    again = ses.normalise(
        body_of(sns_envelope(json.dumps(ses_bounce()), rsa_key, timestamp=NOW)),
        {},
        NOW + timedelta(minutes=2),
    )
    assert [r.report_id for r in first] == [r.report_id for r in again]
    hook = SendGridWebhook(sendgrid_public_key(ec_key))
    body = body_of(sendgrid_batch())
    later = int((NOW + timedelta(minutes=3)).timestamp())
    once = hook.normalise(body, sendgrid_headers(ec_key, body), NOW)
    twice = hook.normalise(body, sendgrid_headers(ec_key, body, later), NOW + timedelta(minutes=3))
    assert [r.report_id for r in once] == [r.report_id for r in twice]
