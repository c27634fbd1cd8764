"""SmtpTransport against a real SMTP server (SmtpSink on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broadcast_adapters.smtp import SmtpTransport
from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import OutgoingMessage
from broadcast_domain.testing.contracts import outgoing
from broadcast_domain.testing.smtp_server import SmtpSink


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def batch(n: int, prefix: str = "m") -> list[OutgoingMessage]:
    return [outgoing(f"{prefix}{i}", f"user{i}@example.com") for i in range(n)]


def test_each_recipient_receives_exactly_its_message(sink: SmtpSink) -> None:
    """Every message arrives once, for its recipient, with its VERP sender and Message-ID."""
    messages = batch(40)
    with SmtpTransport("127.0.0.1", sink.port, connections=4, timeout=10) as transport:
        replies = transport.send(messages)
    assert all(r.accepted for r in replies)
    received = {m.recipient: m for m in sink.messages}
    assert len(sink.messages) == 40
    assert set(received) == {m.recipient for m in messages}
    for message in messages:
        got = received[message.recipient]
        assert got.envelope_from == message.envelope_from
        assert got.message_id == message.message_id
        assert got.data == message.data


def test_japanese_subject_and_dot_lines_arrive_intact(sink: SmtpSink) -> None:
    """The received message parses to the Japanese subject and body, dot lines included."""
    message = outgoing("jp", "taro@example.com", subject="【ご案内】年末年始の営業について")
    with SmtpTransport("127.0.0.1", sink.port, connections=1) as transport:
        [reply] = transport.send([message])
    assert reply.accepted
    [got] = sink.messages
    parsed = BytesParser(policy=policy.default).parsebytes(got.data)
    assert parsed["Subject"] == "【ご案内】年末年始の営業について"
    assert parsed["To"].addresses[0].display_name == "山田 太郎"
    body = parsed.get_body()
    assert body is not None
    assert "\n.\n..先頭のドット" in body.get_content().replace("\r\n", "\n")


def test_bare_line_feeds_are_sent_as_crlf(sink: SmtpSink) -> None:
    """A message with bare LF line ends is put on the wire with CRLF."""
    raw = b"Subject: lf\nMessage-ID: <lf@example.com>\n\nline one\n.hidden dot\nend"
    message = OutgoingMessage("lf", "b+lf@example.com", "lf@example.com", "<lf@example.com>", raw)
    with SmtpTransport("127.0.0.1", sink.port, connections=1) as transport:
        [reply] = transport.send([message])
    assert reply.accepted
    expected = (
        b"Subject: lf\r\nMessage-ID: <lf@example.com>\r\n\r\nline one\r\n.hidden dot\r\nend\r\n"
    )
    assert sink.messages[0].data == expected


def test_connections_are_used_in_parallel(sink: SmtpSink) -> None:
    """With four connections four messages are in flight at once."""
    messages = batch(4)
    sink.hold([m.recipient for m in messages], parties=4)
    with SmtpTransport("127.0.0.1", sink.port, connections=4, timeout=20) as transport:
        replies = transport.send(messages)
    assert all(r.accepted for r in replies)
    assert sink.max_concurrent_sessions == 4


def test_one_connection_carries_many_messages_across_sends(sink: SmtpSink) -> None:
    """A single-connection transport opens one session for several sends."""
    with SmtpTransport("127.0.0.1", sink.port, connections=1) as transport:
        first = transport.send(batch(5, "a"))
        second = transport.send(batch(5, "b"))
    assert all(r.accepted for r in [*first, *second])
    assert sink.sessions_opened == 1
    assert len(sink.messages) == 10


def test_rcpt_reply_wins_over_data_reply_and_data_rejection_is_reported(sink: SmtpSink) -> None:
    """A refused RCPT gives its reply; a refusal after DATA gives the DATA reply."""
    sink.reject("rcpt@example.com", "5.1.1 unknown user")
    sink.reject("data@example.com", "5.7.1 content refused", at="DATA")
    messages = [outgoing("r", "rcpt@example.com"), outgoing("d", "data@example.com")]
    with SmtpTransport("127.0.0.1", sink.port, connections=1) as transport:
        replies = transport.send([*messages, outgoing("ok", "ok@example.com")])
    assert [(r.code, r.text) for r in replies[:2]] == [
        (550, "5.1.1 unknown user"),
        (550, "5.7.1 content refused"),
    ]
    assert replies[2].accepted
    assert [m.recipient for m in sink.messages] == ["ok@example.com"]


def test_drop_at_rcpt_reconnects_for_the_next_message(sink: SmtpSink) -> None:
    """A connection dropped at RCPT gives code 0; the next message goes over a new one."""
    sink.drop("cut@example.com", at="RCPT")
    messages = [
        outgoing("a", "a@example.com"),
        outgoing("x", "cut@example.com"),
        outgoing("b", "b@example.com"),
    ]
    with SmtpTransport("127.0.0.1", sink.port, connections=1) as transport:
        replies = transport.send(messages)
    assert [r.code for r in replies] == [250, 0, 250]
    assert replies[1].text.startswith("connection dropped during RCPT TO")
    assert sink.sessions_opened == 2


def test_drop_during_data_reports_data_and_nothing_is_recorded(sink: SmtpSink) -> None:
    """A connection dropped after the content gives code 0 naming DATA; the sink kept nothing."""
    sink.drop("cut@example.com", at="DATA")
    with SmtpTransport("127.0.0.1", sink.port, connections=1) as transport:
        replies = transport.send([outgoing("x", "cut@example.com"), outgoing("b", "b@example.com")])
    assert replies[0].code == 0
    assert replies[0].text.startswith("connection dropped during DATA")
    assert replies[1].accepted
    assert [m.recipient for m in sink.messages] == ["b@example.com"]


def test_421_closes_the_session_and_the_next_message_opens_another(sink: SmtpSink) -> None:
    """A 421 reply is passed on (deferred) and a fresh session carries the rest."""
    sink.close_with_421("busy@example.com")
    messages = [
        outgoing("a", "a@example.com"),
        outgoing("x", "busy@example.com"),
        outgoing("b", "b@example.com"),
    ]
    with SmtpTransport("127.0.0.1", sink.port, connections=1) as transport:
        replies = transport.send(messages)
    assert [r.code for r in replies] == [250, 421, 250]
    assert replies[1].deferred
    assert "4.3.2" in replies[1].text
    assert sink.sessions_opened == 2


def test_silent_server_times_out_with_code_0(sink: SmtpSink) -> None:
    """A server silent for longer than the timeout gives code 0 "timed out"; later mail flows."""
    sink.stall("slow@example.com", 30)
    with SmtpTransport("127.0.0.1", sink.port, connections=1, timeout=0.3) as transport:
        replies = transport.send(
            [outgoing("s", "slow@example.com"), outgoing("b", "b@example.com")]
        )
    assert replies[0].code == 0
    assert replies[0].text == "timed out after 0.3 s waiting for the RCPT TO reply"
    assert replies[1].accepted


def test_idle_session_closed_by_the_server_is_reopened_without_losing_a_message(
    sink: SmtpSink,
) -> None:
    """When the server closed an idle session, the next send reconnects and delivers."""
    with SmtpTransport("127.0.0.1", sink.port, connections=1) as transport:
        assert transport.send([outgoing("a", "a@example.com")])[0].accepted
        sink.close_sessions()
        [reply] = transport.send([outgoing("b", "b@example.com")])
    assert reply.accepted
    assert sink.sessions_opened == 2
    assert [m.recipient for m in sink.messages] == ["a@example.com", "b@example.com"]


def test_starttls_not_offered_fails_every_message_clearly(sink: SmtpSink) -> None:
    """Asking for STARTTLS from a server without it sends nothing, each reply says why."""
    with SmtpTransport("127.0.0.1", sink.port, connections=2, starttls=True) as transport:
        replies = transport.send(batch(5))
    assert all(r.code == 0 for r in replies)
    assert all("does not offer it; not sending in plain text" in r.text for r in replies)
    assert sink.messages == []


def test_starttls_refused_fails_every_message_clearly() -> None:
    """A server that advertises STARTTLS but answers 454 gets nothing in plain text."""
    with (
        SmtpSink(refuse_starttls=True) as sink,
        SmtpTransport("127.0.0.1", sink.port, connections=2, starttls=True) as transport,
    ):
        replies = transport.send(batch(5))
    assert all(r.code == 0 for r in replies)
    assert all(r.text.startswith("STARTTLS refused by 127.0.0.1:") for r in replies)
    assert all("454" in r.text for r in replies)
    assert sink.messages == []


@pytest.fixture
def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def test_starttls_with_a_trusted_certificate_delivers(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """STARTTLS against a server whose certificate the context trusts delivers the mail."""
    server_ctx, client_ctx = tls_contexts
    with (
        SmtpSink(tls_context=server_ctx) as sink,
        SmtpTransport(
            "127.0.0.1", sink.port, connections=2, starttls=True, ssl_context=client_ctx
        ) as transport,
    ):
        replies = transport.send(batch(3))
    assert all(r.accepted for r in replies)
    assert len(sink.messages) == 3


def test_starttls_with_an_untrusted_certificate_sends_nothing(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """A certificate the default trust store does not know fails the handshake: code 0."""
    server_ctx, _ = tls_contexts
    with (
        SmtpSink(tls_context=server_ctx) as sink,
        SmtpTransport("127.0.0.1", sink.port, connections=1, starttls=True) as transport,
    ):
        replies = transport.send(batch(2))
    assert all(r.code == 0 and "TLS handshake" in r.text for r in replies)
    assert sink.messages == []


def test_auth_logs_in_when_a_username_is_given() -> None:
    """With the right credentials mail is accepted; with wrong ones nothing is sent."""
    with SmtpSink(credentials={"mailer": "s3cret"}) as sink:
        with SmtpTransport(
            "127.0.0.1", sink.port, connections=1, username="mailer", password="s3cret"
        ) as good:
            assert all(r.accepted for r in good.send(batch(2)))
        with SmtpTransport(
            "127.0.0.1", sink.port, connections=1, username="mailer", password="wrong"
        ) as bad:
            replies = bad.send(batch(2, "x"))
        assert all(r.code == 0 and "authentication as 'mailer' refused" in r.text for r in replies)
        assert len(sink.messages) == 2


def test_unreachable_server_gives_code_0_for_every_message() -> None:
    """Nothing listening: every message gets code 0 saying the connection failed."""
    with SmtpSink() as sink:
        port = sink.port
    with SmtpTransport("127.0.0.1", port, connections=3, timeout=2) as transport:
        replies = transport.send(batch(4))
    assert [r.key for r in replies] == ["m0", "m1", "m2", "m3"]
    assert all(
        r.code == 0 and r.text.startswith(f"could not connect to 127.0.0.1:{port}") for r in replies
    )


def test_message_with_a_line_break_in_the_recipient_is_not_sent(sink: SmtpSink) -> None:
    """A recipient with CR/LF gets code 0 "not sent" and the others still go."""
    bad = OutgoingMessage("bad", "b@example.com", "x@example.com\r\nRCPT TO:<y@z>", "<1@x>", b"x")
    with SmtpTransport("127.0.0.1", sink.port, connections=1) as transport:
        replies = transport.send([bad, outgoing("ok", "ok@example.com")])
    assert replies[0].code == 0
    assert replies[0].text.startswith("not sent: recipient")
    assert replies[1].accepted
    assert [m.recipient for m in sink.messages] == ["ok@example.com"]


def test_non_ascii_addresses_are_not_sent_and_do_not_raise(sink: SmtpSink) -> None:
    """A non-ASCII recipient or envelope sender gets code 0 "not sent"; the rest go."""
    jp = OutgoingMessage("jp", "b@example.com", "山田@example.com", "<1@x>", b"x")
    jp_from = OutgoingMessage("jf", "山田@example.com", "y@example.com", "<2@x>", b"x")
    with SmtpTransport("127.0.0.1", sink.port, connections=2) as transport:
        replies = transport.send([jp, jp_from, outgoing("ok", "ok@example.com")])
    assert [r.code for r in replies] == [0, 0, 250]
    assert "is not ASCII" in replies[0].text
    assert "envelope_from" in replies[1].text
    assert [m.recipient for m in sink.messages] == ["ok@example.com"]


def test_many_messages_over_pipelined_parallel_sessions() -> None:
    """Two hundred messages over four pipelined sessions all arrive exactly once."""
    with SmtpSink(pipelining=True, reject=["user7@example.com"]) as sink:
        with SmtpTransport("127.0.0.1", sink.port, connections=4) as transport:
            replies = transport.send(batch(200))
        assert [r.code for r in replies].count(550) == 1
        assert replies[7].code == 550
        recipients = sorted(m.recipient for m in sink.messages)
        assert recipients == sorted(f"user{i}@example.com" for i in range(200) if i != 7)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"connections": 0}, "connections"),
        ({"timeout": 0}, "timeout"),
        ({"password": "pw"}, "username"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, object], field: str) -> None:
    """Nonsense settings raise InvalidInput naming the setting."""
    with pytest.raises(InvalidInput) as info:
        SmtpTransport("127.0.0.1", 25, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
