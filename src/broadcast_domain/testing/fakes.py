"""In-memory fakes of the ports, for tests of the application layer.

FakeTransport answers per recipient address like a mail server would
(250 by default, 550, 451 a number of times, or no reply at all for a dropped
connection) and records everything it was given.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType

from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import OutgoingMessage, TransportReply

__all__ = ["FakeTransport"]

ACCEPT_TEXT = "2.0.0 OK: queued"
REJECT_TEXT = "5.1.1 Recipient address rejected: User unknown"
DEFER_TEXT = "4.3.0 Temporary failure, try again later"
DROP_TEXT = "connection dropped during DATA: Connection unexpectedly closed"


def _key(address: str) -> str:
    return address.strip().strip("<>").casefold()


class FakeTransport:
    """A MailTransport that keeps messages in memory and answers by rules.

    ``sent`` is every message handed to ``send`` (in order), ``accepted`` the
    ones answered 250, ``calls`` the batches as given. Rules match addresses
    case-insensitively; setting a rule for an address replaces the previous one.
    """

    def __init__(
        self,
        *,
        reject: Iterable[str] = (),
        defer: Mapping[str, int] | None = None,
        drop: Iterable[str] = (),
    ) -> None:
        self._lock = threading.Lock()
        self._rejects: dict[str, str] = {}
        self._defers: dict[str, tuple[int, str]] = {}
        self._drops: set[str] = set()
        self.sent: list[OutgoingMessage] = []
        self.accepted: list[OutgoingMessage] = []
        self.calls: list[tuple[OutgoingMessage, ...]] = []
        self.closed = False
        for address in reject:
            self.reject(address)
        for address, times in (defer or {}).items():
            self.defer(address, times)
        for address in drop:
            self.drop(address)

    def _forget(self, key: str) -> None:
        self._rejects.pop(key, None)
        self._defers.pop(key, None)
        self._drops.discard(key)

    def accept(self, address: str) -> None:
        """Forget any rule for the address."""
        with self._lock:
            self._forget(_key(address))

    def reject(self, address: str, text: str = REJECT_TEXT) -> None:
        """Answer 550 with ``text``."""
        with self._lock:
            self._forget(_key(address))
            self._rejects[_key(address)] = text

    def defer(self, address: str, times: int = 1, text: str = DEFER_TEXT) -> None:
        """Answer 451 the next ``times`` attempts, then 250."""
        if times < 0:
            raise InvalidInput(f"defer times must be 0 or more, got {times}", field="times")
        with self._lock:
            self._forget(_key(address))
            self._defers[_key(address)] = (times, text)

    def drop(self, address: str) -> None:
        """Give no reply (code 0), as if the connection dropped."""
        with self._lock:
            self._forget(_key(address))
            self._drops.add(_key(address))

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        """One reply per message, in order, by the rules; never raises."""
        replies = []
        with self._lock:
            self.closed = False
            self.calls.append(tuple(messages))
            for message in messages:
                self.sent.append(message)
                replies.append(self._answer(message))
        return replies

    def _answer(self, message: OutgoingMessage) -> TransportReply:
        key = _key(message.recipient)
        if key in self._drops:
            return TransportReply(message.key, 0, DROP_TEXT)
        if key in self._rejects:
            return TransportReply(message.key, 550, self._rejects[key])
        if key in self._defers:
            times, text = self._defers[key]
            if times > 0:
                self._defers[key] = (times - 1, text)
                return TransportReply(message.key, 451, text)
        self.accepted.append(message)
        return TransportReply(message.key, 250, ACCEPT_TEXT)

    def sent_to(self, address: str) -> list[OutgoingMessage]:
        """Every message handed over for the address (accepted or not)."""
        key = _key(address)
        with self._lock:
            return [m for m in self.sent if _key(m.recipient) == key]

    def close(self) -> None:
        """Mark the transport closed; a later send opens it again."""
        with self._lock:
            self.closed = True

    def __enter__(self) -> FakeTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
