"""Contract tests for port implementations: subclass, implement the factory, run.

Each class is a pytest base class (its name does not start with ``Test``, so
pytest collects only a host's subclass). Our own adapters and fakes subclass
the same classes in our suite:

- :class:`MailTransportContract`: ``make_transport(rules, stack)``;
- :class:`BounceSourceContract`: ``make_source(messages, stack)``, ``reopen(source)``,
  ``set_aside_messages(source)``;
- :class:`ViewStoreContract`: ``make_store(stack)``;
- :class:`AddressBookContract`: ``make_address_book(books, stack)``;
- :class:`StoreContract`: ``store_url(stack)`` (and ``persistent``), a scripted
  scenario run end to end through ``BroadcastService``.

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

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any
from uuid import UUID

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcast_domain import Actor, AddressBookSource, BroadcastService, InboxRole
from broadcast_domain.application.projector import compare_views
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.domain.messages import build_message, make_message_id
from broadcast_domain.domain.values import BounceReport, BroadcastStatus, Contact, DeliveryStatus
from broadcast_domain.errors import BroadcastError
from broadcast_domain.ports import (
    AddressBook,
    BounceSource,
    IncomingBounce,
    MailTransport,
    OutgoingMessage,
    ViewStore,
)
from broadcast_domain.projections.replay import SentMessage, replay_all
from broadcast_domain.projections.rows import RecipientRow, cells_of
from broadcast_domain.projections.views import BulkAcknowledgement, Counts, Views, fold, month_of
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.histories import HistoryBuilder
from broadcast_domain.testing.reports import failure_report, report_message, verp_token_of
from broadcast_domain.testing.strategies import histories

__all__ = [
    "AddressBookContract",
    "BounceSourceContract",
    "MailTransportContract",
    "ReplyRules",
    "StoreContract",
    "ViewStoreContract",
    "outgoing",
]


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


# --------------------------------------------------------------------------- bounce sources


def _same_message(raw: bytes) -> bytes:
    # Storage formats may change line endings (mbox is LF) and trailing blank lines.
    return raw.replace(b"\r\n", b"\n").rstrip(b"\n")


def sample_bounces() -> list[bytes]:
    """Four distinct raw report messages: DSNs (CRLF and LF), an ARF complaint, a plain bounce."""
    when = datetime(2026, 11, 3, 1, 2, 3, tzinfo=UTC)
    reports = [
        BounceReport(
            recipient=f"user{n}@example.net",
            status=status,
            diagnostic=text,
            permanent=status.startswith("5"),
            reported_at=when,
            action=action,
        )
        for n, (status, text, action) in enumerate(
            [
                ("5.1.1", "User unknown", "failed"),
                ("4.2.2", "メールボックスが一杯です", "delayed"),
                ("5.7.1", "spam complaint", "complaint"),
            ]
        )
    ]
    plain = (
        b"From: MAILER-DAEMON@mx.example.net\nTo: bounces+t9@mail.example.com\n"
        b"Subject: Undelivered Mail\n\n"
        b"From the mail system: delivery to user9@example.net failed.\n"
        b"From here on a line starts with From.\n"
    )
    return [
        report_message(reports[0], verp_address="bounces+t0@mail.example.com"),
        report_message(reports[1], line_ending="\n", charset="iso-2022-jp", original="message"),
        report_message(reports[2], original_message_id="<m2@mail.example.com>"),
        plain,
    ]


class BounceSourceContract:
    """What every BounceSource must do; subclass and implement the three hooks.

    The ingestion loop relies on it: it iterates, records each message's events,
    then marks the message done (or sets it aside when it cannot be handled), and
    a process that dies midway must see every unmarked message again.
    """

    def make_source(self, messages: Sequence[bytes], stack: ExitStack) -> BounceSource:
        """A source holding ``messages`` (raw bytes) in its storage; clean up via ``stack``."""
        raise NotImplementedError("subclasses return a source over the given messages")

    def reopen(self, source: BounceSource) -> BounceSource:
        """A new instance over the same storage, as a restarted process would open it."""
        raise NotImplementedError("subclasses reopen the source's storage")

    def set_aside_messages(self, source: BounceSource) -> list[bytes]:
        """The raw messages the source has set aside (where a person would look for them)."""
        raise NotImplementedError("subclasses read back what was set aside")

    @pytest.fixture
    def open_source(self) -> Iterator[Callable[[Sequence[bytes]], BounceSource]]:
        """Builds sources for the test and cleans them up afterwards."""
        with ExitStack() as stack:
            yield lambda messages: self.make_source(messages, stack)

    def test_source_satisfies_the_protocol(self, open_source: SourceFactory) -> None:
        """The source is a BounceSource (iterable, mark_done, set_aside)."""
        assert isinstance(open_source(sample_bounces()), BounceSource)

    def test_empty_source_yields_nothing(self, open_source: SourceFactory) -> None:
        """A source without messages yields none."""
        assert list(open_source([])) == []

    def test_every_message_is_yielded_once_per_pass(self, open_source: SourceFactory) -> None:
        """One pass yields each stored message exactly once, under distinct keys."""
        messages = sample_bounces()
        items = list(open_source(messages))
        assert all(isinstance(item, IncomingBounce) for item in items)
        assert len({item.key for item in items}) == len(items) == len(messages)
        assert sorted(_same_message(i.raw) for i in items) == sorted(
            _same_message(m) for m in messages
        )

    def test_unmarked_messages_are_yielded_again_also_after_reopening(
        self, open_source: SourceFactory
    ) -> None:
        """Nothing marked: a second pass and a reopened source yield the same keys."""
        source = open_source(sample_bounces())
        first = sorted(item.key for item in source)
        assert sorted(item.key for item in source) == first
        assert sorted(item.key for item in self.reopen(source)) == first

    def test_mark_done_hides_a_message_forever_also_after_reopening(
        self, open_source: SourceFactory
    ) -> None:
        """A message marked done is never yielded again, by this or a reopened source."""
        source = open_source(sample_bounces())
        keys = [item.key for item in source]
        source.mark_done(keys[1])
        rest = sorted(k for k in keys if k != keys[1])
        assert sorted(item.key for item in source) == rest
        again = self.reopen(source)
        assert sorted(item.key for item in again) == rest
        assert sorted(item.key for item in self.reopen(again)) == rest

    def test_mark_done_twice_is_harmless(self, open_source: SourceFactory) -> None:
        """Marking a message done again changes nothing and raises nothing."""
        source = open_source(sample_bounces())
        key = next(iter(source)).key
        source.mark_done(key)
        source.mark_done(key)
        assert key not in {item.key for item in self.reopen(source)}

    def test_marking_while_iterating_yields_each_message_once(
        self, open_source: SourceFactory
    ) -> None:
        """A consumer that marks each message as it goes sees each once, and then none."""
        messages = sample_bounces()
        source = open_source(messages)
        seen = []
        for item in source:
            seen.append(item.key)
            source.mark_done(item.key)
        assert len(seen) == len(set(seen)) == len(messages)
        assert list(source) == []
        assert list(self.reopen(source)) == []

    def test_set_aside_hides_the_message_but_never_deletes_it(
        self, open_source: SourceFactory
    ) -> None:
        """A message set aside is not yielded again, also after reopening, and is kept aside."""
        source = open_source(sample_bounces())
        item = list(source)[2]
        source.set_aside(item.key, "no report found\nin this message")
        assert item.key not in {i.key for i in source}
        assert item.key not in {i.key for i in self.reopen(source)}
        kept = [_same_message(raw) for raw in self.set_aside_messages(source)]
        assert _same_message(item.raw) in kept

    def test_unknown_key_is_a_clear_error(self, open_source: SourceFactory) -> None:
        """Marking a key the source never gave raises a BroadcastError."""
        source = open_source(sample_bounces())
        with pytest.raises(BroadcastError):
            source.mark_done("no-such-message")


SourceFactory = Callable[[Sequence[bytes]], BounceSource]


# --------------------------------------------------------------------------- address books


class AddressBookContract:
    """What every AddressBook must do; subclass and implement ``make_address_book``."""

    def make_address_book(
        self, books: Mapping[str, Sequence[Contact]], stack: ExitStack
    ) -> AddressBook:
        """An address book holding ``books`` (id -> contacts); clean up via ``stack``."""
        raise NotImplementedError("subclasses return an address book holding the given books")

    BOOKS: Mapping[str, Sequence[Contact]] = MappingProxyType(
        {
            "book-1": (
                Contact("taro@example.jp", last_name="山田", first_name="太郎", company="ACME"),
                Contact("Hanako@Example.co.jp", last_name="佐藤", first_name="花子"),
                Contact("ann@example.com", last_name="Smith", first_name="Ann", contact_id="c-3"),
            ),
            "book-2": (Contact("solo@example.net"),),
        }
    )

    def test_contacts_come_back_whole_in_the_book_order(self) -> None:
        """Each book gives its own contacts, every field intact, in the book's order."""
        with ExitStack() as stack:
            book = self.make_address_book(self.BOOKS, stack)
            for book_id, expected in self.BOOKS.items():
                assert list(book.contacts(book_id)) == list(expected)

    def test_contacts_can_be_read_twice(self) -> None:
        """Reading a book twice gives the same contacts (not a spent iterator)."""
        with ExitStack() as stack:
            book = self.make_address_book(self.BOOKS, stack)
            assert list(book.contacts("book-1")) == list(book.contacts("book-1"))

    def test_unknown_book_is_a_clear_error(self) -> None:
        """Asking for a book that does not exist raises a BroadcastError naming it."""
        with ExitStack() as stack:
            book = self.make_address_book(self.BOOKS, stack)
            with pytest.raises(BroadcastError, match="no-such-book"):
                list(book.contacts("no-such-book"))

    def test_a_broadcast_takes_its_recipients_from_the_book(self) -> None:
        """BroadcastService.create_broadcast without recipients schedules the book's contacts."""
        with ExitStack() as stack:
            book = self.make_address_book(self.BOOKS, stack)
            svc = BroadcastService.open(
                "memory://",
                return_path="bounces@mail.example.com",
                signing_key=_SIGNING_KEY,
                address_book=book,
            )
            stack.callback(svc.close)
            bid = svc.create_broadcast(
                account_id="acme",
                inbox_id="support",
                sender="news@example.com",
                subject="お知らせ",
                text_body="本文",
                source=AddressBookSource("book-1"),
                scheduled_at=datetime(2026, 11, 1, tzinfo=UTC),
                actor=_OPERATOR,
            )
            page = svc.recipients(bid)
            assert [i.address for i in page.items] == [c.address for c in self.BOOKS["book-1"]]


_SIGNING_KEY = b"contract-signing-key-0123456789ab"
_OPERATOR = Actor("operator-1", inbox_roles={"support": InboxRole.OPERATOR})


# --------------------------------------------------------------------------- view stores


def _rows(views: Views, broadcast_id: UUID) -> list[RecipientRow]:
    return sorted(
        (r for r in views.recipients.values() if r.broadcast_id == broadcast_id),
        key=lambda r: r.position,
    )


def _unacknowledged(views: Views, broadcast_id: UUID, as_of: int) -> list[RecipientRow]:
    return [
        r
        for r in _rows(views, broadcast_id)
        if r.unacknowledged_error and (r.error_position or 0) <= as_of
    ]


def _split(history: Sequence[tuple[int, DomainEvent]], cuts: Sequence[int]) -> list[list[Any]]:
    edges = sorted({0, len(history), *(c % (len(history) + 1) for c in cuts)})
    return [list(history[a:b]) for a, b in itertools.pairwise(edges) if b > a]


# Every subclass runs the same property with its own store: that is the point of a
# contract, not the mistake this health check looks for.
_shared_by_subclasses = settings(suppress_health_check=[HealthCheck.differing_executors])


class ViewStoreContract:
    """What every ViewStore must do; subclass and implement ``make_store``.

    The fold (:func:`broadcast_domain.projections.views.fold`) is the oracle:
    after applying any history, in any batching, ``dump()`` equals the fold and
    every query answers what the fold says. Histories come from
    :func:`broadcast_domain.testing.strategies.histories`, so they are ones the
    library could have written. ``make_store`` is called once per example with
    a fresh ExitStack; the store it returns must be empty.
    """

    def make_store(self, stack: ExitStack) -> ViewStore:
        """An empty view store; close it (and remove its files) via ``stack``."""
        raise NotImplementedError("subclasses return an empty view store")

    def _store(self, stack: ExitStack) -> ViewStore:
        store = self.make_store(stack)
        stack.callback(store.close)
        return store

    def test_empty_store_is_at_position_zero_and_dumps_empty_views(self) -> None:
        """A new store has position 0 and dumps what the fold of nothing gives."""
        with ExitStack() as stack:
            store = self._store(stack)
            assert store.position() == 0
            assert compare_views(fold([]), store.dump()) == []

    def test_apply_at_the_expected_position_moves_to_the_last_event(self) -> None:
        """apply returns True and the position becomes the batch's last position."""
        history = _scripted_history()
        with ExitStack() as stack:
            store = self._store(stack)
            assert store.apply(history[:3], expected_position=0) is True
            assert store.position() == history[2][0]
            assert store.apply(history[3:], expected_position=history[2][0]) is True
            assert store.position() == history[-1][0]

    def test_apply_is_refused_when_the_position_moved(self) -> None:
        """A batch applied with a stale expected position returns False and changes nothing."""
        history = _scripted_history()
        with ExitStack() as stack:
            store = self._store(stack)
            assert store.apply(history[:4], expected_position=0)
            before = store.dump()
            assert store.apply(history[4:], expected_position=0) is False
            assert store.apply(history[4:], expected_position=history[-1][0]) is False
            assert store.position() == history[3][0]
            assert compare_views(before, store.dump()) == []

    def test_reset_drops_every_view_and_the_position(self) -> None:
        """After reset the store is empty again and takes the whole history anew."""
        history = _scripted_history()
        with ExitStack() as stack:
            store = self._store(stack)
            store.apply(history, expected_position=0)
            store.reset()
            assert store.position() == 0
            assert compare_views(fold([]), store.dump()) == []
            assert store.apply(history, expected_position=0)
            assert compare_views(fold(history), store.dump()) == []

    def test_a_bulk_acknowledgement_is_the_fold_of_its_events_or_refused(self) -> None:
        """apply_acknowledgements of errors read as unacknowledged gives the fold of its
        events; one naming a row that is not such an error, or at a moved position,
        returns False and changes nothing."""
        history, bulk, not_errors = _bulk_acknowledgement_case()
        last = history[-1][0]
        with ExitStack() as stack:
            store = self._store(stack)
            assert store.apply(history, expected_position=0)
            for wrong in not_errors:
                assert not store.apply_acknowledgements(wrong, expected_position=last)
            assert not store.apply_acknowledgements(bulk, expected_position=last - 1)
            assert compare_views(fold(history), store.dump()) == []
            assert store.apply_acknowledgements(bulk, expected_position=last)
            assert store.position() == bulk.positions[-1]
            assert compare_views(fold(history + bulk.events()), store.dump()) == []

    def test_a_replacement_takes_the_place_of_the_views_at_its_commit(self) -> None:
        """What ``replacing()`` is given (a history replayed recipient by recipient, in
        several ``add`` calls) is what the store holds after the commit, the fold of that
        history, and later batches apply on top; until the commit, and when the block
        ends without one (an error), the live views answer as before."""
        history = _scripted_history()
        cut = len(history) - 2
        rows, sent, views = replay_all(history[:cut])
        with ExitStack() as stack:
            store = self._store(stack)
            assert store.apply(history[:3], expected_position=0)
            live = store.dump()
            with pytest.raises(RuntimeError, match="the replay failed"):
                _replace_then_fail(store, rows, sent)
            assert compare_views(live, store.dump()) == []
            with store.replacing() as target:
                target.add(rows[:1], sent[:1])
                target.add(rows[1:], sent[1:])
                assert compare_views(live, store.dump()) == []
                target.commit(views)
            assert store.position() == history[cut - 1][0]
            assert compare_views(fold(history[:cut]), store.dump()) == []
            for row in rows:
                assert store.recipient(row.id) == row
            assert store.apply(history[cut:], expected_position=history[cut - 1][0])
            assert compare_views(fold(history), store.dump()) == []

    def test_a_replacement_keeps_the_latest_sent_event_of_a_message_id(self) -> None:
        """Of two Message-IDs given to a replacement with the same text, the one of the
        later Sent event names the recipient, whichever came first."""
        first, second = UUID(int=1), UUID(int=2)
        with ExitStack() as stack:
            store = self._store(stack)
            with store.replacing() as target:
                target.add([], [("<a@example.com>", first, 9), ("<b@example.com>", first, 3)])
                target.add([], [("<a@example.com>", second, 5), ("<b@example.com>", second, 4)])
                target.commit(Views(position=9))
            assert store.recipient_by_message_id("<a@example.com>") == first
            assert store.recipient_by_message_id("<b@example.com>") == second

    @_shared_by_subclasses
    @given(history=histories(), cuts=st.lists(st.integers(0, 10_000), max_size=4))
    def test_dump_equals_the_fold_in_any_batching(
        self, history: list[tuple[int, DomainEvent]], cuts: list[int]
    ) -> None:
        """Any history applied in any batches dumps exactly the fold of the history."""
        with ExitStack() as stack:
            store = self._store(stack)
            for batch in _split(history, cuts):
                assert store.apply(batch, expected_position=store.position())
            assert store.position() == (history[-1][0] if history else 0)
            assert compare_views(fold(history), store.dump()) == []

    @_shared_by_subclasses
    @given(history=histories(), data=st.data())
    def test_queries_answer_what_the_fold_says(
        self, history: list[tuple[int, DomainEvent]], data: st.DataObject
    ) -> None:
        """Every query (states, pages, keyword, status, due, errors, months) matches the fold."""
        views = fold(history)
        with ExitStack() as stack:
            store = self._store(stack)
            store.apply(history, expected_position=0)
            for account_id, account in views.accounts.items():
                assert store.account(account_id) == account
            for (account_id, year, month), count in views.monthly.items():
                assert store.monthly_count(account_id, year, month) == count
            for message_id, rid in views.message_ids.items():
                assert store.recipient_by_message_id(message_id) == rid
            for rid, recipient in views.recipients.items():
                assert store.recipient(rid) == recipient
            for bid, broadcast in views.broadcasts.items():
                assert store.broadcast(bid) == broadcast
                self._check_broadcast_queries(store, views, bid, data)
            self._check_broadcast_lists(store, views, data)

    def _check_broadcast_queries(
        self, store: ViewStore, views: Views, bid: UUID, data: st.DataObject
    ) -> None:
        rows = _rows(views, bid)
        assert store.counts(bid) == views.counts.get(bid, Counts())
        assert list(store.iter_recipients(bid)) == rows
        assert list(store.iter_result_cells(bid)) == [cells_of(r) for r in rows]
        status = data.draw(st.none() | st.sampled_from(list(DeliveryStatus)))
        texts = [r.search for r in rows]
        keyword = data.draw(
            st.none()
            | st.sampled_from(texts).flatmap(
                lambda t: st.tuples(st.integers(0, len(t)), st.integers(1, 4)).map(
                    lambda ab: t[ab[0] : ab[0] + ab[1]].replace("\x1f", "")
                )
            )
        )
        keyword = keyword or None
        matching = [
            r
            for r, text in zip(rows, texts, strict=True)
            if (status is None or r.status is status) and (keyword is None or keyword in text)
        ]
        limit = data.draw(st.integers(1, 3))
        offset = data.draw(st.integers(0, len(rows)))
        page, total = store.recipient_page(
            bid, keyword=keyword, status=status, offset=offset, limit=limit
        )
        assert (page, total) == (matching[offset : offset + limit], len(matching))
        now = max(r.status_updated_at for r in rows if r.status_updated_at) + timedelta(
            minutes=data.draw(st.sampled_from([0, 11, 600]))
        )
        due = [r for r in rows if r.is_due(now)]
        assert store.due_recipients(bid, now, limit) == due[:limit]
        after = data.draw(st.sampled_from([-1, *(r.position for r in rows)]))
        assert (
            store.due_recipients(bid, now, limit, after=after)
            == [r for r in due if r.position > after][:limit]
        )
        as_of = data.draw(st.integers(0, views.position))
        errors = _unacknowledged(views, bid, as_of)
        assert store.error_page(bid, as_of=as_of, offset=offset, limit=limit) == (
            errors[offset : offset + limit],
            len(errors),
        )
        assert list(store.iter_unacknowledged(bid, as_of)) == errors
        assert list(store.iter_unacknowledged_versions(bid, as_of)) == [
            (r.id, r.version) for r in errors
        ]
        assert list(store.iter_result_cells(bid, unacknowledged_as_of=as_of)) == [
            cells_of(r) for r in errors
        ]

    def _check_broadcast_lists(self, store: ViewStore, views: Views, data: st.DataObject) -> None:
        for inbox_id in {b.inbox_id for b in views.broadcasts.values()}:
            statuses = data.draw(
                st.none() | st.frozensets(st.sampled_from(list(BroadcastStatus)), min_size=1)
            )
            expected = [
                b
                for b in views.broadcasts.values()
                if b.inbox_id == inbox_id and (statuses is None or b.status in statuses)
            ]
            listed, total = store.list_broadcasts(inbox_id, statuses, 0, 1000)
            assert total == len(expected)
            assert sorted(b.id for b in listed) == sorted(b.id for b in expected)
            created = [b.created_at for b in listed]
            assert created == sorted(created, reverse=True), "newest created first"
            paged = []
            for offset in range(0, max(total, 1), 2):
                paged += store.list_broadcasts(inbox_id, statuses, offset, 2)[0]
            assert paged == listed, "pages are slices of one stable order"
        if views.broadcasts:
            now = max(b.scheduled_at for b in views.broadcasts.values())
            due = store.due_broadcasts(now)
            expected_ids = {
                b.id
                for b in views.broadcasts.values()
                if b.scheduled_at <= now
                and b.status
                in (BroadcastStatus.SCHEDULED, BroadcastStatus.SENDING, BroadcastStatus.PAUSED)
            }
            assert {b.id for b in due} == expected_ids
            assert [b.scheduled_at for b in due] == sorted(b.scheduled_at for b in due)


def _scripted_history() -> list[tuple[int, DomainEvent]]:
    """A short history with a success, an error, an acknowledgement and a monthly count."""
    h = HistoryBuilder()
    h.configure_account("acme", timezone="Asia/Tokyo")
    people = [
        Contact(f"user{i}@example.com", last_name="山田", first_name=str(i)) for i in range(3)
    ]
    bid = h.create_broadcast(people)
    h.start_sending(bid)
    for contact, code in zip(people, (250, 550, 451), strict=True):
        h.attempt(bid, contact.address)
        h.reply(bid, contact.address, code, f"{code} reply")
    h.acknowledge(bid, people[1].address)
    return h.history


def _replace_then_fail(
    store: ViewStore, rows: Sequence[RecipientRow], sent: Sequence[SentMessage]
) -> None:
    with store.replacing() as target:
        target.add(rows, sent)
        raise RuntimeError("the replay failed")


def _bulk_acknowledgement_case() -> tuple[
    list[tuple[int, DomainEvent]], BulkAcknowledgement, list[BulkAcknowledgement]
]:
    """A history with three unacknowledged errors, their bulk acknowledgement as
    ``acknowledge_errors`` records it (next versions, one time, the next positions),
    and bulk acknowledgements that each name one row that is not such an error."""
    h = HistoryBuilder()
    people = [Contact(f"user{i}@example.com") for i in range(5)]
    bid = h.create_broadcast(people)
    h.start_sending(bid)
    for contact, code in zip(people, (550, 550, 550, 250, 550), strict=True):
        h.attempt(bid, contact.address)
        h.reply(bid, contact.address, code, f"{code} reply")
    h.acknowledge(bid, people[4].address)
    h.advance(minutes=1)
    rows = [h.recipient(bid, c.address) for c in people]
    start = len(h.history) + 1

    def bulk(named: list[tuple[UUID, int]]) -> BulkAcknowledgement:
        return BulkAcknowledgement(
            bid,
            [rid for rid, _ in named],
            [version for _, version in named],
            range(start, start + len(named)),
            h.now,
            "operator-1",
        )

    errors = [(r.id, r.version + 1) for r in rows[:3]]
    wrong = [
        bulk([*errors, (rows[3].id, rows[3].version + 1)]),  # a success
        bulk([*errors, (rows[4].id, rows[4].version + 1)]),  # acknowledged already
        bulk([*errors[:2], (rows[2].id, rows[2].version + 2)]),  # another version
        bulk([errors[0], *errors]),  # named twice
    ]
    return list(h.history), bulk(errors), wrong


# --------------------------------------------------------------------------- whole stores


class StoreContract:
    """A scripted scenario run end to end through ``BroadcastService`` on a store URL.

    Subclass and implement ``store_url(stack)`` (a fresh, empty store; clean up
    via ``stack``); set ``persistent = False`` for a store that does not
    survive closing (``memory://``). The scenario: an account with a time zone,
    a broadcast of four recipients, one dispatch through FakeTransport (one
    accepted, one rejected 550, one deferred 451 then accepted, one dropped then
    accepted), a failure report for the accepted one by VERP token, a duplicate
    of it, acknowledgement of every error, and a second dispatch after the
    backoff.
    """

    persistent: bool = True

    def store_url(self, stack: ExitStack) -> str:
        """The URL of a fresh, empty store."""
        raise NotImplementedError("subclasses return the URL of an empty store")

    def _open(self, url: str, clock: FakeClock, stack: ExitStack) -> BroadcastService:
        svc = BroadcastService.open(
            url, return_path="bounces@mail.example.com", signing_key=_SIGNING_KEY, clock=clock
        )
        stack.callback(svc.close)
        return svc

    def _scenario(self, stack: ExitStack) -> tuple[str, FakeClock, UUID, BroadcastService]:
        from broadcast_domain.testing.fakes import FakeTransport

        url = self.store_url(stack)
        clock = FakeClock()
        svc = self._open(url, clock, stack)
        svc.configure_account("acme", monthly_limit=100, timezone="Asia/Tokyo")
        people = ["ok", "gone", "later", "cut"]
        bid = svc.create_broadcast(
            account_id="acme",
            inbox_id="support",
            sender="news@example.com",
            subject="お知らせ",
            text_body="本文",
            source=AddressBookSource("book-1"),
            recipients=[Contact(f"{p}@example.net", last_name="山田") for p in people],
            scheduled_at=clock(),
            actor=_OPERATOR,
        )
        transport = FakeTransport(
            reject=["gone@example.net"], defer={"later@example.net": 1}, drop=["cut@example.net"]
        )
        first = svc.dispatch_due(transport)
        assert (first.sent, first.succeeded, first.errors, first.retried) == (4, 1, 1, 2)
        transport.accept("cut@example.net")
        [accepted] = transport.sent_to("ok@example.net")
        report = failure_report(
            "ok@example.net",
            status="5.2.2",
            reported_at=clock(),
            verp_token=verp_token_of(accepted.envelope_from),
        )
        assert svc.record_bounce(report).kind == "applied"
        assert svc.record_bounce(report).kind == "duplicate"
        clock.advance(hours=1)
        second = svc.dispatch_due(transport)
        assert (second.sent, second.succeeded) == (2, 2)
        errors = svc.unacknowledged_errors(bid)
        assert svc.acknowledge_errors(bid, actor=_OPERATOR, as_of=errors.as_of) == 2
        return url, clock, bid, svc

    def test_scenario_counts_add_up(self) -> None:
        """The scripted scenario ends with 2 successes, 2 acknowledged errors, month count 4."""
        with ExitStack() as stack:
            _, clock, bid, svc = self._scenario(stack)
            s = svc.summary(bid)
            assert (s.recipients, s.succeeded, s.errors, s.scheduled, s.sending) == (4, 2, 2, 0, 0)
            assert s.unacknowledged_errors == 0
            year, month = month_of(clock(), "Asia/Tokyo")
            assert svc.monthly_usage("acme", year=year, month=month).count == 4
            assert svc.verify_projections() == []

    def test_rebuilt_projections_equal_the_live_ones(self) -> None:
        """Dropping and replaying every projection gives the same answers."""
        with ExitStack() as stack:
            _, _, bid, svc = self._scenario(stack)
            before = (svc.summary(bid), svc.recipients(bid).items)
            svc.rebuild_projections()
            assert (svc.summary(bid), svc.recipients(bid).items) == before
            assert svc.verify_projections() == []

    def test_a_reopened_store_reads_the_same(self) -> None:
        """Closing and reopening the store keeps every event and projection (persistent stores)."""
        if not self.persistent:
            pytest.skip("this store does not outlive the process")
        with ExitStack() as stack:
            url, clock, bid, svc = self._scenario(stack)
            before = (svc.summary(bid), svc.recipients(bid).items)
            svc.close()
            again = self._open(url, clock, stack)
            assert (again.summary(bid), again.recipients(bid).items) == before
            assert again.verify_projections() == []
