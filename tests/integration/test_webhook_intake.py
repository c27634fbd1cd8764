"""Provider webhooks end to end: Postmark bounces as Postmark sends them match the delivery
through what it gives back of ours; a Mailgun retry after a failed recording is accepted
and records once; empty credentials are refused; several recipients give several reports."""

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
from hypothesis import given

from broadcast_adapters.bounces.webhooks import (
    BasicAuth,
    HeaderSecret,
    MailgunWebhook,
    PostmarkWebhook,
    SendGridWebhook,
    _ses_reports,
)
from broadcast_domain import (
    Actor,
    AddressBookSource,
    BroadcastService,
    Contact,
    DeliveryStatus,
    InboxRole,
    InvalidInput,
    InvalidSignature,
)
from broadcast_domain.domain.events import Sent
from broadcast_domain.domain.verp import verp_token_of
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.fakes import FakeTransport

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
AUTH = BasicAuth("postmark", "s3cret-pass")
AUTH_HEADERS = {"Authorization": "Basic " + base64.b64encode(b"postmark:s3cret-pass").decode()}
MAILGUN_KEY = "key-intake-0123456789"


def postmark_bounce(**overrides: Any) -> dict[str, Any]:
    """Postmark's documented Bounce webhook example, with our recipient."""
    doc: dict[str, Any] = {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Test",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"a_key": "a_value", "b_key": "b_value"},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, "
        "mailbox not found).",
        "Details": "Test bounce details",
        "Email": "a@example.com",
        "From": "news@example.com",
        "BouncedAt": "2026-11-27T08:55:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Test subject",
    }
    doc.update(overrides)
    return doc


def bounce_dump(original_message_id: str) -> str:
    """A bounce as a receiving server writes it: its own headers, then the original's."""
    return (
        "Return-Path: <>\r\n"
        "Message-ID: <bounce-of-the-mta@mx.example.net>\r\n"
        "From: MAILER-DAEMON@mx.example.net\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n"
        "\r\n--b\r\nContent-Type: text/plain\r\n\r\nmailbox unknown\r\n"
        "--b\r\nContent-Type: message/rfc822\r\n\r\n"
        "From: news@example.com\r\nTo: a@example.com\r\n"
        f"Message-ID:\r\n {original_message_id}\r\nSubject: s\r\n\r\nbody\r\n--b--\r\n"
    )


@pytest.fixture
def sent() -> Iterator[tuple[BroadcastService, Any, str, str]]:
    """A service where a@example.com was handed over: (svc, bid, Message-ID, VERP token)."""
    svc = BroadcastService.open(
        "memory://",
        return_path="bounces@mail.example.com",
        signing_key=b"intake-signing-key-0123456789abc",
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
    fake = FakeTransport()
    svc.dispatch_due(fake)
    (message,) = fake.sent_to("a@example.com")
    token = verp_token_of(message.envelope_from)
    assert token is not None
    sent_event = next(e for e in svc.history(bid, "a@example.com") if isinstance(e, Sent))
    yield svc, bid, sent_event.message_id, token
    svc.close()


def status_of(svc: BroadcastService, bid: Any) -> DeliveryStatus:
    return svc.recipients(bid).items[0].status


def test_a_postmark_bounce_carrying_our_verp_token_in_metadata_is_applied(
    sent: tuple[BroadcastService, Any, str, str],
) -> None:
    """Metadata["verp"] (set when sending) correlates the documented payload to the delivery."""
    svc, bid, _mid, token = sent
    doc = postmark_bounce(Metadata={"a_key": "a_value", "verp": token})
    (report,) = PostmarkWebhook(AUTH).normalise(json.dumps(doc).encode(), AUTH_HEADERS, NOW)
    assert svc.record_bounce(report, received_at=NOW).kind == "applied"
    assert status_of(svc, bid) is DeliveryStatus.ERROR


def test_a_postmark_bounce_whose_content_quotes_our_message_id_is_applied(
    sent: tuple[BroadcastService, Any, str, str],
) -> None:
    """With the bounce content included, the original Message-ID (after the bounce's own
    headers, folded or not) correlates it."""
    svc, bid, mid, _token = sent
    doc = postmark_bounce(Content=bounce_dump(mid))
    (report,) = PostmarkWebhook(AUTH).normalise(json.dumps(doc).encode(), AUTH_HEADERS, NOW)
    assert report.message_id == mid
    assert svc.record_bounce(report, received_at=NOW).kind == "applied"
    assert status_of(svc, bid) is DeliveryStatus.ERROR


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the documented example as is: only Postmark's UUID
        {"MessageID": "PLACEHOLDER"},  # Postmark's MessageID set to our Message-ID text
        {"Metadata": {"verp": "not-a-token"}},
        {"Metadata": {"verp": 43}},
        {"Metadata": {"verp": "x" * 10_000}},
        {"Content": "Message-ID: PLACEHOLDER\r\n\r\nno original headers"},
    ],
)
def test_a_postmark_bounce_without_anything_of_ours_is_unmatched(
    sent: tuple[BroadcastService, Any, str, str], overrides: dict[str, Any]
) -> None:
    """Postmark's own id, our Message-ID in its own MessageID or bounce headers, a forged
    token or junk metadata never match: unmatched, the recipient stays SUCCEEDED."""
    svc, bid, mid, _token = sent
    doc = postmark_bounce(
        **{
            k: (v.replace("PLACEHOLDER", mid) if isinstance(v, str) else v)
            for k, v in overrides.items()
        }
    )
    (report,) = PostmarkWebhook(AUTH).normalise(json.dumps(doc).encode(), AUTH_HEADERS, NOW)
    assert svc.record_bounce(report, received_at=NOW).kind == "unmatched"
    assert status_of(svc, bid) is DeliveryStatus.SUCCEEDED


def mailgun_body(event: dict[str, Any], one_time: str = "tok-1") -> bytes:
    stamp = str(int(NOW.timestamp()))
    digest = hmac.new(MAILGUN_KEY.encode(), f"{stamp}{one_time}".encode(), hashlib.sha256)
    signature = {"timestamp": stamp, "token": one_time, "signature": digest.hexdigest()}
    return json.dumps({"signature": signature, "event-data": event}).encode()


def mailgun_failure(verp_address: str, recipient: str = "a@example.com") -> dict[str, Any]:
    return {
        "event": "failed",
        "id": "mg-1",
        "timestamp": NOW.timestamp(),
        "severity": "permanent",
        "reason": "bounce",
        "recipient": recipient,
        "envelope": {"sender": verp_address},
        "delivery-status": {"code": 550, "message": "5.1.1 unknown", "description": ""},
    }


def test_a_mailgun_retry_after_a_failed_recording_is_accepted_and_records_once(
    sent: tuple[BroadcastService, Any, str, str],
) -> None:
    """The host checks a request and fails before recording; Mailgun's retry of the same
    request is accepted and applied, a further retry is a duplicate, and the same token
    with another event is refused without recording."""
    svc, bid, _mid, token = sent
    hook = MailgunWebhook(MAILGUN_KEY)
    body = mailgun_body(mailgun_failure(f"bounces+{token}@mail.example.com"))
    hook.normalise(body, {}, NOW)  # ... and the host fails here: nothing recorded
    assert status_of(svc, bid) is DeliveryStatus.SUCCEEDED
    (report,) = hook.normalise(body, {}, NOW + timedelta(seconds=20))
    assert svc.record_bounce(report, received_at=NOW).kind == "applied"
    (again,) = hook.normalise(body, {}, NOW + timedelta(seconds=40))
    assert svc.record_bounce(again, received_at=NOW).kind == "duplicate"
    forged = mailgun_body(mailgun_failure("bounces+other@mail.example.com", "b@example.com"))
    with pytest.raises(InvalidSignature, match="replayed"):
        hook.normalise(forged, {}, NOW + timedelta(seconds=60))
    assert status_of(svc, bid) is DeliveryStatus.ERROR


@pytest.mark.parametrize(
    "build",
    [
        lambda: BasicAuth("", ""),
        lambda: BasicAuth("user", ""),
        lambda: BasicAuth("", "pass"),
        lambda: BasicAuth("  ", "pass"),
        lambda: BasicAuth("user", "\t"),
        lambda: BasicAuth("us:er", "pass"),
        lambda: BasicAuth("user", "pa\nss"),
        lambda: HeaderSecret("X-Webhook-Secret", ""),
        lambda: HeaderSecret("X-Webhook-Secret", "   "),
        lambda: HeaderSecret("", "secret"),
        lambda: HeaderSecret("X Webhook", "secret"),
        lambda: HeaderSecret("X-Webhook:", "secret"),
        lambda: MailgunWebhook(""),
        lambda: MailgunWebhook(b""),
        lambda: MailgunWebhook("   "),
        lambda: MailgunWebhook(MAILGUN_KEY, seen_tokens=object()),  # type: ignore[arg-type]
        lambda: SendGridWebhook(""),
        lambda: PostmarkWebhook(AUTH, metadata_key=""),
    ],
)
def test_empty_or_unusable_credentials_are_refused_at_construction(build: Any) -> None:
    """No webhook can be built that would let an empty credential in."""
    with pytest.raises(InvalidInput):
        build()


@given(
    st.lists(
        st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.example", fullmatch=True),
        min_size=1,
        max_size=6,
        unique=True,
    )
)
def test_a_notice_listing_several_recipients_gives_one_report_each(addresses: list[str]) -> None:
    """An SES notice naming N recipients yields N reports, each with its own address and
    its own report id, sharing the notice's correlation (the intake checks each)."""
    message = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [{"emailAddress": a, "status": "5.1.1"} for a in addresses],
            "timestamp": "2026-11-27T08:59:00.000Z",
            "feedbackId": "fb-1",
        },
        "mail": {"messageId": "ses-1", "source": "bounces+tok@mail.example.com"},
    }
    reports = _ses_reports(json.dumps(message))
    assert [r.recipient for r in reports] == addresses
    assert len({r.report_id for r in reports}) == len(addresses)
    assert {r.verp_token for r in reports} == {"tok"}


def test_a_mailgun_retry_reaching_another_worker_is_accepted_through_the_shared_store(
    sent: tuple[BroadcastService, Any, str, str], tmp_path: Any
) -> None:
    """Worker A checks a request and dies before recording; Mailgun's retry reaches worker
    B, which shares A's token store (SQL): accepted and applied once; an altered replay to
    either worker is refused."""
    from broadcast_adapters.storage.seen_tokens import SqlSeenTokens

    svc, bid, _mid, token = sent
    path = str(tmp_path / "tokens.db")
    store_a, store_b = SqlSeenTokens.sqlite(path), SqlSeenTokens.sqlite(path)
    try:
        body = mailgun_body(mailgun_failure(f"bounces+{token}@mail.example.com"))
        MailgunWebhook(MAILGUN_KEY, seen_tokens=store_a).normalise(body, {}, NOW)
        store_a.close()  # worker A is gone; nothing was recorded
        worker_b = MailgunWebhook(MAILGUN_KEY, seen_tokens=store_b)
        (report,) = worker_b.normalise(body, {}, NOW + timedelta(seconds=30))
        assert svc.record_bounce(report, received_at=NOW).kind == "applied"
        altered = mailgun_body(mailgun_failure(f"bounces+{token}@mail.example.com", "x@y.example"))
        with pytest.raises(InvalidSignature):
            worker_b.normalise(altered, {}, NOW + timedelta(seconds=31))
        assert status_of(svc, bid) is DeliveryStatus.ERROR
    finally:
        store_b.close()
