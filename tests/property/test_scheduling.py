"""Scheduling streams its recipients: the list rule's events, and nothing on bad input."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcast_domain import (
    Actor,
    AddressBookSource,
    BroadcastService,
    Contact,
    InboxRole,
    InvalidInput,
)
from broadcast_domain.application import scheduling
from broadcast_domain.application.scheduling import RecipientRows, prepare_recipients
from broadcast_domain.application.validation import check_address, check_header_field
from broadcast_domain.codec import AttrsMapper
from broadcast_domain.domain.recipient import schedule
from broadcast_domain.domain.values import normalise_address
from broadcast_domain.testing.strategies import contacts

MAPPER = AttrsMapper()
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
OPERATOR = Actor("op", inbox_roles={"support": InboxRole.OPERATOR})


@contextlib.contextmanager
def small_chunks(chunk: int, in_memory: int) -> Iterator[None]:
    """Chunks of ``chunk`` recipients and at most ``in_memory`` rows held before spilling."""
    saved = scheduling.CHUNK, scheduling.ROWS_IN_MEMORY
    scheduling.CHUNK, scheduling.ROWS_IN_MEMORY = chunk, in_memory
    try:
        yield
    finally:
        scheduling.CHUNK, scheduling.ROWS_IN_MEMORY = saved


def list_at_once(items: list[Contact]) -> list[Contact]:
    """The rule as it reads, on a whole list: check each contact, keep the first of each key."""
    seen: set[str] = set()
    kept: list[Contact] = []
    for i, c in enumerate(items):
        address = check_address(c.address, f"recipients[{i}].address")
        for name in ("last_name", "first_name", "company"):
            check_header_field(getattr(c, name), f"recipients[{i}].{name}")
        key = normalise_address(address)
        if key not in seen:
            seen.add(key)
            kept.append(Contact(address, c.last_name, c.first_name, c.company, c.contact_id))
    return kept


_odd = st.builds(
    Contact,
    address=st.sampled_from(
        [" a@example.com", "A@Example.COM", "a@example.com", "ü@例え.jp", "Ü@例え.jp"]
    ),
    last_name=st.sampled_from(["", "山田"]),
    first_name=st.sampled_from(["", "太郎"]),
    company=st.sampled_from(["", "ACME"]),
    contact_id=st.none() | st.just("c-1"),
)
_invalid = st.sampled_from(
    [
        Contact("bad"),
        Contact("a@example.com\r\n"),
        Contact("x" * 65 + "@example.com"),
        Contact("a@example.com", last_name="x\ny"),
        Contact("a@example.com", last_name="a\x00"),
        Contact("a@example.com", first_name="\r"),
    ]
)
# Duplicates come from a small pool drawn once per example, re-drawn with other names.
_pools = st.lists(contacts(), min_size=1, max_size=4)


@st.composite
def recipient_lists(draw: Any) -> list[Contact]:
    """Contacts with duplicates (other case, spaces, other names), odd addresses, and
    now and then one invalid contact somewhere."""
    pool = draw(_pools)
    picks = st.sampled_from(pool).flatmap(
        lambda c: st.builds(
            Contact,
            address=st.sampled_from([c.address, c.address.upper(), f" {c.address}"]),
            last_name=st.sampled_from(["", "佐藤", c.last_name]),
            first_name=st.just(c.first_name),
            company=st.just(c.company),
            contact_id=st.none() | st.just("dup"),
        )
    )
    items: list[Contact] = draw(st.lists(contacts() | picks | picks | _odd, max_size=14))
    if draw(st.integers(0, 3)) == 0:
        items.insert(draw(st.integers(0, len(items))), draw(_invalid))
    return items


def rows_of(prepared: RecipientRows) -> list[tuple[str, int, str, bytes]]:
    with prepared:
        return [row for chunk in prepared.chunks() for row in chunk]


@given(
    recipient_lists(),
    st.uuids(),
    st.integers(1, 5),
    st.integers(0, 6),
    st.sampled_from([UTC, timezone(timedelta(hours=9))]),
)
def test_streamed_scheduling_records_what_the_whole_list_rule_records(
    items: list[Contact], bid: UUID, chunk: int, in_memory: int, zone: timezone
) -> None:
    """Chunked, spilled scheduling gives the list rule's events byte for byte (same ids, same
    winner of each duplicate, same positions), or the same InvalidInput."""
    now = NOW.astimezone(zone)
    try:
        expected: Any = [MAPPER.to_row(e) for e in schedule(bid, "acme", list_at_once(items), now)]
    except InvalidInput as e:
        expected = str(e)
    with small_chunks(chunk, in_memory):
        try:
            actual: Any = rows_of(
                prepare_recipients(iter(items), broadcast_id=bid, account_id="acme", now=now)
            )
        except InvalidInput as e:
            actual = str(e)
    assert actual == expected


@given(st.lists(contacts(), min_size=1, max_size=12), st.data())
def test_a_contact_id_that_is_not_text_is_refused_by_its_index(
    items: list[Contact], data: st.DataObject
) -> None:
    """A contact id must be text or None; any other value is InvalidInput naming its row."""
    index = data.draw(st.integers(0, len(items) - 1))
    bad = data.draw(st.sampled_from([42, 1.5, b"id", ["x"]]))
    c = items[index]
    items[index] = Contact(c.address, c.last_name, c.first_name, c.company, bad)  # type: ignore[arg-type]
    # Only the rows before it may hold other errors: they have none (valid contacts).
    with small_chunks(3, 4), pytest.raises(InvalidInput) as raised:
        rows_of(prepare_recipients(iter(items), broadcast_id=UUID(int=1), account_id="a", now=NOW))
    assert raised.value.field == f"recipients[{index}].contact_id"


def _create(svc: BroadcastService, recipients: Any) -> UUID:
    return svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="s",
        text_body="b",
        source=AddressBookSource("book-1"),
        recipients=recipients,
        scheduled_at=NOW,
        actor=OPERATOR,
    )


_BAD = [
    (Contact("not an address"), "address"),
    (Contact("x@example.com", last_name="a\nb"), "last_name"),
    (Contact("x@example.com", company="\x00"), "company"),
    ("x@example.com", ""),
]


@settings(max_examples=25)
@given(
    st.integers(1, 40),
    st.data(),
    st.sampled_from(_BAD),
    st.booleans(),
    st.sampled_from(["memory://", "sqlite"]),
)
def test_a_bad_recipient_anywhere_records_nothing(
    n: int, data: st.DataObject, bad: tuple[object, str], lazily: bool, store: str
) -> None:
    """Whatever chunk it falls in, and from a list or a generator, one bad recipient raises
    InvalidInput naming it and leaves the event log as it was."""
    index = data.draw(st.integers(0, n))
    contact, part = bad
    items: list[object] = [Contact(f"user{i}@example.com", "山田", str(i)) for i in range(n)]
    items.insert(index, contact)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'e.db'}" if store == "sqlite" else store
        svc = BroadcastService.open(
            url, return_path="b@mail.example.com", signing_key=b"k" * 32, clock=lambda: NOW
        )
        try:
            _create(svc, [Contact("first@example.com")])
            before = svc.events.max_position()
            recipients: Any = (c for c in items) if lazily else items
            with small_chunks(7, 10), pytest.raises(InvalidInput) as raised:
                _create(svc, recipients)
            where = f"recipients[{index}]" + (f".{part}" if part else "")
            assert raised.value.field == where
            assert where in str(raised.value)
            assert svc.events.max_position() == before
            assert svc.list_broadcasts("support").total == 1
        finally:
            svc.close()


def test_an_iterable_that_fails_midway_records_nothing(tmp_path: Path) -> None:
    """The host's own error while the recipients are read propagates, and nothing is written."""

    class BookGone(Exception):
        pass

    def book() -> Iterator[Contact]:
        for i in range(25):
            yield Contact(f"user{i}@example.com")
        raise BookGone

    with BroadcastService.open(
        f"sqlite:///{tmp_path / 'e.db'}", return_path="b@mail.example.com", signing_key=b"k" * 32
    ) as svc:
        with small_chunks(10, 10), pytest.raises(BookGone):
            _create(svc, book())
        assert svc.events.max_position() == 0
        assert svc.list_broadcasts("support").total == 0


_EMPTY: tuple[Contact, ...] = ()


@pytest.mark.parametrize("recipients", [[], iter(_EMPTY), (c for c in _EMPTY)])
def test_no_recipients_at_all_is_refused(recipients: Any) -> None:
    """An empty list or an empty generator is InvalidInput and records nothing."""
    with BroadcastService.open(
        "memory://", return_path="b@mail.example.com", signing_key=b"k" * 32
    ) as svc:
        with pytest.raises(InvalidInput, match="at least one recipient"):
            _create(svc, recipients)
        assert svc.events.max_position() == 0


@pytest.mark.parametrize("recipients", [5, Contact("a@example.com")])
def test_recipients_that_are_not_iterable_are_refused(recipients: Any) -> None:
    """Something that is not an iterable of contacts is InvalidInput naming ``recipients``."""
    with BroadcastService.open(
        "memory://", return_path="b@mail.example.com", signing_key=b"k" * 32
    ) as svc:
        with pytest.raises(InvalidInput) as raised:
            _create(svc, recipients)
        assert raised.value.field == "recipients"
        assert svc.events.max_position() == 0


@given(st.lists(st.integers(0, 30), min_size=1, max_size=12), st.integers(0, 40))
def test_rows_come_back_in_order_and_only_the_bound_stays_in_memory(
    sizes: list[int], in_memory: int
) -> None:
    """Chunks beyond the in-memory bound go to the temporary file and come back in order."""
    chunks = [
        [(f"{c:02d}{i:030x}", 1, "t", b"s%d" % i) for i in range(size)]
        for c, size in enumerate(sizes)
    ]
    with small_chunks(10, in_memory), RecipientRows() as prepared:
        for rows in chunks:
            prepared.add(rows)
        assert prepared.count == sum(sizes)
        assert sum(map(len, prepared._held)) <= in_memory
        assert list(prepared.chunks()) == chunks


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_encoded_rows_read_back_as_the_events_and_a_taken_version_conflicts(
    tmp_path: Path, store: str
) -> None:
    """put_rows records what put would (same events, in order) and refuses a taken version."""
    from broadcast_domain.application.eventlog import EventLog, VersionConflict, parse_store_url

    url = f"sqlite:///{tmp_path / 'e.db'}" if store == "sqlite" else "memory://"
    log = EventLog(parse_store_url(url))
    try:
        items = [Contact(f"user{i}@example.com", "山田", str(i)) for i in range(5)]
        bid = UUID(int=7)
        events = schedule(bid, "acme", items, NOW)
        log.put_rows([MAPPER.to_row(e) for e in events])
        assert [e for _, e in log.read(0, 10)] == events
        with pytest.raises(VersionConflict):
            log.put_rows([MAPPER.to_row(events[2])])
        assert log.max_position() == 5
    finally:
        log.close()
