"""Results: recipient search, CSV export and import, error acknowledgement, permissions,
past status bars and histories, on memory:// and on a SQLite file."""

from __future__ import annotations

import codecs
import io
import os
import tempfile
import tracemalloc
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcast_domain import (
    Actor,
    AddressBookRole,
    AddressBookSource,
    BounceReport,
    BroadcastService,
    BroadcastStatus,
    Contact,
    CsvExportError,
    CsvImportError,
    CsvSource,
    DeliveryStatus,
    InboxRole,
    InvalidInput,
    PermissionDenied,
    Summary,
)
from broadcast_domain.application.results_io import content_disposition
from broadcast_domain.domain.events import Sent
from broadcast_domain.ports import CsvProblem, ImportedCsv
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.machine import ScriptedTransport

SIGNING_KEY = b"results-signing-key-0123456789ab"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # 18:00 in Asia/Tokyo
OPERATOR = Actor(
    "op-1",
    inbox_roles={"support": InboxRole.OPERATOR},
    address_book_roles={"book-1": AddressBookRole.ADMIN},
)

STORES = ["memory", "sqlite"]


@contextmanager
def open_service(kind: str, clock: FakeClock, **kwargs: Any) -> Iterator[BroadcastService]:
    """A service on a fresh memory:// store or a fresh SQLite file."""
    with tempfile.TemporaryDirectory() as folder:
        url = "memory://" if kind == "memory" else f"sqlite:///{os.path.join(folder, 'r.db')}"
        svc = BroadcastService.open(
            url,
            return_path="bounces@mail.example.com",
            signing_key=SIGNING_KEY,
            clock=clock,
            **kwargs,
        )
        try:
            yield svc
        finally:
            svc.close()


@pytest.fixture(params=STORES)
def clock_and_service(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[FakeClock, BroadcastService]]:
    clock = FakeClock(T0)
    with open_service(request.param, clock) as svc:
        svc.configure_account("acme", timezone="Asia/Tokyo")
        yield clock, svc


def create(
    svc: BroadcastService,
    clock: FakeClock,
    contacts: Sequence[Contact],
    source: AddressBookSource | CsvSource | None = None,
    subject: str = "お知らせ",
) -> UUID:
    return svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject=subject,
        text_body="本文",
        source=source or CsvSource("members.csv"),
        recipients=contacts,
        scheduled_at=clock(),
        actor=OPERATOR,
    )


def dispatch(
    svc: BroadcastService, replies: dict[str, tuple[int, str]], max_messages: int | None = None
) -> None:
    transport = ScriptedTransport()
    transport.replies.update(replies)
    svc.dispatch_due(transport, max_messages=max_messages)


def message_id(svc: BroadcastService, bid: UUID, address: str) -> str:
    sent = [e for e in svc.history(bid, address) if isinstance(e, Sent)]
    return sent[-1].message_id


def failure_report(svc: BroadcastService, bid: UUID, address: str, at: datetime) -> BounceReport:
    return BounceReport(
        recipient=address,
        status="5.2.2",
        diagnostic="552 mailbox full",
        permanent=True,
        reported_at=at,
        message_id=message_id(svc, bid, address),
    )


def small_broadcast(svc: BroadcastService, clock: FakeClock) -> UUID:
    """a succeeds, b is rejected then acknowledged, c stays scheduled."""
    bid = create(
        svc,
        clock,
        [
            Contact("a@example.com", last_name="山田", first_name="太郎", company="=SUM(A1:A3)"),
            Contact("b@example.com", last_name="Smith", first_name='Jr., "Bob"', company="ACME"),
            Contact("c@example.com", last_name="佐藤", first_name="花子"),
        ],
    )
    clock.advance(minutes=1)
    dispatch(svc, {"b@example.com": (550, "5.1.1 user unknown")}, max_messages=2)
    clock.advance(minutes=4)
    assert svc.acknowledge_errors(bid, actor=OPERATOR) == 1
    return bid


EXPECTED_ROWS = (
    "配信成功,,山田,太郎,a@example.com,'=SUM(A1:A3),250 2.0.0 OK,2026/11/02 18:01:00\r\n"
    '配信エラー,2026/11/02 18:05:00,Smith,"Jr., ""Bob""",b@example.com,ACME,'
    "550 5.1.1 user unknown,2026/11/02 18:01:00\r\n"
    "予約済み,,佐藤,花子,c@example.com,,,2026/11/02 18:00:00\r\n"
)


# --- export --------------------------------------------------------------------------------


def test_result_csv_bytes_are_exact(clock_and_service: tuple[FakeClock, BroadcastService]) -> None:
    """The default export is a BOM, the Japanese header and RFC 4180 rows with neutralised
    formulas and Tokyo times."""
    clock, svc = clock_and_service
    bid = small_broadcast(svc, clock)
    out = io.BytesIO()
    assert svc.export_results_csv(bid, out, actor=OPERATOR) == 3
    expected = (
        codecs.BOM_UTF8
        + "状況,エラー確認日時,姓,名,宛先,会社名,詳細メッセージ,取得日時\r\n".encode()
        + EXPECTED_ROWS.encode()
    )
    assert out.getvalue() == expected


def test_english_headers_replace_only_the_header_row(
    clock_and_service: tuple[FakeClock, BroadcastService],
) -> None:
    """headers="en" writes the English column names and the same rows."""
    clock, svc = clock_and_service
    bid = small_broadcast(svc, clock)
    out = io.BytesIO()
    svc.export_results_csv(bid, out, actor=OPERATOR, encoding="utf-8", headers="en")
    assert out.getvalue().decode("utf-8") == (
        "status,error_acknowledged_at,last_name,first_name,address,company,detail_message,"
        "status_updated_at\r\n" + EXPECTED_ROWS
    )


def test_cp932_export_decodes_to_the_same_text(
    clock_and_service: tuple[FakeClock, BroadcastService],
) -> None:
    """encoding="cp932" writes no BOM and decodes as CP932 to the same text."""
    clock, svc = clock_and_service
    bid = small_broadcast(svc, clock)
    out = io.BytesIO()
    svc.export_results_csv(bid, out, actor=OPERATOR, encoding="cp932")
    data = out.getvalue()
    assert not data.startswith(codecs.BOM_UTF8)
    assert data.decode("cp932") == (
        "状況,エラー確認日時,姓,名,宛先,会社名,詳細メッセージ,取得日時\r\n" + EXPECTED_ROWS
    )


def test_an_export_is_recorded_with_who_kind_position_and_rows(
    clock_and_service: tuple[FakeClock, BroadcastService],
) -> None:
    """Each successful export adds a ResultsExported entry to export_history."""
    clock, svc = clock_and_service
    bid = small_broadcast(svc, clock)
    position = svc.catch_up()
    svc.export_results_csv(bid, io.BytesIO(), actor=OPERATOR)
    clock.advance(minutes=1)
    svc.export_unacknowledged_errors_csv(bid, io.BytesIO(), actor=OPERATOR)
    history = svc.export_history(bid)
    assert [(h.kind, h.exported_by, h.rows) for h in history] == [
        ("results", "op-1", 3),
        ("errors", "op-1", 0),
    ]
    assert history[0].as_of == position
    assert history[1].as_of > position  # the first export's own event came in between
    assert history[0].at == T0 + timedelta(minutes=5)
    assert history[1].at == T0 + timedelta(minutes=6)


def test_unencodable_name_names_row_and_column_and_records_nothing(
    clock_and_service: tuple[FakeClock, BroadcastService],
) -> None:
    """A name CP932 cannot hold raises CsvExportError naming the row, the column and the
    recipient, and no export is recorded."""
    clock, svc = clock_and_service
    bid = create(
        svc,
        clock,
        [Contact("a@example.com", last_name="山田"), Contact("b@example.com", last_name="𠮷野")],
    )
    out = io.BytesIO()
    with pytest.raises(CsvExportError) as caught:
        svc.export_results_csv(bid, out, actor=OPERATOR, encoding="cp932")
    assert caught.value.row == 2
    assert caught.value.column == "姓"
    assert "b@example.com" in str(caught.value)
    assert svc.export_history(bid) == []
    # The same data exports fine as UTF-8.
    assert svc.export_results_csv(bid, io.BytesIO(), actor=OPERATOR) == 2


class CountingSink(io.RawIOBase):
    """A binary target that keeps only the number of bytes written."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.size += len(data)
        return len(data)


@pytest.mark.slow
def test_export_memory_does_not_grow_with_the_row_count() -> None:
    """On SQLite, exporting three times the rows peaks at about the same memory (streamed)."""
    clock = FakeClock(T0)
    peaks: list[int] = []
    with open_service("sqlite", clock) as svc:
        for n in (2_200, 6_600):
            bid = create(
                svc,
                clock,
                [
                    Contact(f"user{i}@example.com", "山田", "太郎", "株式会社ＡＢＣ")
                    for i in range(n)
                ],
            )
            svc.catch_up()
            sink = CountingSink()
            tracemalloc.start()
            try:
                assert svc.export_results_csv(bid, sink, actor=OPERATOR) == n  # type: ignore[arg-type]
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
            assert sink.size > n * 50
    assert peaks[1] < peaks[0] * 1.5, peaks


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"headers": "fr"}, "headers"),
        ({"headers": None}, "headers"),
        ({"encoding": "latin-1"}, "encoding"),
        ({"encoding": 932}, "encoding"),
    ],
)
def test_bad_export_options_write_and_record_nothing(
    clock_and_service: tuple[FakeClock, BroadcastService], kwargs: dict[str, Any], field: str
) -> None:
    """An unknown header set or encoding is InvalidInput naming the field; out stays empty."""
    clock, svc = clock_and_service
    bid = small_broadcast(svc, clock)
    before = svc.catch_up()
    for export in (svc.export_results_csv, svc.export_unacknowledged_errors_csv):
        out = io.BytesIO()
        with pytest.raises(InvalidInput) as caught:
            export(bid, out, actor=OPERATOR, **kwargs)
        assert caught.value.field == field
        assert out.getvalue() == b""
    assert svc.catch_up() == before


def test_a_text_mode_target_is_refused(
    clock_and_service: tuple[FakeClock, BroadcastService],
) -> None:
    """Exporting into a text stream is InvalidInput asking for binary mode."""
    clock, svc = clock_and_service
    bid = small_broadcast(svc, clock)
    with pytest.raises(InvalidInput, match="binary"):
        svc.export_results_csv(bid, io.StringIO(), actor=OPERATOR)  # type: ignore[arg-type]


def test_error_export_holds_the_errors_as_of_the_list(
    clock_and_service: tuple[FakeClock, BroadcastService],
) -> None:
    """The error CSV holds the unacknowledged errors read at as_of, not later ones."""
    clock, svc = clock_and_service
    bid = create(svc, clock, [Contact(f"u{i}@example.com", last_name=f"n{i}") for i in range(4)])
    clock.advance(minutes=1)
    dispatch(svc, {"u1@example.com": (550, "no"), "u2@example.com": (550, "no")})
    page = svc.unacknowledged_errors(bid)
    clock.advance(minutes=1)
    svc.record_bounce(failure_report(svc, bid, "u3@example.com", clock()))
    out = io.BytesIO()
    assert svc.export_unacknowledged_errors_csv(bid, out, actor=OPERATOR, as_of=page.as_of) == 2
    lines = out.getvalue().decode("utf-8-sig").splitlines()
    assert [line.split(",")[4] for line in lines[1:]] == ["u1@example.com", "u2@example.com"]
    assert svc.export_history(bid)[-1].as_of == page.as_of
    everything = io.BytesIO()
    assert svc.export_unacknowledged_errors_csv(bid, everything, actor=OPERATOR) == 3
    with pytest.raises(InvalidInput):
        svc.export_unacknowledged_errors_csv(bid, io.BytesIO(), actor=OPERATOR, as_of=10**9)


# --- acknowledgement -------------------------------------------------------------------------


def test_acknowledging_all_covers_every_page_in_few_writes(
    clock_and_service: tuple[FakeClock, BroadcastService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """120 errors over three pages are acknowledged by one call in a handful of writes, and
    an error recorded after the list was read stays unacknowledged."""
    clock, svc = clock_and_service
    addresses = [f"user{i:03d}@example.com" for i in range(125)]
    bid = create(svc, clock, [Contact(a) for a in addresses])
    clock.advance(minutes=1)
    dispatch(svc, dict.fromkeys(addresses[:120], (550, "5.1.1 unknown")))
    page = svc.unacknowledged_errors(bid)
    assert (page.total, page.pages, len(page.items)) == (120, 3, 50)
    assert len(svc.unacknowledged_errors(bid, page=3).items) == 20
    clock.advance(minutes=1)
    late = addresses[122]
    assert svc.record_bounce(failure_report(svc, bid, late, clock())).kind == "applied"

    puts: list[int] = []  # events per write, whether written as events or encoded rows
    real_put, real_put_rows = svc.events.put, svc.events.put_rows

    def counting_put(events: Sequence[Any]) -> Any:
        puts.append(len(events))
        return real_put(events)

    def counting_put_rows(rows: Sequence[Any]) -> Any:
        puts.append(len(rows))
        return real_put_rows(rows)

    monkeypatch.setattr(svc.events, "put", counting_put)
    monkeypatch.setattr(svc.events, "put_rows", counting_put_rows)
    assert svc.acknowledge_errors(bid, actor=OPERATOR, as_of=page.as_of) == 120
    assert sum(puts) == 120
    assert len(puts) <= 2
    summary = svc.summary(bid)
    assert summary.unacknowledged_errors == 1
    left = svc.unacknowledged_errors(bid)
    assert [item.address for item in left.items] == [late]
    assert svc.acknowledge_errors(bid, actor=OPERATOR, as_of=page.as_of) == 0


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=8),
    cut=st.integers(0, 8),
)
def test_acknowledging_as_of_a_time_takes_the_errors_recorded_up_to_it(
    steps: list[tuple[int, int]], cut: int
) -> None:
    """With an aware time as ``as_of``, exactly the errors recorded at or before it are
    acknowledged, whichever order the reports and the clock take."""
    clock = FakeClock(T0)
    with open_service("memory", clock) as svc:
        addresses = [f"u{i}@example.com" for i in range(6)]
        bid = create(svc, clock, [Contact(a) for a in addresses])
        dispatch(svc, {})
        recorded: list[tuple[datetime, str]] = []
        for index, minutes in steps:
            clock.advance(minutes=minutes + 1)
            outcome = svc.record_bounce(failure_report(svc, bid, addresses[index], clock()))
            if outcome.kind == "applied" and addresses[index] not in {a for _, a in recorded}:
                recorded.append((clock(), addresses[index]))
        moment = recorded[min(cut, len(recorded) - 1)][0] if recorded else T0
        expected = {a for at, a in recorded if at <= moment}
        assert svc.acknowledge_errors(bid, actor=OPERATOR, as_of=moment) == len(expected)
        left = {item.address for item in svc.unacknowledged_errors(bid, per_page=50).items}
        assert left == {a for _, a in recorded} - expected


def test_acknowledging_as_of_a_naive_time_is_refused(
    clock_and_service: tuple[FakeClock, BroadcastService],
) -> None:
    """A naive ``as_of`` is InvalidInput and acknowledges nothing."""
    clock, svc = clock_and_service
    bid = small_broadcast(svc, clock)
    with pytest.raises(InvalidInput):
        svc.acknowledge_errors(bid, actor=OPERATOR, as_of=datetime(2026, 11, 2))


# --- permissions -----------------------------------------------------------------------------


def _actors() -> list[tuple[str, Actor]]:
    actors = [("none", Actor("nobody"))]
    actors += [
        (f"inbox-{r.name}", Actor(f"inbox-{r.name}", inbox_roles={"support": r})) for r in InboxRole
    ]
    actors += [
        (f"book-{r.name}", Actor(f"book-{r.name}", address_book_roles={"book-1": r}))
        for r in AddressBookRole
    ]
    return actors


def _allowed(action: str, source: str, actor: Actor) -> tuple[bool, str]:
    inbox = actor.inbox_role("support")
    book = actor.address_book_role("book-1")
    if action == "acknowledge" or source == "csv":
        return inbox is not None and inbox >= InboxRole.OPERATOR, "InboxRole.OPERATOR"
    return book is not None and book >= AddressBookRole.ADMIN, "AddressBookRole.ADMIN"


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("source", ["address_book", "csv"])
@pytest.mark.parametrize("action", ["export_results", "export_errors", "acknowledge"])
def test_permission_matrix(store: str, source: str, action: str) -> None:
    """Every role (and none) on either source may or may not export or acknowledge as SPEC
    says; a refusal names the role and writes nothing."""
    clock = FakeClock(T0)
    with open_service(store, clock) as svc:
        for label, actor in _actors():
            src = AddressBookSource("book-1") if source == "address_book" else CsvSource("m.csv")
            bid = create(svc, clock, [Contact("a@example.com"), Contact("b@example.com")], src)
            clock.advance(minutes=1)
            dispatch(svc, {"a@example.com": (550, "5.1.1 unknown")})
            allowed, role = _allowed(action, source, actor)
            before = svc.catch_up()
            out = io.BytesIO()

            def run(actor: Actor = actor, bid: UUID = bid, out: io.BytesIO = out) -> int:
                if action == "export_results":
                    return svc.export_results_csv(bid, out, actor=actor)
                if action == "export_errors":
                    return svc.export_unacknowledged_errors_csv(bid, out, actor=actor)
                return svc.acknowledge_errors(bid, actor=actor)

            if not allowed:
                with pytest.raises(PermissionDenied) as caught:
                    run()
                assert caught.value.required == role, label
                assert role.split(".")[1] in str(caught.value)
                assert out.getvalue() == b""
                assert svc.catch_up() == before
                assert svc.summary(bid).unacknowledged_errors == 1
            else:
                expected = {"export_results": 2, "export_errors": 1, "acknowledge": 1}[action]
                assert run() == expected, label
                assert svc.catch_up() > before


# --- import ----------------------------------------------------------------------------------

IMPORT_TEXT = (
    "姓,名,メールアドレス,会社名\r\n"
    "山田,太郎,taro@example.jp,株式会社ＡＢＣ\r\n"
    "佐藤,花子,not-an-address,\r\n"
    "鈴木,一郎,TARO@example.jp,\r\n"
    "高橋,次郎\r\n"
    "田中,三郎,,\r\n"
    "伊藤,四郎,ｓｈｉｒｏ＠example.jp,\r\n"
)


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
        lambda t: t.encode("utf-8"),
        lambda t: t.encode("cp932"),
    ],
    ids=["utf-8-bom", "utf-8", "cp932"],
)
def test_import_keeps_good_rows_and_reports_bad_ones(encode: Callable[[str], bytes]) -> None:
    """Every encoding gives the same contacts, with each bad row reported by line."""
    with open_service("memory", FakeClock(T0)) as svc:
        imported = svc.parse_recipient_csv(encode(IMPORT_TEXT))
    assert [c.address for c in imported.contacts] == ["taro@example.jp", "shiro@example.jp"]
    assert imported.contacts[0] == Contact(
        "taro@example.jp", last_name="山田", first_name="太郎", company="株式会社ＡＢＣ"
    )
    assert [p.line for p in imported.problems] == [3, 4, 5, 6]
    reasons = [p.reason for p in imported.problems]
    assert "not-an-address" in reasons[0]
    assert "duplicate" in reasons[1]
    assert "line 2" in reasons[1]
    assert "fields" in reasons[2]
    assert "empty" in reasons[3]
    assert imported.duplicates == 1
    assert imported.rows == 6


def test_english_headers_are_accepted_on_import() -> None:
    """last_name/first_name/email/company headers import like the Japanese ones."""
    data = b"email,last_name,first_name,company,note\nA@Example.com,Doe,Jane,ACME,x\n"
    with open_service("memory", FakeClock(T0)) as svc:
        imported = svc.parse_recipient_csv(data)
    assert imported.contacts == (Contact("A@example.com", "Doe", "Jane", "ACME"),)
    assert imported.problems == ()
    assert imported.ignored_columns == ("note",)


@pytest.mark.parametrize(
    ("data", "kwargs", "words"),
    [
        (b"", {}, "empty"),
        (b"name,phone\nx,1\n", {}, "no address column"),
        (b"email\n" + b"a@example.com\n" * 3, {"max_rows": 2}, "limit"),
        (b"email\na@example.com\n", {"max_bytes": 5}, "limit"),
        (b'email\n"a@example.com\n', {}, "never closed"),
        (b"\xff\xfee\x00", {}, "UTF-16"),
    ],
)
def test_fatal_files_import_nothing(data: bytes, kwargs: dict[str, int], words: str) -> None:
    """An unusable file raises CsvImportError saying why."""
    with open_service("memory", FakeClock(T0)) as svc, pytest.raises(CsvImportError, match=words):
        svc.parse_recipient_csv(data, **kwargs)


@pytest.mark.parametrize(
    ("data", "kwargs", "field"),
    [
        ("email\na@example.com\n", {}, "data"),
        (b"email\na@example.com\n", {"max_rows": 0}, "max_rows"),
        (b"email\na@example.com\n", {"max_bytes": True}, "max_bytes"),
    ],
)
def test_import_arguments_are_checked(data: Any, kwargs: dict[str, Any], field: str) -> None:
    """Text instead of bytes, or a non-positive limit, is InvalidInput naming the argument."""
    with open_service("memory", FakeClock(T0)) as svc, pytest.raises(InvalidInput) as caught:
        svc.parse_recipient_csv(data, **kwargs)
    assert caught.value.field == field


class RecordingCodec:
    """A CsvCodec that records what it was asked and answers with one contact."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int, int]] = []

    def parse_recipients(self, data: bytes, *, max_rows: int, max_bytes: int) -> ImportedCsv:
        self.calls.append((data, max_rows, max_bytes))
        return ImportedCsv(
            contacts=(Contact("x@example.com"),), problems=(CsvProblem(3, "bad"),), duplicates=0
        )

    def write_rows(self, rows: Any, out: Any, *, header: Any, encoding: str) -> int:
        raise AssertionError("not used")


def test_an_explicit_codec_replaces_the_default() -> None:
    """csv_codec= given to open() is the codec that parses, with the limits passed through."""
    codec = RecordingCodec()
    with open_service("memory", FakeClock(T0), csv_codec=codec) as svc:
        imported = svc.parse_recipient_csv(b"whatever", max_rows=7, max_bytes=99)
    assert codec.calls == [(b"whatever", 7, 99)]
    assert imported.contacts == (Contact("x@example.com"),)
    assert [(p.line, p.reason) for p in imported.problems] == [(3, "bad")]


# --- file names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("members.csv", "members_results.csv"),
        ("C:\\Users\\yamada\\会員名簿.CSV", "会員名簿_results.csv"),
        ("../../etc/passwd", "passwd_results.csv"),
        ("list\r\nSet-Cookie: x.csv", "listSet-Cookie_ x_results.csv"),
        ('a"b<c>|d?.txt', "a_b_c__d__results.csv"),
        ("\u202ecod.exe.csv", "cod.exe_results.csv"),
        ("members.2026", "members.2026_results.csv"),
    ],
)
def test_csv_broadcast_result_file_is_named_after_the_import(
    clock_and_service: tuple[FakeClock, BroadcastService], file_name: str, expected: str
) -> None:
    """The result file takes the imported file's base name, cleaned, plus _results.csv."""
    clock, svc = clock_and_service
    bid = create(svc, clock, [Contact("a@example.com")], CsvSource(file_name))
    assert svc.results_file_name(bid) == expected
    assert svc.results_file_name(bid, "errors") == expected.replace("_results", "_errors")


@pytest.mark.parametrize("file_name", ["...", "/", "\x00\x01.csv", "dir/.csv", "\u200b"])
def test_a_file_name_with_nothing_usable_falls_back_to_the_broadcast_id(
    clock_and_service: tuple[FakeClock, BroadcastService], file_name: str
) -> None:
    """When cleaning leaves nothing, the name is broadcast_<id prefix>_results.csv."""
    clock, svc = clock_and_service
    bid = create(svc, clock, [Contact("a@example.com")], CsvSource(file_name))
    assert svc.results_file_name(bid) == f"broadcast_{bid.hex[:8]}_results.csv"


def test_address_book_result_file_is_named_from_subject_and_date(
    clock_and_service: tuple[FakeClock, BroadcastService],
) -> None:
    """Address-book broadcasts are named subject_YYYYMMDD (account's zone), slashes kept as _."""
    clock, svc = clock_and_service
    clock.set(datetime(2026, 11, 2, 16, 30, tzinfo=UTC))  # already the 3rd in Tokyo
    bid = create(svc, clock, [Contact("a@example.com")], AddressBookSource("book-1"), "11/3 ご案内")
    assert svc.results_file_name(bid) == "11_3 ご案内_20261103_results.csv"
    blank = create(svc, clock, [Contact("a@example.com")], AddressBookSource("book-1"), " ")
    assert svc.results_file_name(blank) == f"broadcast_{blank.hex[:8]}_20261103_results.csv"


def test_invalid_file_name_kind_is_refused(
    clock_and_service: tuple[FakeClock, BroadcastService],
) -> None:
    """kind must be results or errors."""
    clock, svc = clock_and_service
    bid = create(svc, clock, [Contact("a@example.com")])
    with pytest.raises(InvalidInput):
        svc.results_file_name(bid, "all")


def test_any_imported_file_name_gives_a_safe_result_name() -> None:
    """Whatever the imported file was called, the result name is non-empty, has no path
    part, control character, quote or backslash, and fits in 255 UTF-8 bytes."""
    clock = FakeClock(T0)
    with open_service("memory", clock) as svc:

        @settings(max_examples=200, deadline=None)
        @given(st.text(min_size=0, max_size=300))
        def check(file_name: str) -> None:
            if not file_name.strip():
                file_name = "x"  # create_broadcast refuses an empty file name itself
            bid = create(svc, clock, [Contact("a@example.com")], CsvSource(file_name))
            name = svc.results_file_name(bid)
            assert name.endswith("_results.csv")
            assert len(name) > len("_results.csv")
            assert not any(ch in name for ch in '/\\"<>:|?*')
            assert all(unicodedata.category(ch)[0] != "C" for ch in name)
            assert not name.startswith((".", " "))
            assert len(name.encode("utf-8")) <= 255
            header = content_disposition(name)
            assert "\r" not in header
            assert "\n" not in header
            assert header.isascii()

        check()


def test_content_disposition_has_ascii_fallback_and_utf8_name() -> None:
    """content_disposition gives an ASCII filename and the exact UTF-8 filename*."""
    assert content_disposition("会員_results.csv") == (
        "attachment; filename=\"___results.csv\"; filename*=UTF-8''%E4%BC%9A%E5%93%A1_results.csv"
    )


# --- search and counts (properties) ----------------------------------------------------------

TOKENS = [
    "山田",
    "太郎",
    "ヤマダ",
    "ﾔﾏﾀﾞ",
    "ガ",
    "ｶﾞ",
    "ア",
    "ｱ",
    "Ａ",
    "ａ",
    "A",
    "a",
    "b",
    "Ｂ",
    "1",
    "１",
    "ー",
    "ｰ",
    " ",
    "\u3000",
    "株式会社",
    "㈱",
    "-",
    "@",
]
words = st.lists(st.sampled_from(TOKENS), max_size=4).map("".join)
FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def norm(text: str) -> str:
    """The oracle's normal form: NFKC, case-folded, without whitespace."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def oracle_matches(contact: Contact, keyword: str) -> bool:
    k = norm(keyword)
    if not k:
        return True
    last, first = norm(contact.last_name), norm(contact.first_name)
    fields = (last + first, first + last, norm(contact.address), norm(contact.company))
    return any(k in field for field in fields)


@st.composite
def populations(draw: st.DrawFn) -> tuple[list[Contact], list[int], int]:
    n = draw(st.integers(min_value=1, max_value=14))
    contacts = [
        Contact(
            f"{draw(st.sampled_from(['yamada', 'Taro', 'ab', 'x']))}{i}@example.com",
            last_name=draw(words),
            first_name=draw(words),
            company=draw(words),
        )
        for i in range(n)
    ]
    replies = draw(st.lists(st.sampled_from([250, 250, 550, 451]), min_size=n, max_size=n))
    sent = draw(st.integers(min_value=0, max_value=n))
    return contacts, replies, sent


@st.composite
def keywords(draw: st.DrawFn, contacts: list[Contact]) -> str:
    if draw(st.booleans()):
        return draw(words)
    c = draw(st.sampled_from(contacts))
    text = draw(st.sampled_from([c.last_name + c.first_name, c.first_name, c.address, c.company]))
    start = draw(st.integers(min_value=0, max_value=len(text)))
    piece = text[start : draw(st.integers(min_value=start, max_value=len(text)))]
    # The same keyword typed in the other width.
    return "".join(FULLWIDTH.get(ch, ch) if draw(st.booleans()) else ch for ch in piece)


def _populate(
    svc: BroadcastService, clock: FakeClock, contacts: list[Contact], replies: list[int], sent: int
) -> UUID:
    bid = create(svc, clock, contacts)
    clock.advance(minutes=1)
    if sent:
        replies_by_address = {
            c.address: (code, f"{code} reply") for c, code in zip(contacts, replies, strict=True)
        }
        dispatch(svc, replies_by_address, max_messages=sent)
    return bid


@pytest.mark.parametrize("store", STORES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), population=populations())
def test_search_returns_exactly_what_a_plain_filter_returns(
    store: str, data: st.DataObject, population: tuple[list[Contact], list[int], int]
) -> None:
    """Keyword and status search, over every page, returns the rows a plain NFKC filter over
    the recipients gives, in recipient order; and the export has one row per recipient."""
    contacts, replies, sent = population
    clock = FakeClock(T0)
    with open_service(store, clock) as svc:
        bid = _populate(svc, clock, contacts, replies, sent)
        statuses = {item.address: item.status for item in svc.recipients(bid, per_page=1000).items}
        for _ in range(3):
            keyword = data.draw(keywords(contacts), label="keyword")
            status = data.draw(st.none() | st.sampled_from(list(DeliveryStatus)), label="status")
            per_page = data.draw(st.integers(min_value=1, max_value=5), label="per_page")
            expected = [
                c.address
                for c in contacts
                if oracle_matches(c, keyword) and (status is None or statuses[c.address] is status)
            ]
            first = svc.recipients(bid, keyword=keyword, status=status, per_page=per_page)
            found = [item.address for item in first.items]
            for page in range(2, first.pages + 1):
                found += [
                    item.address
                    for item in svc.recipients(
                        bid, keyword=keyword, status=status, page=page, per_page=per_page
                    ).items
                ]
            assert first.total == len(expected)
            assert found == expected
        out = io.BytesIO()
        rows = svc.export_results_csv(bid, out, actor=OPERATOR)
        assert rows == svc.summary(bid).recipients == len(contacts)
        assert out.getvalue().count(b"\r\n") == rows + 1


# --- the past status bar ---------------------------------------------------------------------

steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("dispatch"),
            st.lists(st.sampled_from([250, 451, 550, 0]), min_size=1, max_size=4),
            st.none() | st.integers(0, 4),
        ),
        st.tuples(st.just("bounce"), st.integers(0, 9), st.none()),
        st.tuples(st.just("acknowledge"), st.none(), st.none()),
        st.tuples(st.just("limit"), st.none() | st.integers(0, 8), st.none()),
    ),
    min_size=1,
    max_size=10,
)


@pytest.mark.parametrize("store", STORES)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=steps, gaps=st.lists(st.integers(1, 7200), min_size=10, max_size=10))
def test_a_past_status_bar_equals_the_live_one_at_that_moment(
    store: str, script: list[tuple[str, Any, Any]], gaps: list[int]
) -> None:
    """summary(as_of=t) replayed from the log equals summary() as it was read at t."""
    clock = FakeClock(T0)
    with open_service(store, clock) as svc:
        svc.configure_account("acme", timezone="Asia/Tokyo")
        addresses = [f"r{i}@example.com" for i in range(10)]
        other = create(svc, clock, [Contact("o@example.com")])
        bid = create(svc, clock, [Contact(a) for a in addresses])
        seen: list[tuple[datetime, Summary]] = [(clock(), svc.summary(bid))]
        for (op, arg, extra), gap in zip(script, gaps, strict=False):
            clock.advance(seconds=gap)
            if op == "dispatch":
                transport = ScriptedTransport()
                for i, a in enumerate([*addresses, "o@example.com"]):
                    code = arg[i % len(arg)]
                    transport.replies[a] = (code, f"{code} reply")
                svc.dispatch_due(transport, max_messages=extra)
            elif op == "bounce":
                address = addresses[arg]
                if any(isinstance(e, Sent) for e in svc.history(bid, address)):
                    svc.record_bounce(failure_report(svc, bid, address, clock()))
            elif op == "acknowledge":
                svc.acknowledge_errors(bid, actor=OPERATOR)
            else:
                svc.configure_account("acme", monthly_limit=arg, timezone="Asia/Tokyo")
            seen.append((clock(), svc.summary(bid)))
            clock.advance(seconds=1)
        assert svc.summary(other).recipients == 1
        for moment, live in seen:
            assert svc.summary(bid, as_of=moment) == live
            assert (
                svc.summary(
                    bid, as_of=moment.astimezone(UTC).replace(tzinfo=None).replace(tzinfo=UTC)
                )
                == live
            )
        with pytest.raises(InvalidInput):
            svc.summary(bid, as_of=T0 - timedelta(seconds=1))
        with pytest.raises(InvalidInput):
            svc.summary(bid, as_of=T0.replace(tzinfo=None))


def test_past_status_bar_shows_pause_and_estimate(
    clock_and_service: tuple[FakeClock, BroadcastService],
) -> None:
    """A broadcast paused by the monthly limit reads PAUSED with its reason at that moment,
    and SENT with no estimate once finished."""
    clock, svc = clock_and_service
    svc.configure_account("acme", monthly_limit=2, timezone="Asia/Tokyo")
    bid = create(svc, clock, [Contact(f"p{i}@example.com") for i in range(4)])
    clock.advance(minutes=1)
    dispatch(svc, {})
    paused_at = clock()
    live = svc.summary(bid)
    assert live.status is BroadcastStatus.PAUSED
    clock.advance(hours=1)
    svc.configure_account("acme", monthly_limit=None, timezone="Asia/Tokyo")
    dispatch(svc, {})
    assert svc.summary(bid).status is BroadcastStatus.SENT
    past = svc.summary(bid, as_of=paused_at)
    assert past == live
    assert past.paused_reason
    assert (past.succeeded, past.scheduled) == (2, 2)


# --- histories -------------------------------------------------------------------------------


def test_recipient_history_describes_each_event_and_its_cause(
    clock_and_service: tuple[FakeClock, BroadcastService],
) -> None:
    """The readable history lists each event with the status after it, the server reply,
    the report's diagnostic and who acknowledged."""
    clock, svc = clock_and_service
    bid = create(svc, clock, [Contact("a@example.com")])
    clock.advance(minutes=1)
    dispatch(svc, {"a@example.com": (451, "4.7.1 greylisted")})
    clock.advance(hours=2)
    dispatch(svc, {})
    clock.advance(minutes=1)
    svc.record_bounce(failure_report(svc, bid, "a@example.com", clock()))
    svc.acknowledge_error(bid, "a@example.com", actor=OPERATOR)
    entries = svc.recipient_history(bid, "a@example.com")
    assert [(e.event, e.status) for e in entries] == [
        ("Scheduled", DeliveryStatus.SCHEDULED),
        ("Sent", DeliveryStatus.SENDING),
        ("Deferred", DeliveryStatus.SENDING),
        ("Sent", DeliveryStatus.SENDING),
        ("Succeeded", DeliveryStatus.SUCCEEDED),
        ("Bounced", DeliveryStatus.ERROR),
        ("ErrorAcknowledged", DeliveryStatus.ERROR),
    ]
    assert entries[2].detail == "451 4.7.1 greylisted"
    assert "451 4.7.1 greylisted" in entries[2].description
    assert entries[4].detail == "250 2.0.0 OK"
    assert "552 mailbox full" in entries[5].description
    assert entries[5].detail == "552 mailbox full"
    assert entries[6].actor == "op-1"
    assert "op-1" in entries[6].description
    assert [e.at for e in entries] == sorted(e.at for e in entries)
