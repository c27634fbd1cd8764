"""The MailTransport contract, run against the in-memory fake and against SMTP to SmtpSink."""

from __future__ import annotations

from contextlib import ExitStack

from broadcast_adapters.smtp import SmtpTransport
from broadcast_domain.ports import MailTransport
from broadcast_domain.testing.contracts import MailTransportContract, ReplyRules
from broadcast_domain.testing.fakes import FakeTransport
from broadcast_domain.testing.smtp_server import SmtpSink


class TestFakeTransport(MailTransportContract):
    """FakeTransport keeps the contract it is used in place of."""

    def make_transport(self, rules: ReplyRules, stack: ExitStack) -> MailTransport:
        transport = FakeTransport(defer=rules.defer, drop=rules.drop)
        for address in rules.reject:
            transport.reject(address, rules.reject_text)
        stack.callback(transport.close)
        return transport


def _sink(rules: ReplyRules, *, pipelining: bool) -> SmtpSink:
    sink = SmtpSink(defer=rules.defer, drop=rules.drop, pipelining=pipelining)
    for address in rules.reject:
        sink.reject(address, rules.reject_text)
    return sink


class TestSmtpTransportOneConnection(MailTransportContract):
    """SmtpTransport over a single connection to a real SMTP server."""

    def make_transport(self, rules: ReplyRules, stack: ExitStack) -> MailTransport:
        sink = stack.enter_context(_sink(rules, pipelining=False))
        transport = SmtpTransport("127.0.0.1", sink.port, connections=1, timeout=10)
        stack.callback(transport.close)
        return transport


class TestSmtpTransportParallel(MailTransportContract):
    """SmtpTransport over three parallel connections to a real SMTP server."""

    def make_transport(self, rules: ReplyRules, stack: ExitStack) -> MailTransport:
        sink = stack.enter_context(_sink(rules, pipelining=False))
        transport = SmtpTransport("127.0.0.1", sink.port, connections=3, timeout=10)
        stack.callback(transport.close)
        return transport


class TestSmtpTransportPipelining(MailTransportContract):
    """SmtpTransport using PIPELINING when the server offers it."""

    def make_transport(self, rules: ReplyRules, stack: ExitStack) -> MailTransport:
        sink = stack.enter_context(_sink(rules, pipelining=True))
        transport = SmtpTransport("127.0.0.1", sink.port, connections=2, timeout=10)
        stack.callback(transport.close)
        return transport
