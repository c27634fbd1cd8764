"""Contract tests for port implementations: subclass, implement the factory, run.

``MailTransportContract`` checks what the dispatcher relies on from any
MailTransport: one reply per message in order, 2xx/4xx/5xx/0 passed through
with the server's text, a dropped connection not stopping later messages,
and nothing raised. A host subclasses it in a test module::

    class TestMyTransport(MailTransportContract):
        def make_transport(self, rules, stack):
            server = stack.enter_context(MyTestServer(rules))
            transport = MyTransport(server.address)
            stack.callback(transport.close)
            return transport

``rules`` says how the server behind the transport must answer each
recipient; ``stack`` is an ExitStack closed after the test, for servers and
transports to clean up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from types import MappingProxyType

import attrs
import pytest

from broadcast_domain.domain.messages import build_message, make_message_id
from broadcast_domain.domain.values import Contact
from broadcast_domain.ports import MailTransport, OutgoingMessage

__all__ = ["MailTransportContract", "ReplyRules", "outgoing"]


def _addresses(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _frozen(value: Mapping[str, int] | None) -> Mapping[str, int]:
    return MappingProxyType(dict(value or {}))


@attrs.frozen
class ReplyRules:
    """How the server behind a transport under test must answer, per recipient address.

    Addresses not named are accepted (250). ``reject``: 550 with
    ``reject_text`` at RCPT. ``defer``: 451 for the given number of attempts,
    then 250. ``drop``: the connection closes without a reply to the message.
    """

    reject: frozenset[str] = attrs.field(default=frozenset(), converter=_addresses)
    defer: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)
    drop: frozenset[str] = attrs.field(default=frozenset(), converter=_addresses)
    reject_text: str = "5.1.1 Recipient address rejected: User unknown"


def outgoing(key: str, recipient: str, *, subject: str = "お知らせ") -> OutgoingMessage:
    """A real one-recipient message with a VERP-like envelope sender, for transport tests."""
    message_id = make_message_id("mail.example.com", f"contract.{key}")
    envelope_from = f"bounces+{key}@mail.example.com"
    data = build_message(
        sender="news@example.com",
        sender_name="ニュース",
        recipient=Contact(recipient, last_name="山田", first_name="太郎"),
        subject=subject,
        text_body="本文です。\n.\n..先頭のドット\n",
        html_body=None,
        message_id=message_id,
        envelope_from=envelope_from,
        date=datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
    )
    return OutgoingMessage(
        key=key, envelope_from=envelope_from, recipient=recipient, message_id=message_id, data=data
    )


TransportFactory = Callable[[ReplyRules], MailTransport]


class MailTransportContract:
    """What every MailTransport must do; subclass and implement ``make_transport``."""

    def make_transport(self, rules: ReplyRules, stack: ExitStack) -> MailTransport:
        """A transport wired to a server answering per ``rules``; clean up via ``stack``."""
        raise NotImplementedError("subclasses return a transport wired to a rule-driven server")

    @pytest.fixture
    def transport_for(self) -> Iterator[TransportFactory]:
        """Builds transports for the test and cleans them up afterwards."""
        with ExitStack() as stack:
            yield lambda rules: self.make_transport(rules, stack)

    def test_transport_satisfies_the_protocol(self, transport_for: TransportFactory) -> None:
        """The transport is a MailTransport (send and close)."""
        assert isinstance(transport_for(ReplyRules()), MailTransport)

    def test_empty_batch_gives_no_replies(self, transport_for: TransportFactory) -> None:
        """Sending nothing returns an empty list."""
        assert transport_for(ReplyRules()).send([]) == []

    def test_accepted_message_gets_a_2xx_reply(self, transport_for: TransportFactory) -> None:
        """A recipient without a rule is accepted with a 2xx code."""
        [reply] = transport_for(ReplyRules()).send([outgoing("k1", "ok@example.com")])
        assert reply.key == "k1"
        assert reply.accepted
        assert 200 <= reply.code < 300

    def test_rejected_recipient_gets_550_with_the_server_text(
        self, transport_for: TransportFactory
    ) -> None:
        """A refused recipient gets code 550 and the server's text."""
        rules = ReplyRules(reject={"gone@example.com"}, reject_text="5.1.1 No such mailbox here")
        [reply] = transport_for(rules).send([outgoing("k1", "gone@example.com")])
        assert reply.code == 550
        assert reply.rejected
        assert "5.1.1 No such mailbox here" in reply.text

    def test_deferred_recipient_gets_4xx_until_accepted(
        self, transport_for: TransportFactory
    ) -> None:
        """A recipient deferred twice gets 451, 451, then 2xx on later sends."""
        transport = transport_for(ReplyRules(defer={"later@example.com": 2}))
        codes = [transport.send([outgoing(f"k{i}", "later@example.com")])[0].code for i in range(3)]
        assert codes[:2] == [451, 451]
        assert 200 <= codes[2] < 300

    def test_dropped_connection_gives_code_0_and_later_messages_go_through(
        self, transport_for: TransportFactory
    ) -> None:
        """A message whose connection drops gets code 0 with a text; the rest are accepted."""
        transport = transport_for(ReplyRules(drop={"drop@example.com"}))
        batch = [
            outgoing("a", "a@example.com"),
            outgoing("d", "drop@example.com"),
            outgoing("b", "b@example.com"),
            outgoing("c", "c@example.com"),
        ]
        replies = transport.send(batch)
        assert [r.key for r in replies] == ["a", "d", "b", "c"]
        assert replies[1].code == 0
        assert replies[1].deferred
        assert replies[1].text
        assert all(r.accepted for r in (replies[0], replies[2], replies[3]))

    def test_one_reply_per_message_in_order_for_a_mixed_batch(
        self, transport_for: TransportFactory
    ) -> None:
        """Every outcome in one batch: replies match messages one to one, nothing raises."""
        rules = ReplyRules(
            reject={"no@example.com"}, defer={"wait@example.com": 1}, drop={"cut@example.com"}
        )
        recipients = [
            "ok1@example.com",
            "no@example.com",
            "wait@example.com",
            "cut@example.com",
            "ok2@example.com",
            "NO@example.com",
            "ok3@example.com",
            "wait@example.com",
        ]
        batch = [outgoing(f"m{i}", r) for i, r in enumerate(recipients)]
        replies = transport_for(rules).send(batch)
        assert [r.key for r in replies] == [m.key for m in batch]
        kinds = [
            "accepted" if r.accepted else "rejected" if r.rejected else "deferred" for r in replies
        ]
        # the second message to wait@ may be tried before or after the first
        # when the transport sends in parallel: only the set of its outcomes is fixed
        assert kinds[:2] == ["accepted", "rejected"]
        assert kinds[3:7] == ["deferred", "accepted", "rejected", "accepted"]
        assert sorted([kinds[2], kinds[7]]) == ["accepted", "deferred"]
        assert replies[3].code == 0

    def test_transport_is_reusable_across_sends_and_after_close(
        self, transport_for: TransportFactory
    ) -> None:
        """Several sends on one transport all work, also after close (which may be repeated)."""
        transport = transport_for(ReplyRules())
        first = transport.send([outgoing("a", "a@example.com"), outgoing("b", "b@example.com")])
        second = transport.send([outgoing("c", "c@example.com")])
        transport.close()
        transport.close()
        third = transport.send([outgoing("d", "d@example.com")])
        assert all(r.accepted for r in [*first, *second, *third])
