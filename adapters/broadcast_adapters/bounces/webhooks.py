"""Provider bounce webhooks normalised into ``BounceReport`` values, signatures verified.

Lives here: one normaliser per provider (``SesWebhook`` for Amazon SES through
SNS, ``SendGridWebhook``, ``MailgunWebhook``, ``PostmarkWebhook``), the ports
they depend on (``CertificateLoader`` for SNS signing certificates,
``SeenTokens``, a port of the core, for Mailgun's one-time tokens) with small default
implementations, and the ``WebhookNormaliser`` protocol they all satisfy.

Every normaliser takes the raw request body (bytes, exactly as received: the
signatures cover those bytes), the request headers and the current time, and
either returns every report of the request or raises a ``BroadcastError``
subclass and returns nothing: ``InvalidSignature`` when the request cannot be
shown to come from the provider (missing, wrong or stale signature, replayed
token, untrusted certificate URL, unexpected SNS topic) and ``InvalidInput``
naming the field when the payload is malformed. A request is never half
accepted: one bad event in a batch rejects the batch.

Events that are not delivery outcomes (opens, clicks, "processed", ...) are
skipped, not errors. Every report's ``report_id`` is ``"<source>:<provider event
id>"`` (plus the recipient where one provider event covers several
recipients), so that the same event delivered twice is recorded once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import ssl
import threading
import urllib.request
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from broadcast_domain.domain.values import BounceReport
from broadcast_domain.domain.verp import verp_token_of
from broadcast_domain.errors import BroadcastError, InvalidInput, InvalidSignature
from broadcast_domain.ports import SeenTokens

__all__ = [
    "POSTMARK_CONTENT_SCAN",
    "POSTMARK_VERP_METADATA",
    "BasicAuth",
    "CachingCertificateLoader",
    "CertificateLoader",
    "HeaderSecret",
    "InMemorySeenTokens",
    "MailgunWebhook",
    "PostmarkAuth",
    "PostmarkWebhook",
    "SeenTokens",
    "SendGridWebhook",
    "SesWebhook",
    "SesWebhookResult",
    "SnsMessage",
    "UrllibCertificateLoader",
    "WebhookNormaliser",
    "validate_sns_url",
]


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class WebhookNormaliser(Protocol):
    """Turns one provider webhook request into normalised reports, or raises."""

    @property
    def source(self) -> str:
        """The provider name written into ``BounceReport.source``."""
        ...

    def normalise(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> list[BounceReport]:
        """Verify the request and return its reports; raise a BroadcastError if it is bad."""
        ...


# --------------------------------------------------------------------------- helpers

_ENHANCED_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_REPLY_CODE = re.compile(r"^\s*(?:smtp;\s*)?([245]\d\d)(?!\d)")
_FAILURE_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    # HTTP header names are case-insensitive; hosts pass plain dicts as often as
    # case-insensitive mappings, so fold once here.
    if not isinstance(headers, Mapping):
        raise InvalidInput("headers must be a mapping of header name to value", field="headers")
    folded: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidInput("header names and values must be strings", field="headers")
        folded[name.lower()] = value
    return folded


def _require_now(now: datetime) -> datetime:
    if not isinstance(now, datetime):
        raise InvalidInput(f"now must be a datetime, got {type(now).__name__}", field="now")
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInput("now is a naive datetime; pass a timezone-aware datetime", field="now")
    return now


def _require_body(body: bytes) -> bytes:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise InvalidInput(
        f"body must be the raw request bytes, got {type(body).__name__}", field="body"
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(data: bytes | str, field: str) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors; absurd nesting
        # depth surfaces as RecursionError.
        raise InvalidInput(f"{field} is not valid UTF-8 JSON: {exc}", field=field) from exc


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{path} must be a JSON object, got {_describe(value)}", field=path)
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(f"{path} must be a JSON array, got {_describe(value)}", field=path)
    return value


def _req(obj: dict[str, Any], key: str, path: str) -> Any:
    if key not in obj or obj[key] is None:
        raise InvalidInput(f"{_join(path, key)} is missing", field=_join(path, key))
    return obj[key]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _req_str(obj: dict[str, Any], key: str, path: str) -> str:
    value = _req(obj, key, path)
    where = _join(path, key)
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be a string, got {_describe(value)}", field=where)
    if not value.strip():
        raise InvalidInput(f"{where} is empty", field=where)
    return value


def _opt_str(obj: dict[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        where = _join(path, key)
        raise InvalidInput(f"{where} must be a string, got {_describe(value)}", field=where)
    return value or None


def _opt_obj(obj: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = obj.get(key)
    return {} if value is None else _obj(value, _join(path, key))


def _req_id(obj: dict[str, Any], key: str, path: str) -> str:
    # Provider event ids are strings, except Postmark's which are JSON integers.
    value = _req(obj, key, path)
    where = _join(path, key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise InvalidInput(f"{where} must be a non-empty string or integer id", field=where)


def _address(obj: dict[str, Any], key: str, path: str) -> str:
    value = _req_str(obj, key, path).strip()
    where = _join(path, key)
    if "@" not in value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInput(f"{where} is not an e-mail address: {value!r}", field=where)
    return value


def _iso_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidInput(
            f"{where} must be an ISO 8601 string, got {_describe(value)}", field=where
        )
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidInput(f"{where} is not an ISO 8601 time: {value!r}", field=where) from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidInput(f"{where} has no time zone: {value!r}", field=where)
    return parsed.astimezone(UTC)


def _epoch_time(value: Any, where: str) -> datetime:
    if isinstance(value, str) and re.fullmatch(r"\d{1,12}(?:\.\d{1,9})?", value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where} must be a Unix time in seconds, got {value!r}", field=where)
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidInput(f"{where} is out of range: {value!r}", field=where) from exc


def _check_fresh(stamp: datetime, now: datetime, tolerance: timedelta, where: str) -> None:
    skew = now - stamp
    if skew > tolerance:
        raise InvalidSignature(
            f"{where} {stamp.isoformat()} is older than the allowed {tolerance} "
            "(stale or replayed request); nothing was recorded"
        )
    if -skew > tolerance:
        raise InvalidSignature(
            f"{where} {stamp.isoformat()} is more than {tolerance} in the future; "
            "check the clock; nothing was recorded"
        )


def _b64(value: str, where: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSignature(f"{where} is not valid base64") from exc


def _status_from_text(text: str | None) -> str | None:
    """The enhanced status code (RFC 3463) in a reply text, else its SMTP reply code."""
    if not text:
        return None
    found = _ENHANCED_STATUS.search(text)
    if found:
        return found.group(1)
    code = _REPLY_CODE.match(text)
    return code.group(1) if code else None


def _fallback_status(permanent: bool) -> str:
    # RFC 3463 X.0.0 means "other or undefined status" of that class: honest
    # when the provider gives no code.
    return "5.0.0" if permanent else "4.0.0"


def _strip_angle(address: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address


def _message_id(value: str | None) -> str | None:
    """A Message-ID header value in its ``<...>`` form, as the sender wrote it."""
    if not value or not value.strip():
        return None
    value = value.strip()
    return value if value.startswith("<") and value.endswith(">") else f"<{value}>"


def _diagnostic(*parts: str | None) -> str:
    seen: list[str] = []
    for part in parts:
        if part and part.strip() and part.strip() not in seen:
            seen.append(part.strip())
    return " ".join(seen)


# --------------------------------------------------------------------------- Amazon SES via SNS

_SNS_HOST = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-\d{1,2}\.amazonaws\.com")
_SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SNS_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def validate_sns_url(url: str, *, field: str = "SigningCertURL", pem: bool = True) -> str:
    """Return ``url`` if it is ``https://sns.<region>.amazonaws.com/...``; raise otherwise.

    The host must match exactly (no port, no user info, no suffix such as
    ``amazonaws.com.evil.example``), and with ``pem`` the path must end in
    ``.pem``. Raises ``InvalidSignature``: a URL that fails this check is never
    fetched.
    """
    if not isinstance(url, str) or not re.fullmatch(r"[\x21-\x7e]+", url):
        # Whitespace and control characters are silently dropped by URL parsers,
        # which would let the checked URL and the fetched URL differ.
        raise InvalidSignature(f"{field} must be a plain https URL without spaces")
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise InvalidSignature(f"{field} must use https: {url!r}")
    if not _SNS_HOST.fullmatch(parts.netloc):
        raise InvalidSignature(
            f"{field} host {parts.netloc!r} is not sns.<region>.amazonaws.com; refused"
        )
    if "\\" in url or "@" in parts.netloc:
        raise InvalidSignature(f"{field} is not a plain SNS URL: {url!r}")
    if pem and (not parts.path.endswith(".pem") or parts.query or parts.fragment):
        raise InvalidSignature(f"{field} must name a .pem certificate: {url!r}")
    return url


@runtime_checkable
class CertificateLoader(Protocol):
    """Fetches an SNS signing certificate (PEM bytes) from an already validated URL."""

    def load(self, url: str) -> bytes:
        """The PEM certificate at ``url``."""
        ...


class CachingCertificateLoader:
    """Remembers certificates by URL (SNS rotates certificates under new URLs)."""

    __slots__ = ("_cache", "_inner", "_lock", "_max_entries")

    def __init__(self, inner: CertificateLoader, *, max_entries: int = 32) -> None:
        self._inner = inner
        self._max_entries = max_entries
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load(self, url: str) -> bytes:
        """The cached certificate, or the inner loader's answer (then cached)."""
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None:
            return cached
        pem = self._inner.load(url)
        with self._lock:
            if len(self._cache) >= self._max_entries:
                self._cache.pop(next(iter(self._cache)))
            self._cache[url] = pem
        return pem


class UrllibCertificateLoader:
    """Fetches certificates over HTTPS with the standard library, verifying the server."""

    __slots__ = ("_context", "_max_bytes", "_timeout")

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        max_bytes: int = 64 * 1024,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._context = context or ssl.create_default_context()

    def load(self, url: str) -> bytes:
        """GET ``url`` (https only) and return at most ``max_bytes`` of PEM."""
        if urlsplit(url).scheme != "https":
            raise InvalidSignature(f"certificate URL must use https: {url!r}")
        request = urllib.request.Request(url, method="GET")  # noqa: S310 - https checked above
        try:
            with urllib.request.urlopen(  # noqa: S310 - https checked above
                request, timeout=self._timeout, context=self._context
            ) as response:
                data: bytes = response.read(self._max_bytes + 1)
        except OSError as exc:
            raise InvalidSignature(
                f"could not fetch the signing certificate {url!r}: {exc}"
            ) from exc
        if len(data) > self._max_bytes:
            raise InvalidSignature(f"signing certificate at {url!r} is larger than expected")
        return data


@attrs.frozen
class SnsMessage:
    """A verified SNS message: its type, topic, time and (for confirmations) URL and token."""

    type: str
    message_id: str
    topic_arn: str
    timestamp: datetime
    message: str
    subject: str | None = None
    subscribe_url: str | None = None
    token: str | None = None


@attrs.frozen
class SesWebhookResult:
    """What one SNS request carried: the verified message and its reports.

    ``subscribe_url`` is set only for a ``SubscriptionConfirmation``: the host
    confirms the subscription by fetching it (this adapter does no such I/O).
    """

    message: SnsMessage
    reports: tuple[BounceReport, ...]

    @property
    def subscribe_url(self) -> str | None:
        """The URL to GET to confirm a new subscription, or None."""
        if self.message.type == "SubscriptionConfirmation":
            return self.message.subscribe_url
        return None


class SesWebhook:
    """Amazon SES bounce, complaint and delivery notifications delivered by SNS over HTTPS.

    ``topic_arns`` lists the SNS topics you subscribed: a valid SNS signature
    proves only that *some* topic sent the message, and anyone can create a
    topic and subscribe your endpoint, so other topics are refused.
    ``tolerance`` bounds the age of the SNS ``Timestamp``; SNS re-sends the same
    signed message when retrying, for up to an hour under its longest
    delivery policy, hence the one-hour default.
    """

    __slots__ = ("_certificates", "_tolerance", "_topics")

    source = "ses"

    def __init__(
        self,
        certificates: CertificateLoader,
        *,
        topic_arns: Collection[str],
        tolerance: timedelta = timedelta(hours=1),
    ) -> None:
        if isinstance(topic_arns, str) or not topic_arns:
            raise InvalidInput(
                "topic_arns must list at least one SNS topic ARN", field="topic_arns"
            )
        self._certificates = certificates
        self._topics = frozenset(topic_arns)
        self._tolerance = tolerance

    def normalise(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> list[BounceReport]:
        """The reports of one SNS request (none for subscription messages)."""
        return list(self.handle(body, headers, now).reports)

    def handle(self, body: bytes, headers: Mapping[str, str], now: datetime) -> SesWebhookResult:
        """Verify one SNS request and return the message with its reports."""
        message = self.verify(body, headers, now)
        if message.type != "Notification":
            return SesWebhookResult(message=message, reports=())
        return SesWebhookResult(message=message, reports=tuple(_ses_reports(message.message)))

    def verify(self, body: bytes, headers: Mapping[str, str], now: datetime) -> SnsMessage:
        """Check the SNS signature, topic and age; return the verified message."""
        now = _require_now(now)
        folded = _lower_headers(headers)
        doc = _obj(_load_json(_require_body(body), "body"), "body")
        kind = _req_str(doc, "Type", "")
        if kind not in _SNS_TYPES:
            raise InvalidInput(f"Type {kind!r} is not an SNS message type", field="Type")
        declared = folded.get("x-amz-sns-message-type")
        if declared is not None and declared != kind:
            raise InvalidInput(
                f"x-amz-sns-message-type header {declared!r} does not match Type {kind!r}",
                field="x-amz-sns-message-type",
            )
        signed: list[tuple[str, str]] = []
        for key in _SNS_SIGNED_FIELDS[kind]:
            if key == "Subject" and doc.get("Subject") is None:
                continue
            value = _req(doc, key, "")
            if not isinstance(value, str):
                raise InvalidInput(f"{key} must be a string, got {_describe(value)}", field=key)
            signed.append((key, value))
        fields = dict(signed)
        for key in ("SignatureVersion", "Signature", "SigningCertURL"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise InvalidSignature(f"the SNS message has no {key}; nothing was recorded")
        version: str = doc["SignatureVersion"]
        if version not in _SNS_HASHES:
            raise InvalidSignature(f"SignatureVersion {version!r} is not supported (1 or 2)")
        topic = fields["TopicArn"]
        if topic not in self._topics:
            raise InvalidSignature(f"TopicArn {topic!r} is not one of the configured topics")
        stamp = _iso_time(fields["Timestamp"], "Timestamp")
        _check_fresh(stamp, now, self._tolerance, "Timestamp")
        signature = _b64(doc["Signature"], "Signature")
        url = validate_sns_url(doc["SigningCertURL"])
        public_key = self._public_key(url, now)
        canonical = "".join(f"{name}\n{value}\n" for name, value in signed).encode("utf-8")
        try:
            public_key.verify(signature, canonical, padding.PKCS1v15(), _SNS_HASHES[version]())
        except _CryptoInvalidSignature as exc:
            raise InvalidSignature(
                "the SNS message signature does not match its content; nothing was recorded"
            ) from exc
        subscribe_url = fields.get("SubscribeURL")
        if subscribe_url is not None:
            validate_sns_url(subscribe_url, field="SubscribeURL", pem=False)
        return SnsMessage(
            type=kind,
            message_id=fields["MessageId"],
            topic_arn=topic,
            timestamp=stamp,
            message=fields["Message"],
            subject=fields.get("Subject"),
            subscribe_url=subscribe_url,
            token=fields.get("Token"),
        )

    def _public_key(self, url: str, now: datetime) -> rsa.RSAPublicKey:
        try:
            pem = self._certificates.load(url)
        except BroadcastError:
            raise
        except Exception as exc:
            # A host's loader may fail in any way (network, HTTP status): it is
            # still "cannot verify", never a crash of the webhook endpoint.
            raise InvalidSignature(
                f"could not load the signing certificate {url!r}: {exc}"
            ) from exc
        try:
            cert = x509.load_pem_x509_certificate(pem)
            key = cert.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InvalidSignature(
                f"the signing certificate at {url!r} is not a PEM certificate"
            ) from exc
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise InvalidSignature(f"the signing certificate at {url!r} is not valid now")
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
            raise InvalidSignature(f"the signing certificate at {url!r} has no RSA-2048+ key")
        return key


def _ses_headers(mail: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    headers = mail.get("headers")
    if headers is None:
        return found
    for i, item in enumerate(_list(headers, "Message.mail.headers")):
        entry = _obj(item, f"Message.mail.headers[{i}]")
        name = _req_str(entry, "name", f"Message.mail.headers[{i}]")
        value = _opt_str(entry, "value", f"Message.mail.headers[{i}]")
        if value is not None:
            found.setdefault(name.lower(), value)
    return found


def _ses_reports(raw_message: str) -> list[BounceReport]:
    doc = _obj(_load_json(raw_message, "Message"), "Message")
    # SNS notifications say notificationType; configuration-set event publishing
    # says eventType. Both carry the same bodies.
    kind = doc.get("notificationType", doc.get("eventType"))
    if not isinstance(kind, str) or not kind:
        raise InvalidInput(
            "Message.notificationType is missing or not a string",
            field="Message.notificationType",
        )
    if kind not in ("Bounce", "Complaint", "Delivery", "DeliveryDelay"):
        # AmazonSnsSubscriptionSucceeded, Send, Reject, Open, Click, Rendering
        # Failure, Subscription: not outcomes of a hand-over this library tracks.
        return []
    mail = _obj(_req(doc, "mail", "Message"), "Message.mail")
    ses_id = _req_str(mail, "messageId", "Message.mail")
    headers = _ses_headers(mail)
    common = _opt_obj(mail, "commonHeaders", "Message.mail")
    message_id = _message_id(
        headers.get("message-id") or _opt_str(common, "messageId", "Message.mail.commonHeaders")
    )
    verp = verp_token_of(_opt_str(mail, "source", "Message.mail")) or verp_token_of(
        headers.get("return-path")
    )

    def report(**kwargs: Any) -> BounceReport:
        return BounceReport(source="ses", verp_token=verp, message_id=message_id, **kwargs)

    if kind == "Bounce":
        path = "Message.bounce"
        bounce = _obj(_req(doc, "bounce", "Message"), path)
        bounce_type = _req_str(bounce, "bounceType", path)
        if bounce_type not in ("Permanent", "Transient", "Undetermined"):
            raise InvalidInput(
                f"{path}.bounceType {bounce_type!r} is not Permanent, Transient or Undetermined",
                field=f"{path}.bounceType",
            )
        sub_type = _opt_str(bounce, "bounceSubType", path)
        permanent = bounce_type == "Permanent"
        feedback_id = _req_str(bounce, "feedbackId", path)
        at = _iso_time(_req(bounce, "timestamp", path), f"{path}.timestamp")
        remote = _opt_str(bounce, "remoteMtaIp", path)
        recipients = _list(_req(bounce, "bouncedRecipients", path), f"{path}.bouncedRecipients")
        if not recipients:
            raise InvalidInput(
                f"{path}.bouncedRecipients is empty", field=f"{path}.bouncedRecipients"
            )
        out = []
        for i, item in enumerate(recipients):
            where = f"{path}.bouncedRecipients[{i}]"
            rec = _obj(item, where)
            address = _address(rec, "emailAddress", where)
            diagnostic = _opt_str(rec, "diagnosticCode", where)
            action = (_opt_str(rec, "action", where) or "failed").lower()
            out.append(
                report(
                    recipient=address,
                    status=_opt_str(rec, "status", where)
                    or _status_from_text(diagnostic)
                    or _fallback_status(permanent),
                    diagnostic=diagnostic or f"SES {bounce_type} bounce ({sub_type or 'General'})",
                    permanent=permanent,
                    reported_at=at,
                    report_id=f"ses:{feedback_id}:{address}",
                    action=action if action in _FAILURE_ACTIONS else "failed",
                    remote_mta=remote,
                )
            )
        return out
    if kind == "Complaint":
        path = "Message.complaint"
        complaint = _obj(_req(doc, "complaint", "Message"), path)
        feedback_id = _req_str(complaint, "feedbackId", path)
        at = _iso_time(_req(complaint, "timestamp", path), f"{path}.timestamp")
        feedback_type = _opt_str(complaint, "complaintFeedbackType", path)
        recipients = _list(
            _req(complaint, "complainedRecipients", path), f"{path}.complainedRecipients"
        )
        if not recipients:
            raise InvalidInput(
                f"{path}.complainedRecipients is empty", field=f"{path}.complainedRecipients"
            )
        out = []
        for i, item in enumerate(recipients):
            where = f"{path}.complainedRecipients[{i}]"
            address = _address(_obj(item, where), "emailAddress", where)
            out.append(
                report(
                    recipient=address,
                    status="",
                    diagnostic=f"complaint reported through SES ({feedback_type or 'no type'})",
                    permanent=False,
                    reported_at=at,
                    report_id=f"ses:{feedback_id}:{address}",
                    action="complaint",
                    feedback_type=feedback_type,
                )
            )
        return out
    if kind == "Delivery":
        path = "Message.delivery"
        delivery = _obj(_req(doc, "delivery", "Message"), path)
        at = _iso_time(_req(delivery, "timestamp", path), f"{path}.timestamp")
        response = _opt_str(delivery, "smtpResponse", path)
        remote = _opt_str(delivery, "remoteMtaIp", path)
        out = []
        for i, item in enumerate(_list(_req(delivery, "recipients", path), f"{path}.recipients")):
            address = _address({f"recipients[{i}]": item}, f"recipients[{i}]", path)
            out.append(
                report(
                    recipient=address,
                    status=_status_from_text(response) or "2.0.0",
                    diagnostic=response or "delivered",
                    permanent=False,
                    reported_at=at,
                    report_id=f"ses:delivery:{ses_id}:{address}",
                    action="delivered",
                    remote_mta=remote,
                )
            )
        return out
    # The remaining kind is DeliveryDelay (configuration-set event publishing).
    path = "Message.deliveryDelay"
    delay = _obj(_req(doc, "deliveryDelay", "Message"), path)
    at = _iso_time(_req(delay, "timestamp", path), f"{path}.timestamp")
    delay_type = _opt_str(delay, "delayType", path)
    out = []
    recipients = _list(_req(delay, "delayedRecipients", path), f"{path}.delayedRecipients")
    for i, item in enumerate(recipients):
        where = f"{path}.delayedRecipients[{i}]"
        rec = _obj(item, where)
        address = _address(rec, "emailAddress", where)
        diagnostic = _opt_str(rec, "diagnosticCode", where)
        out.append(
            report(
                recipient=address,
                status=_opt_str(rec, "status", where) or _status_from_text(diagnostic) or "4.0.0",
                diagnostic=diagnostic or f"SES delivery delay ({delay_type or 'unspecified'})",
                permanent=False,
                reported_at=at,
                report_id=f"ses:delay:{ses_id}:{address}:{at.isoformat()}",
                action="delayed",
            )
        )
    return out


# --------------------------------------------------------------------------- SendGrid

_SENDGRID_SIGNATURE = "x-twilio-email-event-webhook-signature"
_SENDGRID_TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


class SendGridWebhook:
    """SendGrid's signed Event Webhook (ECDSA P-256 with SHA-256 over timestamp + body).

    ``public_key`` is the verification key as SendGrid shows it (base64 of the
    DER SubjectPublicKeyInfo); a PEM block is accepted too.
    """

    __slots__ = ("_key", "_tolerance")

    source = "sendgrid"

    def __init__(
        self, public_key: str | bytes, *, tolerance: timedelta = timedelta(minutes=5)
    ) -> None:
        self._key = _load_ec_key(public_key)
        self._tolerance = tolerance

    def normalise(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> list[BounceReport]:
        """Verify the batch and return the reports of its outcome events."""
        now = _require_now(now)
        body = _require_body(body)
        folded = _lower_headers(headers)
        signature_b64 = folded.get(_SENDGRID_SIGNATURE)
        stamp_text = folded.get(_SENDGRID_TIMESTAMP)
        if not signature_b64:
            raise InvalidSignature(
                "X-Twilio-Email-Event-Webhook-Signature header is missing; nothing was recorded"
            )
        if not stamp_text:
            raise InvalidSignature(
                "X-Twilio-Email-Event-Webhook-Timestamp header is missing; nothing was recorded"
            )
        if not re.fullmatch(r"\d{1,12}", stamp_text):
            raise InvalidSignature("X-Twilio-Email-Event-Webhook-Timestamp is not a Unix time")
        signature = _b64(signature_b64, "X-Twilio-Email-Event-Webhook-Signature")
        try:
            self._key.verify(
                signature, stamp_text.encode("ascii") + body, ec.ECDSA(hashes.SHA256())
            )
        except _CryptoInvalidSignature as exc:
            raise InvalidSignature(
                "the SendGrid signature does not match the body; nothing was recorded"
            ) from exc
        _check_fresh(
            datetime.fromtimestamp(int(stamp_text), tz=UTC),
            now,
            self._tolerance,
            "X-Twilio-Email-Event-Webhook-Timestamp",
        )
        events = _list(_load_json(body, "body"), "body")
        out: list[BounceReport] = []
        for i, item in enumerate(events):
            out.extend(_sendgrid_event(_obj(item, f"body[{i}]"), f"body[{i}]"))
        return out


def _load_ec_key(public_key: str | bytes) -> ec.EllipticCurvePublicKey:
    if isinstance(public_key, str):
        public_key = public_key.encode("ascii", "replace")
    if not isinstance(public_key, bytes):
        raise InvalidInput("public_key must be a base64 or PEM string", field="public_key")
    try:
        if public_key.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(public_key)
        else:
            key = serialization.load_der_public_key(
                base64.b64decode(b"".join(public_key.split()), validate=True)
            )
    except (ValueError, TypeError, UnsupportedAlgorithm, binascii.Error) as exc:
        raise InvalidInput(
            "public_key is not SendGrid's verification key (base64 DER or PEM)",
            field="public_key",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidInput("public_key must be an ECDSA P-256 key", field="public_key")
    return key


def _sendgrid_event(event: dict[str, Any], path: str) -> list[BounceReport]:
    kind = _req_str(event, "event", path)
    if kind not in ("bounce", "dropped", "deferred", "delivered", "spamreport"):
        return []  # processed, open, click, unsubscribe, ...: not delivery outcomes
    recipient = _address(event, "email", path)
    at = _epoch_time(_req(event, "timestamp", path), f"{path}.timestamp")
    event_id = _req_str(event, "sg_event_id", path)
    message_id = _message_id(_opt_str(event, "smtp-id", path))
    status = _opt_str(event, "status", path)
    reason = _opt_str(event, "reason", path)
    response = _opt_str(event, "response", path)
    common: dict[str, Any] = {
        "recipient": recipient,
        "reported_at": at,
        "report_id": f"sendgrid:{event_id}",
        "message_id": message_id,
        "source": "sendgrid",
    }
    if kind in ("bounce", "dropped"):
        bounce_type = _opt_str(event, "type", path) or kind
        # "blocked" is a refusal of this message (IP or content), not of the
        # address; SendGrid does not retry it, so it is an error, but not permanent.
        permanent = bounce_type != "blocked"
        return [
            BounceReport(
                status=status or _status_from_text(reason) or _fallback_status(permanent),
                diagnostic=reason or f"SendGrid {bounce_type}",
                permanent=permanent,
                action="failed",
                **common,
            )
        ]
    if kind == "deferred":
        return [
            BounceReport(
                status=status or _status_from_text(response) or "4.0.0",
                diagnostic=response or reason or "deferred by the receiving server",
                permanent=False,
                action="delayed",
                **common,
            )
        ]
    if kind == "delivered":
        return [
            BounceReport(
                status=status or _status_from_text(response) or "2.0.0",
                diagnostic=response or "delivered",
                permanent=False,
                action="delivered",
                **common,
            )
        ]
    return [
        BounceReport(
            status="",
            diagnostic="spam report through SendGrid",
            permanent=False,
            action="complaint",
            feedback_type="abuse",
            **common,
        )
    ]


# --------------------------------------------------------------------------- Mailgun


class InMemorySeenTokens:
    """A process-local, thread-safe SeenTokens bounded to ``max_tokens`` entries.

    For one process only: several workers behind one webhook URL share a
    ``SqlSeenTokens`` (``broadcast_adapters.storage.seen_tokens``) instead.
    """

    __slots__ = ("_lock", "_max_tokens", "_tokens")

    def __init__(self, *, max_tokens: int = 100_000) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidInput("max_tokens must be a positive int", field="max_tokens")
        self._tokens: dict[str, tuple[str, datetime]] = {}
        self._max_tokens = max_tokens
        self._lock = threading.Lock()

    def claim(self, token: str, digest: str, *, expires_at: datetime, now: datetime) -> bool:
        """Remember ``token`` with ``digest``; False if it is live with another digest."""
        with self._lock:
            seen = self._tokens.get(token)
            if seen is not None and seen[1] > now:
                # Not a secret (a digest of the request), so plain equality.
                return seen[0] == digest
            if len(self._tokens) >= self._max_tokens:
                self._prune(now)
            self._tokens[token] = (digest, expires_at)
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)

    def _prune(self, now: datetime) -> None:
        for token in [t for t, (_, until) in self._tokens.items() if until <= now]:
            del self._tokens[token]
        # Still full of live tokens: forget the ones expiring first. Their
        # timestamps leave the tolerance soonest, so the replay window that
        # opens is the smallest possible.
        excess = len(self._tokens) - self._max_tokens + 1
        if excess > 0:
            for token, _ in sorted(self._tokens.items(), key=lambda kv: kv[1][1])[:excess]:
                del self._tokens[token]


def _event_digest(event: dict[str, Any]) -> str:
    # Canonical JSON, so a provider retry that re-serialises the same event
    # (other key order or spacing) has the same digest.
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


class MailgunWebhook:
    """Mailgun's JSON webhooks: HMAC-SHA256 over timestamp + token, one-time tokens.

    Mailgun's signature does not cover ``event-data``: what makes a captured
    request useless is the timestamp tolerance plus binding each token to the
    event it came with (``SeenTokens.claim`` with a digest of ``event-data``).
    The same token with another event is refused as a replay; the same request
    again (Mailgun retrying one the host failed to record, for whatever
    reason, even a crash) is accepted, and recording it again is idempotent
    (``report_id``), so no bounce is lost and none is counted twice. The
    claim is made only when the whole request is valid.
    """

    __slots__ = ("_key", "_seen", "_tolerance")

    source = "mailgun"

    def __init__(
        self,
        signing_key: str | bytes,
        *,
        seen_tokens: SeenTokens | None = None,
        tolerance: timedelta = timedelta(minutes=5),
    ) -> None:
        key = signing_key.encode("utf-8") if isinstance(signing_key, str) else signing_key
        if not isinstance(key, bytes) or not key.strip():
            raise InvalidInput(
                "signing_key must be the webhook signing key shown by Mailgun, not empty",
                field="signing_key",
            )
        if seen_tokens is not None and not isinstance(seen_tokens, SeenTokens):
            raise InvalidInput(
                "seen_tokens must implement broadcast_domain.ports.SeenTokens (claim)",
                field="seen_tokens",
            )
        self._key = key
        self._seen: SeenTokens = seen_tokens if seen_tokens is not None else InMemorySeenTokens()
        self._tolerance = tolerance

    def normalise(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> list[BounceReport]:
        """Verify the request, refuse a replayed token, return its report (if an outcome)."""
        now = _require_now(now)
        # Mailgun signs inside the body; the headers are only checked so that
        # every normaliser rejects the same bad arguments.
        _lower_headers(headers)
        doc = _obj(_load_json(_require_body(body), "body"), "body")
        sig = doc.get("signature")
        if not isinstance(sig, dict):
            raise InvalidSignature("the Mailgun signature object is missing; nothing was recorded")
        parts: dict[str, str] = {}
        for key in ("timestamp", "token", "signature"):
            value = sig.get(key)
            if not isinstance(value, str) or not value:
                raise InvalidSignature(f"signature.{key} is missing; nothing was recorded")
            parts[key] = value
        if not re.fullmatch(r"\d{1,12}", parts["timestamp"]):
            raise InvalidSignature("signature.timestamp is not a Unix time")
        expected = hmac.new(
            self._key, (parts["timestamp"] + parts["token"]).encode("utf-8"), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected.encode("ascii"), parts["signature"].lower().encode()):
            raise InvalidSignature(
                "the Mailgun signature does not match; check the webhook signing key"
            )
        stamp = datetime.fromtimestamp(int(parts["timestamp"]), tz=UTC)
        _check_fresh(stamp, now, self._tolerance, "signature.timestamp")
        event = _obj(_req(doc, "event-data", ""), "event-data")
        reports = _mailgun_event(event)
        # Expires with the timestamp's tolerance: after that the freshness check
        # refuses the request anyway.
        if not self._seen.claim(
            parts["token"], _event_digest(event), expires_at=stamp + self._tolerance, now=now
        ):
            raise InvalidSignature(
                "signature.token was already used with another event (replayed or altered "
                "request); nothing was recorded"
            )
        return reports


def _mailgun_event(event: dict[str, Any]) -> list[BounceReport]:
    path = "event-data"
    kind = _req_str(event, "event", path)
    if kind not in ("failed", "delivered", "complained"):
        return []  # accepted, opened, clicked, unsubscribed, stored, ...
    recipient = _address(event, "recipient", path)
    at = _epoch_time(_req(event, "timestamp", path), f"{path}.timestamp")
    event_id = _req_str(event, "id", path)
    message = _opt_obj(event, "message", path)
    headers = _opt_obj(message, "headers", f"{path}.message")
    message_id = _message_id(_opt_str(headers, "message-id", f"{path}.message.headers"))
    envelope = _opt_obj(event, "envelope", path)
    verp = verp_token_of(_opt_str(envelope, "sender", f"{path}.envelope"))
    common: dict[str, Any] = {
        "recipient": recipient,
        "reported_at": at,
        "report_id": f"mailgun:{event_id}",
        "message_id": message_id,
        "verp_token": verp,
        "source": "mailgun",
    }
    if kind == "complained":
        return [
            BounceReport(
                status="",
                diagnostic="complaint reported through Mailgun",
                permanent=False,
                action="complaint",
                feedback_type="abuse",
                **common,
            )
        ]
    ds_path = f"{path}.delivery-status"
    ds = _opt_obj(event, "delivery-status", path)
    code = ds.get("code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int | str)):
        raise InvalidInput(
            f"{ds_path}.code must be a number, got {_describe(code)}", field=f"{ds_path}.code"
        )
    code_text = str(code) if code not in (None, "", 0) else None
    text = _opt_str(ds, "message", ds_path)
    description = _opt_str(ds, "description", ds_path)
    enhanced = _opt_str(ds, "enhanced-code", ds_path)
    remote = _opt_str(ds, "mx-host", ds_path)
    if kind == "delivered":
        return [
            BounceReport(
                status=enhanced or _status_from_text(text) or code_text or "2.0.0",
                diagnostic=_diagnostic(code_text, text, description) or "delivered",
                permanent=False,
                action="delivered",
                remote_mta=remote,
                **common,
            )
        ]
    severity = _req_str(event, "severity", path)
    if severity not in ("permanent", "temporary"):
        raise InvalidInput(
            f"{path}.severity {severity!r} is not permanent or temporary", field=f"{path}.severity"
        )
    permanent = severity == "permanent"
    reason = _opt_str(event, "reason", path)
    # Mailgun keeps retrying after a temporary failure and emits a permanent
    # "failed" when it gives up, so a temporary one is a delay, not an error.
    return [
        BounceReport(
            status=enhanced
            or _status_from_text(text)
            or _status_from_text(description)
            or code_text
            or _fallback_status(permanent),
            diagnostic=_diagnostic(code_text, text, description)
            or f"Mailgun {severity} failure ({reason or 'no reason given'})",
            permanent=permanent,
            action="failed" if permanent else "delayed",
            remote_mta=remote,
            **common,
        )
    ]


# --------------------------------------------------------------------------- Postmark


def _credential(field: str) -> Any:
    def check(_instance: object, _attribute: object, value: object) -> None:
        # An empty secret would let anyone in: "Basic Og==" is ":" (empty
        # user and password), an empty header value is easy to send.
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(
                f"{field} must be a non-empty string (the credential set on the provider's "
                "webhook); an empty one would let anyone in",
                field=field,
            )
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise InvalidInput(f"{field} must not hold control characters", field=field)

    return check


def _no_colon(_instance: object, _attribute: object, value: str) -> None:
    if ":" in value:
        # Basic auth joins user and password with the first colon, so a user
        # name with one could never be matched.
        raise InvalidInput("BasicAuth username must not contain ':'", field="username")


_HTTP_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header_name(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not _HTTP_TOKEN.fullmatch(value):
        raise InvalidInput(
            f"HeaderSecret header must be an HTTP header name, got {value!r}", field="header"
        )


@attrs.frozen
class BasicAuth:
    """Postmark authenticates with HTTP basic auth (credentials in the webhook URL).

    Both parts must be non-empty (``InvalidInput`` otherwise).
    """

    username: str = attrs.field(validator=[_credential("username"), _no_colon])
    password: str = attrs.field(repr=False, validator=_credential("password"))

    def check(self, headers: dict[str, str]) -> None:
        """Raise InvalidSignature unless the Authorization header carries these credentials."""
        value = headers.get("authorization", "")
        scheme, _, encoded = value.strip().partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise InvalidSignature("the Authorization header (basic auth) is missing")
        decoded = _b64(encoded, "the Authorization header")
        user, colon, password = decoded.partition(b":")
        # Both compared every time (&, not and) so the timing shows nothing.
        ok = hmac.compare_digest(user, self.username.encode("utf-8")) & hmac.compare_digest(
            password, self.password.encode("utf-8")
        )
        if not (colon and ok):
            raise InvalidSignature("the basic auth credentials are wrong; nothing was recorded")


@attrs.frozen
class HeaderSecret:
    """Postmark authenticates with a custom header carrying a shared secret (non-empty)."""

    header: str = attrs.field(validator=_header_name)
    secret: str = attrs.field(repr=False, validator=_credential("secret"))

    def check(self, headers: dict[str, str]) -> None:
        """Raise InvalidSignature unless the header carries the secret."""
        value = headers.get(self.header.lower())
        if not value:
            raise InvalidSignature(f"the {self.header} header is missing; nothing was recorded")
        if not hmac.compare_digest(value.encode("utf-8"), self.secret.encode("utf-8")):
            raise InvalidSignature(f"the {self.header} header is wrong; nothing was recorded")


PostmarkAuth = BasicAuth | HeaderSecret

# Postmark bounce Type -> (action, permanent). Types not listed are treated as
# a non-permanent failure: they arrive in the bounce webhook, so the message
# did not get through, but nothing says the address is dead.
_POSTMARK_TYPES: dict[str, tuple[str, bool]] = {
    "HardBounce": ("failed", True),
    "BadEmailAddress": ("failed", True),
    "ManuallyDeactivated": ("failed", True),
    "SoftBounce": ("failed", False),
    "Blocked": ("failed", False),
    "DnsError": ("failed", False),
    "SpamNotification": ("failed", False),
    "VirusNotification": ("failed", False),
    "DMARCPolicy": ("failed", False),
    "SMTPApiError": ("failed", False),
    "TemplateRenderingFailed": ("failed", False),
    "Unknown": ("failed", False),
    "Transient": ("delayed", False),
    "AutoResponder": ("autoreply", False),
    "AddressChange": ("autoreply", False),
    "ChallengeVerification": ("autoreply", False),
    "Subscribe": ("autoreply", False),
    "Unsubscribe": ("autoreply", False),
    "SpamComplaint": ("complaint", False),
}


#: The ``Metadata`` key whose value is the delivery's signed VERP token. Postmark
#: rewrites the return path, so the token travels as message metadata: set it
#: when sending through Postmark (over SMTP, the header
#: ``X-PM-Metadata-verp: TOKEN``; over the API, ``"Metadata": {"verp": TOKEN}``),
#: where TOKEN is what follows the ``+`` in the message's envelope sender.
POSTMARK_VERP_METADATA = "verp"

#: How much of a bounce's ``Content`` (the full dump, when the webhook is set to
#: include it) is searched for the original Message-ID: the quoted headers of
#: the original come early in a bounce, and a bounded scan keeps a huge dump cheap.
POSTMARK_CONTENT_SCAN = 256 * 1024


def _original_message_id(content: str | None) -> str | None:
    """The first Message-ID in ``content`` after its own header block, in ``<...>`` form.

    ``content`` is the bounce as Postmark received it: its own headers (with
    the bounce's own Message-ID) come first, the original message's headers
    later (in the ``message/rfc822`` or ``text/rfc822-headers`` part). One pass
    over the lines, plain string operations: linear in the scanned size.
    """
    if not content:
        return None
    in_own_headers = True
    lines = content[:POSTMARK_CONTENT_SCAN].splitlines()
    for i, line in enumerate(lines):
        if in_own_headers:
            if not line.strip():
                in_own_headers = False
            continue
        if line[:11].lower() != "message-id:":
            continue
        value = line[11:]
        # A folded header continues on lines that start with white space.
        for follow in lines[i + 1 : i + 4]:
            if not follow[:1].isspace():
                break
            value += follow
        opened = value.find("<")
        closed = value.find(">", opened + 1)
        if opened >= 0 and closed > opened + 1:
            candidate = value[opened : closed + 1]
            if "@" in candidate and not any(ch.isspace() for ch in candidate):
                return candidate
    return None


class PostmarkWebhook:
    """Postmark's bounce, spam complaint and delivery webhooks.

    Postmark does not sign its webhooks: the request is authenticated by the
    ``auth`` chosen at construction (basic auth or a shared-secret header,
    compared in constant time; empty credentials are refused at construction).
    There is no timestamp to bound, so replays are absorbed by ``report_id``
    idempotency downstream.

    Correlation uses only what Postmark gives back of ours, never its own
    ``MessageID`` (a Postmark UUID, not our Message-ID header): the signed VERP
    token in ``Metadata[metadata_key]`` (see ``POSTMARK_VERP_METADATA``) and
    the original ``Message-ID`` found in the bounce's ``Content`` (when the
    webhook includes it). With neither, the report is ``unmatched``.
    """

    __slots__ = ("_auth", "_metadata_key")

    source = "postmark"

    def __init__(self, auth: PostmarkAuth, *, metadata_key: str = POSTMARK_VERP_METADATA) -> None:
        if not isinstance(auth, BasicAuth | HeaderSecret):
            raise InvalidInput("auth must be BasicAuth or HeaderSecret", field="auth")
        if not isinstance(metadata_key, str) or not metadata_key.strip():
            raise InvalidInput("metadata_key must be a non-empty string", field="metadata_key")
        self._auth = auth
        self._metadata_key = metadata_key

    def _verp(self, doc: dict[str, Any]) -> str | None:
        metadata = _opt_obj(doc, "Metadata", "")
        value = metadata.get(self._metadata_key)
        # Metadata is the sender's free text: only a plain string can be our token
        # (Verp.verify then decides whether it names a delivery).
        if not isinstance(value, str) or not value.strip() or len(value) > 128:
            return None
        return value.strip()

    def normalise(
        self, body: bytes, headers: Mapping[str, str], now: datetime
    ) -> list[BounceReport]:
        """Authenticate the request and return its report (if it is an outcome)."""
        _require_now(now)
        body = _require_body(body)
        self._auth.check(_lower_headers(headers))
        doc = _obj(_load_json(body, "body"), "body")
        record = _req_str(doc, "RecordType", "")
        if record == "Delivery":
            recipient = _address(doc, "Recipient", "")
            postmark_id = _req_str(doc, "MessageID", "")
            details = _opt_str(doc, "Details", "")
            return [
                BounceReport(
                    recipient=recipient,
                    status=_status_from_text(details) or "2.0.0",
                    diagnostic=details or "delivered",
                    permanent=False,
                    reported_at=_iso_time(_req(doc, "DeliveredAt", ""), "DeliveredAt"),
                    verp_token=self._verp(doc),
                    report_id=f"postmark:delivery:{postmark_id}:{recipient}",
                    action="delivered",
                    source="postmark",
                )
            ]
        if record not in ("Bounce", "SpamComplaint"):
            return []  # Open, Click, SubscriptionChange: not delivery outcomes
        recipient = _address(doc, "Email", "")
        event_id = _req_id(doc, "ID", "")
        at = _iso_time(_req(doc, "BouncedAt", ""), "BouncedAt")
        bounce_type = "SpamComplaint" if record == "SpamComplaint" else _req_str(doc, "Type", "")
        action, permanent = _POSTMARK_TYPES.get(bounce_type, ("failed", False))
        details = _opt_str(doc, "Details", "")
        description = _opt_str(doc, "Description", "")
        if action == "complaint":
            status = ""
        else:
            status = (
                _status_from_text(details)
                or _status_from_text(description)
                or ("4.0.0" if action == "delayed" else _fallback_status(permanent))
            )
        return [
            BounceReport(
                recipient=recipient,
                status=status,
                diagnostic=_diagnostic(details, description) or f"Postmark {bounce_type}",
                permanent=permanent,
                reported_at=at,
                verp_token=self._verp(doc),
                message_id=_original_message_id(_opt_str(doc, "Content", "")),
                report_id=f"postmark:{event_id}",
                action=action,
                source="postmark",
                feedback_type="abuse" if action == "complaint" else None,
            )
        ]
