"""In-memory fakes of the ports, for tests of the application layer.

- :class:`FakeTransport` (MailTransport) answers per recipient address like a
  mail server would (250 by default, 550, 451 a number of times, or no reply at
  all for a dropped connection) and records everything it was given;
- :class:`FakeBounceSource` (BounceSource) yields raw messages from a list and
  records what was marked done and what was set aside (and why);
- :class:`FakeAddressBook` (AddressBook) holds contacts per address book id;
- the clock is :class:`broadcast_domain.testing.clock.FakeClock`.

Each passes the same contract tests as the real adapters
(:mod:`broadcast_domain.testing.contracts`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType

from broadcast_domain.domain.values import Contact
from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import IncomingBounce, OutgoingMessage, TransportReply

__all__ = ["FakeAddressBook", "FakeBounceSource", "FakeTransport"]

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


class FakeBounceSource:
    """A BounceSource over raw messages held in memory.

    Keys are ``msg-1``, ``msg-2`` ... in the order messages were added.
    ``done`` lists the keys marked done (in order, once each), ``aside`` maps
    each key set aside to its reason and ``aside_messages`` keeps those
    messages: nothing is ever deleted. :meth:`reopen` gives a second instance
    over the same storage, as a new process would see it.
    """

    def __init__(self, messages: Iterable[bytes] = ()) -> None:
        self._lock = threading.Lock()
        self._messages: dict[str, bytes] = {}
        self.done: list[str] = []
        self.aside: dict[str, str] = {}
        self.aside_messages: dict[str, bytes] = {}
        for raw in messages:
            self.add(raw)

    def add(self, raw: bytes) -> str:
        """Deliver one more message into the source; return its key."""
        if not isinstance(raw, bytes | bytearray):
            raise InvalidInput(
                f"a bounce message must be bytes, got {type(raw).__name__}", field="raw"
            )
        with self._lock:
            key = f"msg-{len(self._messages) + 1}"
            self._messages[key] = bytes(raw)
            return key

    def reopen(self) -> FakeBounceSource:
        """Another instance over the same messages and marks (shared, like a folder on disk)."""
        other = FakeBounceSource.__new__(FakeBounceSource)
        other._lock = self._lock
        other._messages = self._messages
        other.done = self.done
        other.aside = self.aside
        other.aside_messages = self.aside_messages
        return other

    def __iter__(self) -> Iterator[IncomingBounce]:
        """Messages neither done nor set aside, in the order they were added."""
        with self._lock:
            hidden = set(self.done) | set(self.aside)
            pending = [(k, raw) for k, raw in self._messages.items() if k not in hidden]
        for key, raw in pending:
            yield IncomingBounce(key=key, raw=raw)

    def _known(self, key: str) -> None:
        if key not in self._messages:
            raise InvalidInput(f"no message {key!r} in this FakeBounceSource", field="key")

    def mark_done(self, key: str) -> None:
        """Never yield the message again; idempotent."""
        with self._lock:
            self._known(key)
            if key not in self.done:
                self.done.append(key)

    def set_aside(self, key: str, reason: str) -> None:
        """Keep the message and its reason aside; it is not yielded again."""
        with self._lock:
            self._known(key)
            self.aside[key] = reason
            self.aside_messages[key] = self._messages[key]


class FakeAddressBook:
    """An AddressBook in memory: contacts per address book id, in the order given."""

    def __init__(self, books: Mapping[str, Iterable[Contact]] | None = None) -> None:
        self._books: dict[str, list[Contact]] = {}
        self.requests: list[str] = []
        for book_id, contacts in (books or {}).items():
            self.put(book_id, contacts)

    def put(self, address_book_id: str, contacts: Iterable[Contact]) -> None:
        """Replace the book's contacts."""
        listed = list(contacts)
        for index, contact in enumerate(listed):
            if not isinstance(contact, Contact):
                raise InvalidInput(
                    f"contacts[{index}] must be a Contact, got {type(contact).__name__}",
                    field=f"contacts[{index}]",
                )
        self._books[address_book_id] = listed

    def contacts(self, address_book_id: str) -> Iterable[Contact]:
        """Every contact of the book in the book's order; an unknown book is InvalidInput."""
        self.requests.append(address_book_id)
        if address_book_id not in self._books:
            raise InvalidInput(
                f"no address book {address_book_id!r}; known: {sorted(self._books)}",
                field="address_book_id",
            )
        return list(self._books[address_book_id])
