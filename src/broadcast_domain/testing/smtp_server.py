"""SmtpSink: a real, controllable SMTP server on aiosmtpd, for tests and the demo.

It listens on 127.0.0.1 (a free port by default), records every message it
accepts and answers each recipient address according to rules: accept (the
default), reject with 550, defer with 451 a number of times, drop the
connection, answer 421 and close, or stall. Rules are set in the constructor
or later through methods, from any thread; the server runs its own event loop
in a background thread.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from email.parser import BytesHeaderParser
from email.policy import compat32
from types import TracebackType
from typing import Any, Literal

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from broadcast_domain.errors import InvalidInput

__all__ = ["ReceivedMessage", "SmtpSink", "Stage"]

Stage = Literal["RCPT", "DATA"]
_Kind = Literal["reject", "defer", "drop", "close", "stall", "hold"]

DEFAULT_REJECT_TEXT = "5.1.1 Recipient address rejected: User unknown"
DEFAULT_DEFER_TEXT = "4.3.0 Temporary failure, try again later"
DEFAULT_CLOSE_TEXT = "4.3.2 Service shutting down, closing connection"


def _key(address: str) -> str:
    return address.strip().strip("<>").casefold()


@attrs.frozen
class ReceivedMessage:
    """One accepted message for one recipient, as the sink saw it."""

    envelope_from: str
    recipient: str
    data: bytes
    message_id: str | None
    peer: str


@attrs.define
class _Rule:
    kind: _Kind
    stage: Stage
    text: str = ""
    times: int = 0
    seconds: float = 0.0


class _Handler:
    """aiosmtpd hooks; they run on the sink's event loop thread."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # the 5-argument hook must record the client's name itself
        session.host_name = hostname
        self._sink._greeted(server)
        if self._sink.refuse_starttls and not any("STARTTLS" in r for r in responses):
            responses.insert(len(responses) - 1, "250-STARTTLS")
        if self._sink.pipelining:
            # aiosmtpd reads commands one line at a time from a buffered
            # stream, so pipelined commands just work once advertised
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        session.host_name = hostname
        self._sink._greeted(server)
        return f"250 {server.hostname}"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self._sink._count_attempt(address)
        status = await self._apply(server, address, "RCPT")
        if status.startswith("250"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return status

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        status = "250 2.0.0 OK: queued"
        for address in envelope.rcpt_tos:
            status = await self._apply(server, address, "DATA")
            if not status.startswith("250"):
                return status
        data = envelope.original_content or b""
        peer = session.peer
        peer_text = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._sink._record(
            [
                ReceivedMessage(
                    envelope_from=str(envelope.mail_from),
                    recipient=address,
                    data=data,
                    message_id=_message_id(data),
                    peer=peer_text,
                )
                for address in envelope.rcpt_tos
            ]
        )
        return status

    async def _apply(self, server: SMTP, address: str, stage: Stage) -> str:
        ok = "250 2.1.5 OK" if stage == "RCPT" else "250 2.0.0 OK: queued"
        rule = self._sink._take_rule(address, stage)
        if rule is None:
            return ok
        if rule.kind == "stall":
            await asyncio.sleep(rule.seconds)
            return ok
        if rule.kind == "reject":
            return f"550 {rule.text}"
        if rule.kind == "defer":
            return f"451 {rule.text}"
        if rule.kind == "hold":
            await self._sink._wait_for_holders()
            return ok
        if rule.kind == "close":
            await server.push(f"421 {rule.text}")
        transport = server.transport
        if transport is not None:
            transport.close()
        # connection_lost cancels this handler task; waiting here keeps
        # aiosmtpd from writing a reply to the closed transport
        await asyncio.get_running_loop().create_future()
        return ok  # pragma: no cover - the wait above is always cancelled


def _message_id(data: bytes) -> str | None:
    value = BytesHeaderParser(policy=compat32).parsebytes(data).get("Message-ID")
    return None if value is None else " ".join(str(value).split())


class _SinkSMTP(SMTP):
    """aiosmtpd's server protocol, counting the client sessions open at once.

    A session counts from its first EHLO/HELO, so the Controller's own
    start-up probe (which only reads the greeting) is not counted.
    """

    def __init__(self, handler: _Handler, sink: SmtpSink, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            # AUTH without TLS is what a local test server wants; aiosmtpd warns about it
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(handler, **kwargs)
        self._sink = sink
        self.counted = False

    def connection_lost(self, error: Exception | None) -> None:
        if self.counted:
            self.counted = False
            self._sink._session_closed(self)
        super().connection_lost(error)


class _Controller(Controller):
    """A Controller that may bind port 0 and learns the port the OS picked."""

    def __init__(self, sink: SmtpSink, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sink = sink

    def factory(self) -> SMTP:
        return _SinkSMTP(self.handler, self._sink, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        if isinstance(self.server, asyncio.Server) and self.port == 0:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpSink:
    """A local SMTP server that records messages and answers per recipient rules.

    Use it as a context manager (or call ``start``/``stop``); ``port`` is the
    port it listens on. Rules match addresses case-insensitively; setting a
    rule for an address replaces the previous one.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reject: Iterable[str] = (),
        reject_if: Callable[[str], bool] | None = None,
        defer: Mapping[str, int] | None = None,
        drop: Iterable[str] = (),
        drop_at_rcpt: Iterable[str] = (),
        close_with_421: Iterable[str] = (),
        stall: Mapping[str, float] | None = None,
        refuse_starttls: bool = False,
        pipelining: bool = False,
        credentials: Mapping[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        hostname: str = "sink.localhost",
    ) -> None:
        self.host = host
        self.port = port
        self.refuse_starttls = refuse_starttls
        self.pipelining = pipelining
        self._credentials = dict(credentials) if credentials is not None else None
        self._tls_context = tls_context
        self._hostname = hostname
        self._lock = threading.Lock()
        self._rules: dict[str, _Rule] = {}
        self._predicates: list[tuple[Callable[[str], bool], str]] = []
        self._messages: list[ReceivedMessage] = []
        self._attempts: dict[str, int] = {}
        self._open_sessions = 0
        self._max_sessions = 0
        self._sessions_opened = 0
        self._hold_parties = 0
        self._hold_timeout = 0.0
        self._holding = 0
        self._controller: _Controller | None = None
        self._sessions: set[SMTP] = set()
        for address in reject:
            self.reject(address)
        if reject_if is not None:
            self.reject_if(reject_if)
        for address, times in (defer or {}).items():
            self.defer(address, times)
        for address in drop:
            self.drop(address)
        for address in drop_at_rcpt:
            self.drop(address, at="RCPT")
        for address in close_with_421:
            self.close_with_421(address)
        for address, seconds in (stall or {}).items():
            self.stall(address, seconds)

    # -- lifecycle -------------------------------------------------------

    def start(self) -> SmtpSink:
        """Start listening; returns self with ``port`` set."""
        if self._controller is not None:
            return self
        kwargs: dict[str, Any] = {"server_hostname": self._hostname, "ready_timeout": 10.0}
        if self._tls_context is not None:
            kwargs["tls_context"] = self._tls_context
        if self._credentials is not None:
            kwargs.update(
                authenticator=self._authenticate, auth_required=True, auth_require_tls=False
            )
        controller = _Controller(self, _Handler(self), hostname=self.host, port=self.port, **kwargs)
        controller.start()
        self.port = controller.port
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening and close every session."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- rules -----------------------------------------------------------

    def _set(self, address: str, rule: _Rule) -> None:
        with self._lock:
            self._rules[_key(address)] = rule

    def accept(self, address: str) -> None:
        """Forget any rule for the address: it is accepted again."""
        with self._lock:
            self._rules.pop(_key(address), None)

    def reject(self, address: str, text: str = DEFAULT_REJECT_TEXT, *, at: Stage = "RCPT") -> None:
        """Answer 550 with ``text`` for the address, at RCPT or after DATA."""
        self._set(address, _Rule("reject", _stage(at), text=text))

    def reject_if(self, predicate: Callable[[str], bool], text: str = DEFAULT_REJECT_TEXT) -> None:
        """Answer 550 at RCPT for every address the predicate holds for."""
        with self._lock:
            self._predicates.append((predicate, text))

    def defer(self, address: str, times: int = 1, text: str = DEFAULT_DEFER_TEXT) -> None:
        """Answer 451 at RCPT the next ``times`` attempts, then accept."""
        if times < 0:
            raise InvalidInput(f"defer times must be 0 or more, got {times}", field="times")
        self._set(address, _Rule("defer", "RCPT", text=text, times=times))

    def drop(self, address: str, *, at: Stage = "DATA") -> None:
        """Close the connection without a reply: at RCPT, or once the data is in."""
        self._set(address, _Rule("drop", _stage(at)))

    def close_with_421(self, address: str, text: str = DEFAULT_CLOSE_TEXT) -> None:
        """Answer 421 at RCPT for the address and close the connection."""
        self._set(address, _Rule("close", "RCPT", text=text))

    def stall(self, address: str, seconds: float, *, at: Stage = "RCPT") -> None:
        """Wait ``seconds`` before answering for the address (then accept)."""
        if seconds < 0:
            raise InvalidInput(f"stall seconds must be 0 or more, got {seconds}", field="seconds")
        self._set(address, _Rule("stall", _stage(at), seconds=seconds))

    def hold(self, addresses: Iterable[str], parties: int, *, timeout: float = 10.0) -> None:
        """Keep RCPT for these addresses waiting until ``parties`` of them wait at once.

        A client that really sends over ``parties`` connections in parallel
        gets them all accepted together; one that does not waits ``timeout``
        seconds per held address. Shows parallelism without timing guesses.
        Once the group is complete, later held addresses pass at once.
        """
        with self._lock:
            self._hold_parties = parties
            self._hold_timeout = timeout
            for address in addresses:
                self._rules[_key(address)] = _Rule("hold", "RCPT")

    # -- what happened ---------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every accepted message, one entry per recipient, in arrival order."""
        with self._lock:
            return list(self._messages)

    def received_for(self, address: str) -> list[ReceivedMessage]:
        """The accepted messages for one recipient."""
        key = _key(address)
        return [m for m in self.messages if _key(m.recipient) == key]

    def attempts(self, address: str) -> int:
        """How many times a client named the address in RCPT TO."""
        with self._lock:
            return self._attempts.get(_key(address), 0)

    @property
    def sessions_opened(self) -> int:
        """Client sessions (connections that said EHLO or HELO) since start."""
        with self._lock:
            return self._sessions_opened

    @property
    def max_concurrent_sessions(self) -> int:
        """The most client sessions that were open at the same moment."""
        with self._lock:
            return self._max_sessions

    @property
    def open_sessions(self) -> int:
        """Client sessions open right now."""
        with self._lock:
            return self._open_sessions

    def close_sessions(self, *, wait: float = 5.0) -> None:
        """Close every open connection, as a server does to idle clients.

        Returns once they are closed (or ``wait`` seconds have passed).
        """
        controller = self._controller
        if controller is None:
            return

        def close_all() -> None:
            with self._lock:
                sessions = list(self._sessions)
            for session in sessions:
                if session.transport is not None:
                    session.transport.close()

        controller.loop.call_soon_threadsafe(close_all)
        deadline = time.monotonic() + wait
        while self.open_sessions and time.monotonic() < deadline:
            time.sleep(0.005)

    def clear(self) -> None:
        """Forget received messages and attempt counts (rules stay)."""
        with self._lock:
            self._messages.clear()
            self._attempts.clear()

    # -- called from the server thread -----------------------------------

    def _take_rule(self, address: str, stage: Stage) -> _Rule | None:
        key = _key(address)
        with self._lock:
            rule = self._rules.get(key)
            if rule is None:
                if stage == "RCPT":
                    for predicate, text in self._predicates:
                        if predicate(address):
                            return _Rule("reject", "RCPT", text=text)
                return None
            if rule.stage != stage:
                return None
            if rule.kind == "defer":
                if rule.times <= 0:
                    return None
                rule.times -= 1
            return rule

    async def _wait_for_holders(self) -> None:
        with self._lock:
            self._holding += 1
            parties, timeout = self._hold_parties, self._hold_timeout
        # the count never goes down: once the group is complete every later
        # held address passes at once
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._holding >= parties:
                    return
            await asyncio.sleep(0.005)

    def _count_attempt(self, address: str) -> None:
        key = _key(address)
        with self._lock:
            self._attempts[key] = self._attempts.get(key, 0) + 1

    def _record(self, messages: list[ReceivedMessage]) -> None:
        with self._lock:
            self._messages.extend(messages)

    def _greeted(self, session: SMTP) -> None:
        # EHLO comes again after STARTTLS on the same session: count it once
        if isinstance(session, _SinkSMTP) and not session.counted:
            session.counted = True
            self._session_opened(session)

    def _session_opened(self, session: SMTP) -> None:
        with self._lock:
            self._sessions.add(session)
            self._sessions_opened += 1
            self._open_sessions += 1
            self._max_sessions = max(self._max_sessions, self._open_sessions)

    def _session_closed(self, session: SMTP) -> None:
        with self._lock:
            self._sessions.discard(session)
            self._open_sessions -= 1

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and self._credentials is not None:
            login = data.login.decode("utf-8", "replace")
            password = data.password.decode("utf-8", "replace")
            if self._credentials.get(login) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


def _stage(value: str) -> Stage:
    if value == "RCPT":
        return "RCPT"
    if value == "DATA":
        return "DATA"
    raise InvalidInput(f"stage must be 'RCPT' or 'DATA', got {value!r}", field="at")
