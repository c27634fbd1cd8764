"""SmtpSink, the test SMTP server: its rules and what it records, seen by a plain smtplib client."""

from __future__ import annotations

import smtplib

import pytest

from broadcast_domain.errors import InvalidInput
from broadcast_domain.testing.smtp_server import SmtpSink


def send(
    port: int, recipient: str, data: bytes = b"Message-ID: <x@y>\r\n\r\nhi\r\n"
) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("bounces+t@example.com")
        code, text = client.rcpt(recipient)
        if code != 250:
            return code, text
        return client.data(data)


def test_predicate_rejects_matching_addresses() -> None:
    """reject_if refuses every address the predicate holds for, and only those."""
    with SmtpSink(reject_if=lambda a: a.endswith("@blocked.example")) as sink:
        assert send(sink.port, "x@blocked.example")[0] == 550
        assert send(sink.port, "x@fine.example")[0] == 250
        assert [m.recipient for m in sink.messages] == ["x@fine.example"]


def test_defer_counts_down_then_accepts_and_attempts_are_counted() -> None:
    """defer(addr, 2) answers 451 twice then 250; attempts() counts every RCPT, any case."""
    with SmtpSink() as sink:
        sink.defer("Later@Example.com", 2)
        codes = [send(sink.port, "later@example.com")[0] for _ in range(3)]
        assert codes == [451, 451, 250]
        assert sink.attempts("LATER@example.com") == 3
        assert len(sink.received_for("later@example.com")) == 1


def test_records_envelope_sender_message_id_and_raw_bytes() -> None:
    """Each accepted message is recorded with its envelope sender, Message-ID and bytes."""
    with SmtpSink() as sink:
        send(sink.port, "a@example.com", b"Message-ID:  <m1@example.com>\r\n\r\nbody\r\n")
        [got] = sink.messages
        assert got.envelope_from == "bounces+t@example.com"
        assert got.message_id == "<m1@example.com>"
        assert got.data == b"Message-ID:  <m1@example.com>\r\n\r\nbody\r\n"
        sink.clear()
        assert sink.messages == []


def test_accept_forgets_a_rule() -> None:
    """accept(addr) lifts an earlier rejection."""
    with SmtpSink(reject=["a@example.com"]) as sink:
        assert send(sink.port, "a@example.com")[0] == 550
        sink.accept("a@example.com")
        assert send(sink.port, "a@example.com")[0] == 250


def test_bad_rule_arguments_are_rejected() -> None:
    """An unknown stage or a negative count raises InvalidInput."""
    sink = SmtpSink()
    with pytest.raises(InvalidInput):
        sink.drop("a@example.com", at="QUIT")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        sink.defer("a@example.com", -1)
    with pytest.raises(InvalidInput):
        sink.stall("a@example.com", -1.0)
