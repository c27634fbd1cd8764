"""dispatch_due through the real SmtpTransport to a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.header import decode_header, make_header

from broadcast_adapters.smtp import SmtpTransport
from broadcast_domain import (
    Actor,
    AddressBookSource,
    BroadcastService,
    BroadcastStatus,
    Contact,
    DeliveryStatus,
    InboxRole,
)
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.smtp_server import SmtpSink

OPERATOR = Actor("op", inbox_roles={"support": InboxRole.OPERATOR})


def test_each_recipient_gets_one_message_with_its_own_verp_sender_and_message_id(
    svc: BroadcastService, clock: FakeClock
) -> None:
    """250 / 451-once / 550 / drop: outcomes, retries and what the server received are right."""
    contacts = [
        Contact(
            f"user{i}@example.jp", last_name="山田", first_name=f"太郎{i}", company="株式会社テスト"
        )
        for i in range(8)
    ]
    bid = svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="【重要】メンテナンスのお知らせ",
        text_body="本文です。\nよろしくお願いします。",
        html_body="<p>本文です。</p>",
        source=AddressBookSource("book-1"),
        recipients=contacts,
        scheduled_at=clock(),
        actor=OPERATOR,
    )
    with SmtpSink() as sink, SmtpTransport("127.0.0.1", sink.port, connections=2, timeout=5) as t:
        sink.reject("user1@example.jp", "5.1.1 no such user")
        sink.defer("user2@example.jp", times=1)
        sink.drop("user3@example.jp")
        first = svc.dispatch_due(t)
        assert (first.sent, first.succeeded, first.errors, first.retried) == (8, 5, 1, 2)
        assert svc.summary(bid).sending == 2
        sink.accept("user3@example.jp")
        clock.advance(minutes=6)
        second = svc.dispatch_due(t)
        assert (second.sent, second.succeeded) == (2, 2)
        received = sink.messages
    s = svc.summary(bid)
    assert (s.status, s.succeeded, s.errors, s.delivered) == (BroadcastStatus.SENT, 7, 1, 8)
    by_recipient: dict[str, list[bytes]] = {}
    for m in received:
        by_recipient.setdefault(m.recipient, []).append(m.data)
    # One accepted message per recipient that was accepted; none for the rejected one.
    assert sorted(by_recipient) == sorted(
        c.address for c in contacts if c.address != "user1@example.jp"
    )
    assert all(len(v) == 1 for v in by_recipient.values())
    senders = {m.envelope_from for m in received}
    assert len(senders) == len(received)
    assert all(s.startswith("bounces+") and s.endswith("@mail.example.com") for s in senders)
    ids = {m.message_id for m in received}
    assert len(ids) == len(received)
    for m in received:
        parsed = message_from_bytes(m.data, policy=policy.default)
        assert parsed["Subject"] == "【重要】メンテナンスのお知らせ"
        assert str(make_header(decode_header(parsed["To"]))).startswith("山田 太郎")
        assert parsed.get_content_type() == "multipart/alternative"
        text = parsed.get_body(preferencelist=("plain",))
        assert text is not None and "よろしくお願いします。" in text.get_content()
        assert b"\r\n" in m.data
    rejected = svc.recipients(bid, status=DeliveryStatus.ERROR).items
    assert [r.address for r in rejected] == ["user1@example.jp"]
    assert "no such user" in rejected[0].detail_message
