"""Hostile input: whatever arrives, the result is an outcome or a BroadcastError, and a
refused input records nothing.

Covers recipient CSV import (random bytes, mixed encodings, huge fields,
formula cells), forged and tampered VERP tokens, tokens from another store or
another signing key, and CR/LF smuggled into anything that becomes a header.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PureWindowsPath
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, assume, given, settings

from broadcast_adapters.csv_io import CsvCodec
from broadcast_domain import (
    Actor,
    AddressBookRole,
    AddressBookSource,
    BounceReport,
    BroadcastError,
    BroadcastService,
    Contact,
    CsvSource,
    DeliveryStatus,
    InboxRole,
    InvalidInput,
)
from broadcast_domain.application.results_io import content_disposition
from broadcast_domain.application.validation import fold_contacts
from broadcast_domain.domain.events import RecipientEvent, Sent
from broadcast_domain.domain.messages import build_message
from broadcast_domain.domain.recipient import recipient_id
from broadcast_domain.domain.verp import Verp
from broadcast_domain.ports import ImportedCsv
from broadcast_domain.testing.bounces import build_dsn
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.fakes import FakeTransport

KEY_A = b"service-a-signing-key-0123456789"
KEY_B = b"service-b-signing-key-9876543210"
RETURN_PATH = "bounces@mail.example.com"
OPERATOR = Actor(
    "operator-1",
    inbox_roles={"support": InboxRole.OPERATOR},
    address_book_roles={"book-1": AddressBookRole.ADMIN},
)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
FUZZ = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
ADDRESSES = [f"user{i}@example.com" for i in range(4)]


# --------------------------------------------------------------------------- recipient CSV

HEADERS = [
    "姓,名,メールアドレス,会社名",
    "last_name,first_name,email,company",
    "宛先",
    "\ufeff姓,名,宛先",
]
CELL_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["=1+1", "+SUM(A1)", "-2", "@cmd", "\t=x", '=HYPERLINK("http://x")']),
    st.sampled_from(["山田", "ﾔﾏﾀﾞ", "髙橋", "①", "𠮷野", "a@example.com", "x@ｅxample.com"]),
    st.text(alphabet="\"',\r\n;\t ", max_size=6),
)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A plausible recipient file, rows encoded one by one in UTF-8 or CP932 (so mixed)."""
    lines = [draw(st.sampled_from(HEADERS))]
    for i in range(draw(st.integers(0, 8))):
        cells = [draw(CELL_TEXT) for _ in range(draw(st.integers(1, 5)))]
        if draw(st.booleans()):
            cells.insert(draw(st.integers(0, len(cells))), f"row{i}@example.com")
        lines.append(",".join(cells))
    out = b""
    for line in lines:
        encoding = draw(st.sampled_from(["utf-8", "cp932", "utf-8-sig"]))
        out += line.encode(encoding, "replace") + draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    return out


@st.composite
def mutated_csv(draw: st.DrawFn) -> bytes:
    """A plausible file with a few bytes flipped, cut or inserted."""
    data = bytearray(draw(csv_files()))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


def parse(data: bytes, *, max_bytes: int = 1_000_000) -> ImportedCsv | None:
    """Parse, allowing only a BroadcastError; every kept contact must be fit to send to."""
    try:
        result = CsvCodec().parse_recipients(data, max_rows=10_000, max_bytes=max_bytes)
    except BroadcastError as e:
        refused: BroadcastError | None = e
    else:
        refused = None
    if refused is not None:
        assert str(refused), "a refusal must say what was wrong"
        return None
    fold_contacts(result.contacts)  # raises InvalidInput if a kept contact would be refused
    for problem in result.problems:
        assert problem.line >= 2 and problem.reason
    return result


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_as_a_recipient_file_give_contacts_or_a_broadcast_error(data: bytes) -> None:
    """Arbitrary bytes import as valid contacts with problems, or raise a BroadcastError."""
    parse(data)


@FUZZ
@given(st.one_of(csv_files(), mutated_csv()))
def test_mixed_encodings_and_broken_rows_give_contacts_or_a_broadcast_error(data: bytes) -> None:
    """Mixed UTF-8/CP932 rows, odd quoting and flipped bytes never escape as another error."""
    parse(data)


@FUZZ
@given(st.sampled_from(["=1+1", "+1", "-1", "@SUM(A1)", "=cmd|'/c calc'!A1"]))
def test_formula_cells_are_imported_as_plain_text(formula: str) -> None:
    """A formula in a name cell is kept verbatim as text; it is never evaluated or dropped."""
    data = f"姓,名,宛先\r\n{formula},太郎,a@example.com\r\n".encode()
    result = parse(data)
    assert result is not None
    assert [c.last_name for c in result.contacts] == [formula]


@pytest.mark.parametrize("size", [100_000, 2_000_000])
def test_a_huge_field_is_a_row_problem_or_a_clear_file_error(size: int) -> None:
    """A huge cell or a file over the byte limit gives a BroadcastError or a row problem."""
    data = ("姓,名,宛先\r\n" + "山" * size + ",x,a@example.com\r\nb,c,b@example.com\r\n").encode()
    result = parse(data, max_bytes=1_000_000)
    if size > 1_000_000:
        assert result is None
    else:
        assert result is not None
        assert "b@example.com" in [c.address for c in result.contacts]


def test_huge_header_line_is_a_clear_error() -> None:
    """A header line of a megabyte with no address column raises CsvImportError."""
    assert parse(("x" * 900_000 + "\r\na\r\n").encode()) is None


# --------------------------------------------------------------------------- VERP tokens


def sent_service(url: str, key: bytes, clock: FakeClock) -> tuple[BroadcastService, Any]:
    """A service with one broadcast whose recipients were all handed over (250)."""
    svc = BroadcastService.open(url, return_path=RETURN_PATH, signing_key=key, clock=clock)
    bid = svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="s",
        text_body="b",
        source=AddressBookSource("book-1"),
        recipients=[Contact(a) for a in ADDRESSES],
        scheduled_at=clock(),
        actor=OPERATOR,
    )
    svc.dispatch_due(FakeTransport())
    return svc, bid


@pytest.fixture(scope="module")
def service_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BroadcastService, Any]]:
    """Service A on its own SQLite file, every recipient SUCCEEDED."""
    url = f"sqlite:///{tmp_path_factory.mktemp('a') / 'a.db'}"
    svc, bid = sent_service(url, KEY_A, FakeClock(T0))
    yield svc, bid
    svc.close()


def report_with_token(token: str, address: str = ADDRESSES[0]) -> BounceReport:
    return BounceReport(
        recipient=address,
        status="5.1.1",
        diagnostic="550 5.1.1 no such user",
        permanent=True,
        reported_at=T0,
        verp_token=token,
    )


def assert_changes_nothing(svc: BroadcastService, bid: Any, token: str) -> None:
    """A report carrying ``token`` is unmatched and writes no event; every status stays."""
    before = svc.events.max_position()
    outcome = svc.record_bounce(report_with_token(token), received_at=T0 + timedelta(minutes=1))
    assert outcome.kind == "unmatched"
    assert svc.events.max_position() == before
    statuses = {i.status for i in svc.recipients(bid).items}
    assert statuses == {DeliveryStatus.SUCCEEDED}


@FUZZ
@given(st.text(max_size=80))
def test_forged_tokens_never_change_a_status(service_a: Any, token: str) -> None:
    """A random token is unmatched and records nothing."""
    svc, bid = service_a
    assert_changes_nothing(svc, bid, token)


@FUZZ
@given(
    index=st.integers(0, len(ADDRESSES) - 1),
    flips=st.lists(st.integers(0, 26 * 8 - 1), min_size=1, max_size=3, unique=True),
)
def test_bit_flips_of_a_real_token_never_change_a_status(
    service_a: Any, index: int, flips: list[int]
) -> None:
    """Flipping any bits of a genuine token's id or signature makes it unmatched."""
    svc, bid = service_a
    token = svc.verp.token(recipient_id(bid, ADDRESSES[index]))
    raw = bytearray(base64.b32decode(token.upper() + "=" * (-len(token) % 8)))
    for bit in flips:
        raw[bit // 8] ^= 1 << (bit % 8)
    forged = base64.b32encode(bytes(raw)).decode().rstrip("=").lower()
    assert_changes_nothing(svc, bid, forged)


@FUZZ
@given(data=st.data())
def test_edited_token_text_matches_only_when_it_spells_the_same_token(
    service_a: Any, data: st.DataObject
) -> None:
    """Any edit of a genuine token's text (a character replaced, cut, added) is unmatched,
    unless the edit only changed letter case."""
    svc, bid = service_a
    token = svc.verp.token(recipient_id(bid, ADDRESSES[0]))
    at = data.draw(st.integers(0, len(token) - 1))
    edit = data.draw(st.sampled_from(["replace", "cut", "add"]))
    char = data.draw(st.characters(codec="ascii"))
    if edit == "replace":
        forged = token[:at] + char + token[at + 1 :]
    elif edit == "cut":
        forged = token[:at] + token[at + 1 :]
    else:
        forged = token[:at] + char + token[at:]
    assume(forged.strip().lower() != token)
    assert svc.verp.verify(forged) is None
    assert_changes_nothing(svc, bid, forged)


@pytest.mark.parametrize("key_b", [KEY_B, KEY_A], ids=["other-key", "same-key"])
def test_a_token_from_another_store_never_matches(
    service_a: Any, tmp_path: Path, key_b: bytes
) -> None:
    """A report for service A's recipient, given to service B on another store, is unmatched,
    whether B signs with another key or the same one, even when B sends to the same address."""
    svc_a, bid_a = service_a
    token = svc_a.verp.token(recipient_id(bid_a, ADDRESSES[0]))
    svc_b, bid_b = sent_service(f"sqlite:///{tmp_path / 'b.db'}", key_b, FakeClock(T0))
    try:
        assert (svc_b.verp.verify(token) is None) == (key_b != KEY_A)
        assert_changes_nothing(svc_b, bid_b, token)
        by_message_id = BounceReport(
            recipient=ADDRESSES[0],
            status="5.1.1",
            diagnostic="550",
            permanent=True,
            reported_at=T0,
            message_id=_message_id(svc_a, bid_a),
        )
        before = svc_b.events.max_position()
        assert svc_b.record_bounce(by_message_id).kind == "unmatched"
        assert svc_b.events.max_position() == before
    finally:
        svc_b.close()
    assert {i.status for i in svc_a.recipients(bid_a).items} == {DeliveryStatus.SUCCEEDED}


def _message_id(svc: BroadcastService, bid: Any) -> str:
    sent = [e for e in svc.history(bid, ADDRESSES[0]) if isinstance(e, Sent)]
    return sent[-1].message_id


def test_verp_tokens_are_bound_to_their_key() -> None:
    """One recipient id signed under two keys gives two tokens, each valid only under its own."""
    rid = recipient_id(uuid.uuid4(), "a@example.com")
    a, b = Verp(RETURN_PATH, KEY_A), Verp(RETURN_PATH, KEY_B)
    assert a.token(rid) != b.token(rid)
    assert a.verify(a.token(rid)) == rid and b.verify(a.token(rid)) is None


# --------------------------------------------------------------------------- headers

BREAKS = st.sampled_from(["\r", "\n", "\r\n", "\r\nBcc: victim@example.net", "\nX-Injected: 1"])


@st.composite
def with_break(draw: st.DrawFn) -> str:
    base = draw(st.text(max_size=10))
    at = draw(st.integers(0, len(base)))
    return base[:at] + draw(BREAKS) + base[at:]


@pytest.fixture(scope="module")
def memory_service() -> Iterator[BroadcastService]:
    svc = BroadcastService.open(
        "memory://", return_path=RETURN_PATH, signing_key=KEY_A, clock=FakeClock(T0)
    )
    yield svc
    svc.close()


@FUZZ
@given(
    field=st.sampled_from(["subject", "sender", "last_name", "first_name", "company"]),
    value=with_break(),
)
def test_cr_or_lf_in_anything_that_becomes_a_header_is_refused_and_records_nothing(
    memory_service: BroadcastService, field: str, value: str
) -> None:
    """A line break in the subject, sender or a contact's names is InvalidInput naming the field,
    and the event log does not move."""
    svc = memory_service
    contact = {"address": "a@example.com", "last_name": "", "first_name": "", "company": ""}
    params: dict[str, Any] = {"subject": "s", "sender": "news@example.com"}
    if field in contact:
        contact[field] = value
    else:
        params[field] = value
    before = svc.events.max_position()
    with pytest.raises(InvalidInput) as raised:
        svc.create_broadcast(
            account_id="acme",
            inbox_id="support",
            text_body="b",
            source=AddressBookSource("book-1"),
            recipients=[Contact(**contact)],
            scheduled_at=T0,
            actor=OPERATOR,
            **params,
        )
    assert field in str(raised.value)
    assert svc.events.max_position() == before


@FUZZ
@given(
    field=st.sampled_from(["subject", "sender_name", "last_name", "first_name", "header"]),
    value=with_break(),
)
def test_the_message_builder_refuses_cr_or_lf_in_any_header_value(field: str, value: str) -> None:
    """build_message raises InvalidInput for a line break in any header value it writes."""
    contact = Contact(
        "a@example.com",
        last_name=value if field == "last_name" else "",
        first_name=value if field == "first_name" else "",
    )
    with pytest.raises(InvalidInput):
        build_message(
            sender="news@example.com",
            sender_name=value if field == "sender_name" else None,
            recipient=contact,
            subject=value if field == "subject" else "s",
            text_body="b",
            html_body=None,
            message_id="<m1@mail.example.com>",
            envelope_from="bounces+t@mail.example.com",
            date=T0,
            extra_headers={"List-Unsubscribe": value} if field == "header" else None,
        )


# --------------------------------------------------------------------------- through the facade

UNSAFE_NAME_PARTS = st.sampled_from(
    [
        "../",
        "..\\",
        "/etc/passwd",
        "C:\\Users\\x\\",
        "\r\n",
        "\n",
        "\r",
        "\x00",
        "\x1b[2J",
        '"',
        "\u202e",
        "..",
        ".",
        " ",
        "名簿",
        "members.csv",
        ".csv",
        "%2e%2e%2f",
    ]
)


@st.composite
def hostile_file_names(draw: st.DrawFn) -> str:
    parts = draw(st.lists(UNSAFE_NAME_PARTS | st.text(max_size=8), min_size=1, max_size=6))
    return "".join(parts)


@FUZZ
@given(data=st.one_of(st.binary(max_size=1500), csv_files(), mutated_csv()))
def test_parse_recipient_csv_gives_contacts_or_a_broadcast_error_and_records_nothing(
    memory_service: BroadcastService, data: bytes
) -> None:
    """The facade's CSV import returns contacts fit to send to or raises a BroadcastError;
    either way the event log does not move."""
    svc = memory_service
    before = svc.events.max_position()
    try:
        imported = svc.parse_recipient_csv(data)
    except BroadcastError as e:
        refused: BroadcastError | None = e
    else:
        refused = None
        fold_contacts(imported.contacts)
    assert refused is None or str(refused)
    assert svc.events.max_position() == before


@FUZZ
@given(name=hostile_file_names())
def test_hostile_csv_file_names_never_reach_a_path_or_a_header(
    memory_service: BroadcastService, name: str
) -> None:
    """Whatever the imported file was called, the result file name has no directory part,
    line break, control character or quote, and the download header has no line break."""
    svc = memory_service
    try:
        bid = svc.create_broadcast(
            account_id="acme",
            inbox_id="support",
            sender="news@example.com",
            subject="s",
            text_body="b",
            source=CsvSource(name),
            recipients=[Contact("a@example.com")],
            scheduled_at=T0,
            actor=OPERATOR,
        )
    except InvalidInput:
        assume(False)
    for kind in ("results", "errors"):
        file_name = svc.results_file_name(bid, kind)
        assert file_name.endswith(f"_{kind}.csv")
        assert Path(file_name).name == file_name and PureWindowsPath(file_name).name == file_name
        assert not any(ch in file_name for ch in '/\\"')
        assert all(ch.isprintable() for ch in file_name)
        assert not file_name.startswith(".")
        header = content_disposition(file_name)
        assert "\r" not in header and "\n" not in header


# --------------------------------------------------------------------------- raw bounce messages

KINDS = {"applied", "duplicate", "late", "unmatched", "ignored"}


def _broken_mime(dsn: bytes, how: str, size: int) -> bytes:
    """``dsn`` damaged in one of the ways hostile or broken mailers damage messages."""
    head, _, body = dsn.partition(b"\n\n")
    found = re.search(rb'; boundary="([^"]+)"', dsn)
    assert found is not None, "build_dsn writes a multipart/report with a boundary"
    boundary = found.group(1)
    if how == "no-boundary":
        return dsn.replace(found.group(0), b"")
    if how == "unterminated":
        return dsn[: dsn.rindex(b"--" + boundary + b"--")]
    if how == "huge-header":
        return b"X-Huge: " + b"a" * size * 1000 + b"\n" + dsn
    if how == "many-headers":
        return b"".join(b"X-N%d: v\n" % i for i in range(size * 20)) + dsn
    if how == "folded-forever":
        return b"Subject: x\n" + b" y\n" * (size * 50) + dsn
    if how == "nested":
        wrapped = dsn
        for _ in range(min(size, 200)):
            wrapped = b"Content-Type: message/rfc822\n\n" + wrapped
        return b"MIME-Version: 1.0\n" + wrapped
    if how == "bad-base64":
        return dsn.replace(
            b"Content-Type: message/delivery-status\n",
            b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n",
        )
    if how == "bad-charset":
        # The notice (the first part) in an unknown charset, with bytes that are not UTF-8.
        parts = dsn.split(b"--" + boundary + b"\n")
        parts[1] = (
            b"Content-Type: text/plain; charset=x-no-such-charset\n\n"
            + "これは\udcff the mail system.".encode("utf-8", "surrogateescape")
            + b"\n\n"
        )
        return (b"--" + boundary + b"\n").join(parts)
    if how == "huge-recipient":
        return dsn.replace(
            b"Final-Recipient: rfc822; ", b"Final-Recipient: rfc822; " + b"x" * size * 500
        )
    if how == "nul-bytes":
        return dsn.replace(b"Status: ", b"Status: \x00")
    return head + b"\n\n" + body[: size % max(1, len(body))]


@pytest.fixture(scope="module")
def dispatched() -> Iterator[tuple[BroadcastService, Any, list[Any]]]:
    """A memory service whose four recipients were handed over, with the messages sent."""
    clock = FakeClock(T0)
    svc = BroadcastService.open(
        "memory://", return_path=RETURN_PATH, signing_key=KEY_A, clock=clock
    )
    bid = svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="s",
        text_body="b",
        source=AddressBookSource("book-1"),
        recipients=[Contact(a) for a in ADDRESSES],
        scheduled_at=T0,
        actor=OPERATOR,
    )
    transport = FakeTransport()
    svc.dispatch_due(transport)
    yield svc, bid, transport.sent
    svc.close()


@FUZZ
@given(
    how=st.sampled_from(
        [
            "no-boundary",
            "unterminated",
            "huge-header",
            "many-headers",
            "folded-forever",
            "nested",
            "bad-base64",
            "bad-charset",
            "huge-recipient",
            "nul-bytes",
            "cut",
        ]
    ),
    size=st.integers(1, 1000),
    index=st.integers(0, len(ADDRESSES) - 1),
)
def test_broken_mime_and_huge_headers_give_outcomes_or_a_broadcast_error(
    dispatched: Any, how: str, size: int, index: int
) -> None:
    """A DSN with broken MIME, huge or countless headers or deep nesting gives outcomes or a
    BroadcastError; an error records nothing, and nothing but an applied report changes a
    recipient."""
    svc, _bid, sent = dispatched
    dsn = build_dsn(sent[index], status="5.2.2", reply_code="552", diagnostic="full")
    raw = _broken_mime(dsn, how, size)
    assert raw != dsn, f"{how} left the DSN as it was"
    before = svc.events.max_position()
    try:
        outcomes = svc.record_bounce_message(raw)
    except BroadcastError as e:
        refused: BroadcastError | None = e
    else:
        refused = None
    if refused is not None:
        assert str(refused)
        assert svc.events.max_position() == before
        return
    assert outcomes and {o.kind for o in outcomes} <= KINDS
    if not any(o.kind == "applied" for o in outcomes):
        new = svc.events.read(before, 100)
        assert not any(isinstance(e, RecipientEvent) for _, e in new)


@pytest.mark.parametrize("raw", [None, "text, not bytes", 42])
def test_a_raw_bounce_that_is_not_bytes_is_invalid_input_and_records_nothing(
    dispatched: Any, raw: Any
) -> None:
    """Anything but bytes is refused with InvalidInput before anything is recorded."""
    svc, _bid, _sent = dispatched
    before = svc.events.max_position()
    with pytest.raises(InvalidInput):
        svc.record_bounce_message(raw)
    assert svc.events.max_position() == before
