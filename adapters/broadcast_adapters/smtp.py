"""SmtpTransport: the MailTransport port over SMTP, with smtplib and threads.

Each of up to ``connections`` worker threads owns one ``smtplib.SMTP``
connection and takes messages from a shared queue, so a slow recipient holds
up one connection only. Connections stay open across ``send`` calls. Every
message gets exactly one TransportReply; nothing a server or the network does
to one message raises.

Why smtplib and not aiosmtplib: with one recipient per message the work is a
few short round trips per message, where a blocking socket in a thread costs
less than an event loop turn; measured against a local aiosmtpd server
smtplib was clearly faster (see the benchmark in ``benchmarks/``). When the
server offers PIPELINING (RFC 2920) MAIL, RCPT and DATA go out in one write,
which halves the round trips per message.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import OutgoingMessage, TransportReply

__all__ = ["SmtpTransport"]

_BARE_EOL = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")


class _ConnectFailed(Exception):
    """Opening, securing or authenticating a connection failed; the text says how."""


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())


def _timed_out(exc: BaseException) -> bool:
    # smtplib turns a socket timeout into SMTPServerDisconnected; the timeout
    # survives as the implicit context of that exception
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _payload(data: bytes) -> bytes:
    """The DATA content: CRLF line ends, leading dots doubled, ``.`` line at the end."""
    if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
        data = _BARE_EOL.sub(b"\r\n", data)
    data = _LEADING_DOT.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class _Connection:
    """One SMTP session, used by one worker thread at a time."""

    def __init__(self, transport: SmtpTransport) -> None:
        self._t = transport
        self._smtp: smtplib.SMTP | None = None
        self._dirty = False  # a failed transaction must be reset before the next
        self._used = False  # whether a message has gone over this session yet
        self._pipelining = False
        self._8bitmime = False
        self._size = False

    @property
    def is_open(self) -> bool:
        return self._smtp is not None

    @property
    def reused(self) -> bool:
        return self._used

    def open(self) -> None:
        """Connect, say EHLO, STARTTLS and AUTH as configured; raise _ConnectFailed."""
        t = self._t
        where = f"{t.host}:{t.port}"
        smtp: smtplib.SMTP | None = None
        try:
            smtp = smtplib.SMTP(t.host, t.port, local_hostname=t.local_hostname, timeout=t.timeout)
            self._ehlo(smtp)
            if t.starttls:
                if not smtp.has_extn("starttls"):
                    raise _ConnectFailed(
                        f"STARTTLS required but {where} does not offer it; "
                        "not sending in plain text"
                    )
                try:
                    smtp.starttls(context=t.ssl_context or ssl.create_default_context())
                except smtplib.SMTPResponseException as exc:
                    raise _ConnectFailed(
                        f"STARTTLS refused by {where}: {exc.smtp_code} {_text(exc.smtp_error)}; "
                        "not sending in plain text"
                    ) from None
                self._ehlo(smtp)
            if t.username is not None:
                try:
                    smtp.login(t.username, t.password or "")
                except smtplib.SMTPAuthenticationError as exc:
                    raise _ConnectFailed(
                        f"authentication as {t.username!r} refused by {where}: "
                        f"{exc.smtp_code} {_text(exc.smtp_error)}"
                    ) from None
                except smtplib.SMTPNotSupportedError:
                    raise _ConnectFailed(
                        f"{where} does not offer AUTH; cannot log in as {t.username!r}"
                    ) from None
        except _ConnectFailed:
            _close_quietly(smtp)
            raise
        except smtplib.SMTPConnectError as exc:
            raise _ConnectFailed(
                f"{where} refused the session: {exc.smtp_code} {_text(exc.smtp_error)}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            _close_quietly(smtp)
            if _timed_out(exc):
                raise _ConnectFailed(
                    f"timed out after {t.timeout:g} s connecting to {where}"
                ) from None
            if isinstance(exc, ssl.SSLError):
                raise _ConnectFailed(f"TLS handshake with {where} failed: {exc}") from None
            raise _ConnectFailed(f"could not connect to {where}: {_text(str(exc))}") from None
        self._smtp = smtp
        self._dirty = False
        self._used = False
        self._pipelining = smtp.has_extn("pipelining")
        self._8bitmime = smtp.has_extn("8bitmime")
        self._size = smtp.has_extn("size")

    def _ehlo(self, smtp: smtplib.SMTP) -> None:
        code, reply = smtp.ehlo()
        if code != 250:
            code, reply = smtp.helo()
            if code != 250:
                raise _ConnectFailed(
                    f"{self._t.host}:{self._t.port} refused HELO: {code} {_text(reply)}"
                )

    def close(self, *, polite: bool) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        if polite:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                _close_quietly(smtp)
        else:
            _close_quietly(smtp)

    def deliver(self, message: OutgoingMessage) -> TransportReply | None:  # noqa: PLR0911 - one return per SMTP stage
        """Run one transaction; None means the session died before it began (retry)."""
        smtp = self._smtp
        if smtp is None:  # never: the worker opens the session first; reopen anyway
            return None
        reused = self._used
        self._used = True
        options = self._options(message.data)
        payload = _payload(message.data)
        if self._pipelining:
            return self._pipelined(smtp, message, options, payload, reused=reused)
        stage = "RSET" if self._dirty else "MAIL FROM"
        try:
            if self._dirty:
                code, reply = smtp.rset()
                if code != 250:
                    return self._finish(message, code, reply, stage, may_retry=reused)
                self._dirty = False
            stage = "MAIL FROM"
            code, reply = smtp.mail(message.envelope_from, options)
            if code != 250:
                return self._finish(message, code, reply, stage, may_retry=reused)
            stage = "RCPT TO"
            code, reply = smtp.rcpt(message.recipient)
            if code not in (250, 251):
                return self._finish(message, code, reply, stage)
            stage = "DATA"
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                return self._finish(message, code, reply, stage)
            smtp.send(payload)
            code, reply = smtp.getreply()
            return self._finish(message, code, reply, stage)
        except (smtplib.SMTPException, OSError) as exc:
            return self._broken(message, exc, stage, reused=reused)

    def _pipelined(
        self,
        smtp: smtplib.SMTP,
        message: OutgoingMessage,
        options: list[str],
        payload: bytes,
        *,
        reused: bool,
    ) -> TransportReply | None:
        """RSET (if needed), MAIL, RCPT and DATA in one write (RFC 2920), then the content."""
        opts = "".join(f" {o}" for o in options)
        reset = self._dirty
        commands = (
            ("RSET\r\n" if reset else "")
            + f"MAIL FROM:{smtplib.quoteaddr(message.envelope_from)}{opts}\r\n"
            f"RCPT TO:{smtplib.quoteaddr(message.recipient)}\r\n"
            "DATA\r\n"
        )
        stage = "RSET" if reset else "MAIL FROM"
        try:
            smtp.send(commands)
            if reset:
                rset = smtp.getreply()
                self._dirty = False
                stage = "MAIL FROM"
            mail = smtp.getreply()
            stage = "RCPT TO"
            rcpt = smtp.getreply()
            stage = "DATA"
            data = smtp.getreply()
            if reset and rset[0] != 250:
                mail = rset if mail[0] == 250 else mail
            if data[0] == 354:
                if mail[0] != 250 or rcpt[0] not in (250, 251):
                    # the server took DATA although MAIL or RCPT failed:
                    # end the (empty) data at once and reset
                    smtp.send(b".\r\n")
                    smtp.getreply()
                    self._dirty = True
                    return self._reply(message, *(mail if mail[0] != 250 else rcpt))
                smtp.send(payload)
                code, reply = smtp.getreply()
                return self._finish(message, code, reply, stage)
            if mail[0] != 250:
                return self._finish(message, *mail, "MAIL FROM", may_retry=reused)
            if rcpt[0] not in (250, 251):
                return self._finish(message, *rcpt, "RCPT TO")
            return self._finish(message, *data, stage)
        except (smtplib.SMTPException, OSError) as exc:
            return self._broken(message, exc, stage, reused=reused)

    def _broken(
        self, message: OutgoingMessage, exc: BaseException, stage: str, *, reused: bool
    ) -> TransportReply | None:
        self.close(polite=False)
        if reused and stage in ("RSET", "MAIL FROM") and not _timed_out(exc):
            # an idle session the server let go: nothing of this message was
            # accepted yet, so it may go again over a fresh connection
            return None
        return self._lost(message, exc, stage)

    def _options(self, data: bytes) -> list[str]:
        options = []
        if self._size:
            options.append(f"SIZE={len(data)}")
        if self._8bitmime and not data.isascii():
            options.append("BODY=8BITMIME")
        return options

    def _finish(
        self,
        message: OutgoingMessage,
        code: int,
        reply: bytes,
        stage: str,
        *,
        may_retry: bool = False,
    ) -> TransportReply | None:
        if code == 421:
            # the server is closing this session; a 421 to MAIL FROM on a
            # reused session says nothing about the message, so retry it fresh
            self.close(polite=False)
            if may_retry:
                return None
            return self._reply(message, code, reply)
        if code == -1:
            self.close(polite=False)
            return TransportReply(message.key, 0, f"unreadable reply to {stage}: {_text(reply)}")
        if not 200 <= code < 300:
            self._dirty = True
        return self._reply(message, code, reply)

    @staticmethod
    def _reply(message: OutgoingMessage, code: int, reply: bytes) -> TransportReply:
        return TransportReply(message.key, code, _text(reply))

    def _lost(self, message: OutgoingMessage, exc: BaseException, stage: str) -> TransportReply:
        if _timed_out(exc):
            text = f"timed out after {self._t.timeout:g} s waiting for the {stage} reply"
        else:
            text = f"connection dropped during {stage}: {_text(str(exc)) or type(exc).__name__}"
        return TransportReply(message.key, 0, text)


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()


class _Batch:
    """The messages of one ``send`` call, shared by the workers."""

    def __init__(self, messages: Sequence[OutgoingMessage], workers: int) -> None:
        self.messages = messages
        self.replies: list[TransportReply | None] = [None] * len(messages)
        self._pending = deque(range(len(messages)))
        self._active = workers
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """The next message index, or None (and this worker stops) when all are taken."""
        with self._lock:
            if self._pending:
                return self._pending.popleft()
            self._active -= 1
            return None

    def give_up(self, index: int, reason: str) -> None:
        """This worker cannot connect: hand the message to another, or fail the rest."""
        with self._lock:
            self._active -= 1
            if self._active > 0:
                self._pending.appendleft(index)
                return
            failed = [index, *self._pending]
            self._pending.clear()
        for i in failed:
            self.replies[i] = TransportReply(self.messages[i].key, 0, reason)


class SmtpTransport:
    """Hands messages to one SMTP server over up to ``connections`` parallel sessions.

    ``send`` returns one TransportReply per message in the same order: the
    RCPT TO reply when the recipient was refused, else the reply to the end
    of DATA. Code 0 means no reply: the connection could not be opened,
    secured or authenticated, dropped, or timed out (after ``timeout`` seconds
    of silence); the text says which. A 421 closes that session and the next
    message opens a new one. With ``starttls`` a server that does not offer
    or refuses STARTTLS gets nothing: no silent fallback to plain text.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        connections: int = 4,
        timeout: float = 30,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if not host:
            raise InvalidInput("host must not be empty", field="host")
        if not 0 < port < 65536:
            raise InvalidInput(f"port must be 1-65535, got {port}", field="port")
        if connections < 1:
            raise InvalidInput(
                f"connections must be 1 or more, got {connections}", field="connections"
            )
        if not timeout > 0:
            raise InvalidInput(f"timeout must be positive seconds, got {timeout}", field="timeout")
        if password is not None and username is None:
            raise InvalidInput("password given without username", field="username")
        self.host = host
        self.port = port
        self.connections = connections
        self.timeout = float(timeout)
        self.starttls = starttls
        self.username = username
        self.password = password
        self.ssl_context = ssl_context
        self.local_hostname = local_hostname
        self._pool = [_Connection(self) for _ in range(connections)]
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        """Hand over every message; one reply each, in order; never raises per message."""
        if not messages:
            return []
        with self._lock:
            workers = min(self.connections, len(messages))
            batch = _Batch(messages, workers)
            if workers == 1:
                # no thread hop for a single connection: as cheap as a plain loop
                self._work(self._pool[0], batch)
            else:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        self.connections, thread_name_prefix="smtp-transport"
                    )
                futures = [
                    self._executor.submit(self._work, conn, batch) for conn in self._pool[:workers]
                ]
                for future in futures:
                    future.result()
        replies = batch.replies
        return [
            r if r is not None else TransportReply(m.key, 0, "not sent: no connection took it")
            for r, m in zip(replies, messages, strict=True)
        ]

    def _work(self, conn: _Connection, batch: _Batch) -> None:
        while (index := batch.take()) is not None:
            message = batch.messages[index]
            problem = _check(message)
            if problem is not None:
                batch.replies[index] = TransportReply(message.key, 0, problem)
                continue
            for _ in range(2):  # a stale reused session gets one fresh retry
                if not conn.is_open:
                    try:
                        conn.open()
                    except _ConnectFailed as exc:
                        batch.give_up(index, str(exc))
                        return
                reply = conn.deliver(message)
                if reply is not None:
                    break
            else:
                reply = TransportReply(
                    message.key, 0, "connection dropped before MAIL FROM twice in a row"
                )
            batch.replies[index] = reply

    def close(self) -> None:
        """QUIT every open session and stop the worker threads; a later send reconnects."""
        with self._lock:
            for conn in self._pool:
                conn.close(polite=True)
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _check(message: OutgoingMessage) -> str | None:
    """Why the message cannot go on the wire at all, or None."""
    for name, value in (("recipient", message.recipient), ("envelope_from", message.envelope_from)):
        if "\r" in value or "\n" in value:
            return f"not sent: {name} {value!r} contains a line break"
        if not value.isascii():
            # smtplib writes commands in ASCII; SMTPUTF8 is not offered
            return f"not sent: {name} {value!r} is not ASCII (SMTPUTF8 is not supported)"
    if "@" not in message.recipient:
        return f"not sent: recipient {message.recipient!r} is not an address"
    return None
