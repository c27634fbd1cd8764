"""A small local SMTP server for the demo: accepts, rejects (550) or defers (451) by address.

It listens on 127.0.0.1 (a free port by default) on aiosmtpd in a background
thread and keeps every message it accepted, one entry per recipient. The
richer, fault-injecting server of the test harness lives in
``broadcast_domain.testing``; the demo, being part of the shipped command,
has its own and does not depend on the test support.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from email.parser import BytesHeaderParser
from email.policy import compat32
from types import TracebackType

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["ReceivedMessage", "SmtpSink"]

REJECT_TEXT = "550 5.1.1 Recipient address rejected: User unknown"
DEFER_TEXT = "451 4.3.0 Temporary failure, try again later"


def _key(address: str) -> str:
    return address.strip().strip("<>").casefold()


@attrs.frozen
class ReceivedMessage:
    """One accepted message for one recipient."""

    envelope_from: str
    recipient: str
    data: bytes
    message_id: str | None


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        answer = self._sink._answer(address)
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        headers = BytesHeaderParser(policy=compat32).parsebytes(data)
        message_id = headers.get("Message-ID")
        sender = envelope.mail_from or ""
        self._sink._record(
            [
                ReceivedMessage(
                    sender, rcpt, data, message_id.strip() if message_id is not None else None
                )
                for rcpt in envelope.rcpt_tos
            ]
        )
        return "250 2.0.0 OK: queued"


class _Controller(Controller):
    """A Controller that may bind port 0 and learns the port the OS picked."""

    def _trigger_server(self) -> None:
        # The start-up probe connects to self.port, so it must be the real one.
        if isinstance(self.server, asyncio.Server) and self.port == 0:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpSink:
    """A local SMTP server: ``with SmtpSink(reject=..., defer={address: times}) as sink``."""

    def __init__(
        self,
        *,
        reject: Iterable[str] = (),
        defer: Mapping[str, int] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._reject = {_key(a) for a in reject}
        self._defer = {_key(a): int(n) for a, n in (defer or {}).items()}
        self._messages: list[ReceivedMessage] = []
        self._controller = _Controller(
            _Handler(self), hostname=host, port=port, ready_timeout=30, data_size_limit=None
        )

    def start(self) -> SmtpSink:
        """Start listening (in a background thread)."""
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on."""
        port: int = self._controller.port
        return port

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every accepted message, in order."""
        with self._lock:
            return list(self._messages)

    def _answer(self, address: str) -> str:
        key = _key(address)
        with self._lock:
            if key in self._reject:
                return REJECT_TEXT
            left = self._defer.get(key, 0)
            if left > 0:
                self._defer[key] = left - 1
                return DEFER_TEXT
        return "250 2.1.5 OK"

    def _record(self, messages: list[ReceivedMessage]) -> None:
        with self._lock:
            self._messages.extend(messages)
