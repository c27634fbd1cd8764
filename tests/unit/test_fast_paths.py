"""The fast paths taken for large broadcasts give exactly what the general paths give."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcast_domain.application.eventlog import (
    BatchSQLiteRecorder,
    EventLog,
    VersionConflict,
    parse_store_url,
)
from broadcast_domain.application.validation import check_address, check_header_field, fold_contacts
from broadcast_domain.codec import (
    AttrsMapper,
    attempt_rows_encoder,
    make_converter,
    scheduled_rows_encoder,
    success_rows_encoder,
)
from broadcast_domain.domain.events import (
    DomainEvent,
    ErrorAcknowledged,
    Scheduled,
    Sent,
    Succeeded,
)
from broadcast_domain.domain.recipient import recipient_id, recipient_id_hasher, recipient_id_maker
from broadcast_domain.domain.values import Contact, normalise_address
from broadcast_domain.errors import InvalidInput
from broadcast_domain.testing.strategies import addresses, contacts, domain_events

MAPPER = AttrsMapper()
CONVERTER = make_converter()


@given(domain_events())
def test_lean_encoder_writes_the_bytes_of_the_whole_unstructured_event(event: DomainEvent) -> None:
    """The per-class encoder equals unstructuring everything and dropping id and version."""
    whole = CONVERTER.unstructure(event)
    del whole["originator_id"], whole["originator_version"]
    assert MAPPER.encode_state(event) == orjson.dumps(whole)


@given(domain_events())
def test_a_row_holds_what_a_stored_event_holds(event: DomainEvent) -> None:
    """to_row is to_stored_event as a tuple with the id in hex."""
    stored = MAPPER.to_stored_event(event)
    assert isinstance(stored.originator_id, UUID)
    assert MAPPER.to_row(event) == (
        stored.originator_id.hex,
        stored.originator_version,
        stored.topic,
        stored.state,
    )


_ACK_TIMES = [
    datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
    datetime(2026, 11, 2, 18, 0, tzinfo=ZoneInfo("Asia/Tokyo")),  # the same instant
    datetime(2026, 11, 2, 9, 0, 0, 1, tzinfo=UTC),
]


@st.composite
def acknowledgement_runs(draw: st.DrawFn) -> list[DomainEvent]:
    """Acknowledgements sharing (or not) their time and actor objects, among other events."""
    events: list[DomainEvent] = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 4)) == 0:
            events.append(draw(domain_events()))
            continue
        # Equal but distinct objects too: a new str or datetime each time.
        at = draw(st.sampled_from(_ACK_TIMES))
        events.append(
            ErrorAcknowledged(
                originator_id=draw(st.uuids()),
                originator_version=draw(st.integers(1, 9)),
                timestamp=at if draw(st.booleans()) else at.replace(),
                acknowledged_by=draw(st.sampled_from(["op", "op-2", "".join(["o", "p"])])),
            )
        )
    return events


@given(acknowledgement_runs())
def test_rows_of_a_batch_are_the_rows_of_each_event(events: list[DomainEvent]) -> None:
    """to_rows (an acknowledgement's payload encoded once per shared time and actor)
    gives to_row of each event, byte for byte."""
    assert MAPPER.to_rows(events) == [MAPPER.to_row(e) for e in events]


@given(st.uuids(), st.text(max_size=40) | addresses())
def test_recipient_id_maker_gives_the_ids_of_recipient_id(broadcast: UUID, address: str) -> None:
    """The precomputed maker returns an equal UUID (value, version, hash, text) to recipient_id."""
    made = recipient_id_maker(broadcast)(address)
    plain = recipient_id(broadcast, address)
    assert made == plain
    assert hash(made) == hash(plain)
    assert str(made) == str(plain)
    assert made.version == 5


@given(st.uuids(), st.lists(st.text(max_size=40) | addresses(), max_size=5))
def test_recipient_id_hasher_gives_the_ids_of_recipient_id_from_fold_keys(
    broadcast: UUID, items: list[str]
) -> None:
    """From each address's fold key, the hasher gives the int of recipient_id's UUID."""
    keys = [normalise_address(a) for a in items]
    assert recipient_id_hasher(broadcast)(keys) == [recipient_id(broadcast, a).int for a in items]


_any_text = st.text(max_size=20)
_columns = st.lists(
    st.tuples(_any_text, _any_text, _any_text, _any_text, st.none() | _any_text), max_size=5
)


@given(
    st.uuids(),
    _any_text,
    st.datetimes(timezones=st.timezones()),
    _columns,
    st.integers(0, 2**40),
)
def test_scheduled_rows_are_the_rows_of_the_scheduled_events(
    broadcast: UUID,
    account: str,
    when: datetime,
    people: list[tuple[str, str, str, str, str | None]],
    first: int,
) -> None:
    """The event-free row encoder gives to_row of the Scheduled events, byte for byte."""
    ids = [recipient_id(broadcast, str(i)) for i in range(len(people))]
    columns = tuple(list(column) for column in zip(*people, strict=True)) or ([], [], [], [], [])
    rows = scheduled_rows_encoder(broadcast, account, when)([i.hex for i in ids], columns, first)  # type: ignore[arg-type]
    assert rows == [
        MAPPER.to_row(
            Scheduled(
                originator_id=rid,
                originator_version=1,
                timestamp=when,
                broadcast_id=broadcast,
                account_id=account,
                address=address,
                last_name=last,
                first_name=first_name,
                company=company,
                contact_id=contact_id,
                position=position,
            )
        )
        for position, (rid, (address, last, first_name, company, contact_id)) in enumerate(
            zip(ids, people, strict=True), first
        )
    ]


_times = st.datetimes(timezones=st.timezones())
_versions = st.integers(1, 2**31)


@given(st.uuids(), _versions, _versions, _any_text, _times, _times)
def test_attempt_rows_are_the_rows_of_the_sent_events(
    rid: UUID, version: int, attempt: int, message_id: str, when: datetime, lease: datetime
) -> None:
    """The claim's event-free row encoder gives to_row of the Sent event, byte for byte."""
    row = attempt_rows_encoder(when, lease)(rid, version, attempt, message_id)
    assert row == MAPPER.to_row(
        Sent(
            originator_id=rid,
            originator_version=version,
            timestamp=when,
            attempt=attempt,
            message_id=message_id,
            lease_until=lease,
        )
    )


@given(st.uuids(), _versions, _versions, st.integers(-1, 999), st.text(max_size=60), _times)
def test_success_rows_are_the_rows_of_the_succeeded_events(
    rid: UUID, version: int, attempt: int, code: int, text: str, when: datetime
) -> None:
    """The 2xx reply's event-free row encoder gives to_row of the Succeeded event."""
    row = success_rows_encoder(when)(rid, version, attempt, code, text)
    assert row == MAPPER.to_row(
        Succeeded(
            originator_id=rid,
            originator_version=version,
            timestamp=when,
            attempt=attempt,
            reply_code=code,
            reply_text=text,
        )
    )


def _slow_fold(items: list[Contact]) -> tuple[list[Contact], int]:
    # The rule without the fast path: check_address and check_header_field on every field.
    seen: set[str] = set()
    kept: list[Contact] = []
    dups = 0
    from broadcast_domain.domain.values import normalise_address

    for i, c in enumerate(items):
        address = check_address(c.address, f"recipients[{i}].address")
        for name in ("last_name", "first_name", "company"):
            check_header_field(getattr(c, name), f"recipients[{i}].{name}")
        key = normalise_address(address)
        if key in seen:
            dups += 1
            continue
        seen.add(key)
        kept.append(
            c
            if address == c.address
            else Contact(address, c.last_name, c.first_name, c.company, c.contact_id)
        )
    return kept, dups


_odd_contacts = st.builds(
    Contact,
    address=addresses()
    | st.sampled_from([" a@example.com", "a@example.com\r\n", "bad", "ü@例え.jp"]),
    last_name=st.sampled_from(["", "山田", "x\ny", "a\x00"]),
    first_name=st.sampled_from(["", "太郎", "\r"]),
    company=st.sampled_from(["", "ACME"]),
)


@given(st.lists(contacts() | _odd_contacts, max_size=8))
def test_fold_contacts_decides_like_the_checks_it_skips(items: list[Contact]) -> None:
    """The fast path keeps, folds and rejects exactly as checking every field would."""
    try:
        expected: tuple[list[Contact], int] | str = _slow_fold(items)
    except InvalidInput as e:
        expected = str(e)
    try:
        actual: tuple[list[Contact], int] | str = fold_contacts(items)
    except InvalidInput as e:
        actual = str(e)
    assert actual == expected


def test_sqlite_event_log_uses_the_batch_recorder_and_keeps_positions_in_order(
    tmp_path: Path,
) -> None:
    """A batch is written in one statement and read back in the order it was put."""
    from datetime import UTC, datetime
    from uuid import uuid4

    from broadcast_domain.domain.events import Scheduled

    log = EventLog(parse_store_url(f"sqlite:///{tmp_path / 'events.db'}"))
    try:
        assert isinstance(log.recorder, BatchSQLiteRecorder)
        bid = uuid4()
        now = datetime(2026, 1, 1, tzinfo=UTC)
        events = [
            Scheduled(
                originator_id=uuid4(),
                originator_version=1,
                timestamp=now,
                broadcast_id=bid,
                account_id="acme",
                address=f"u{i}@example.com",
                position=i,
            )
            for i in range(50)
        ]
        log.put(events)
        read = log.read(0, 100)
        assert [e for _, e in read] == events
        assert [p for p, _ in read] == list(range(1, 51))
        with pytest.raises(VersionConflict):
            log.put([events[3], events[7]])
        assert log.max_position() == 50
    finally:
        log.close()
    conn = sqlite3.connect(tmp_path / "events.db")
    assert conn.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0] == 50
    conn.close()


@given(contacts(), st.text(max_size=30).filter(lambda s: "\r" not in s and "\n" not in s))
def test_messages_are_the_same_bytes_with_the_remembering_header_registry(
    recipient: Contact, subject: str
) -> None:
    """build_message writes identical bytes whether header classes are remembered or remade."""
    from datetime import UTC, datetime
    from email import policy as email_policy

    from broadcast_domain.domain import messages

    kwargs = {
        "sender": "news@example.com",
        "sender_name": "ニュース",
        "recipient": recipient,
        "subject": subject,
        "text_body": "本文です\nline two\n",
        "html_body": "<p>本文</p>",
        "message_id": "<abc@example.com>",
        "envelope_from": "bounces@example.com",
        "date": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    try:
        fast: bytes | str = messages.build_message(**kwargs)  # type: ignore[arg-type]
    except InvalidInput as e:
        fast = str(e)
    saved = messages._POLICY
    messages._POLICY = email_policy.SMTP.clone(cte_type="7bit")
    try:
        try:
            plain: bytes | str = messages.build_message(**kwargs)  # type: ignore[arg-type]
        except InvalidInput as e:
            plain = str(e)
    finally:
        messages._POLICY = saved
    # multipart boundaries are random: compare everything else
    boundary = re.compile(rb"=+\d+==")
    if isinstance(fast, bytes) and isinstance(plain, bytes):
        fast, plain = boundary.sub(b"B", fast), boundary.sub(b"B", plain)
    assert fast == plain


def test_texts_from_other_servers_hold_no_nul_however_the_event_is_made() -> None:
    """A NUL in a reply, a diagnostic or a report id becomes U+FFFD: when the event is
    built, when a stored event that holds one is decoded, and in the dispatcher's
    event-free rows (PostgreSQL's text columns refuse NUL; the views show these)."""
    from broadcast_domain.domain.recipient import Bounced

    when = datetime(2026, 1, 1, tzinfo=UTC)
    rid = UUID(int=7)
    bounced = Bounced(
        originator_id=rid,
        originator_version=3,
        timestamp=when,
        source="dsn",
        status="5.1.1",
        diagnostic="550 no\x00such user",
        permanent=True,
        report_id="<r\x00@x>",
        reported_at=when,
        received_at=when,
    )
    assert (bounced.diagnostic, bounced.report_id) == ("550 no\ufffdsuch user", "<r\ufffd@x>")
    oid, version, topic, state = MAPPER.to_row(
        Succeeded(
            originator_id=rid,
            originator_version=3,
            timestamp=when,
            attempt=1,
            reply_code=250,
            reply_text="ok",
        )
    )
    raw = state.replace(b'"ok"', b'"o\\u0000k"')  # stored before the converter existed
    decoded = MAPPER.decode(topic, oid, version, raw)
    assert isinstance(decoded, Succeeded) and decoded.reply_text == "o\ufffdk"
    assert success_rows_encoder(when)(rid, 3, 1, 250, "o\x00k") == MAPPER.to_row(decoded)
