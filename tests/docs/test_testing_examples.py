"""The worked examples of docs/testing.md, run as tests (the page includes them from here).

Each example sits between ``# [name]`` and ``# [/name]`` markers, which the
page's ``literalinclude`` directives name; keep the markers when editing.
Each example carries its own imports, as the page shows them, hence E402.
"""
# ruff: noqa: E402

from __future__ import annotations

# [strategies]
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from broadcast_adapters.bounces.parser import parse_bounce
from broadcast_adapters.csv_io import CsvCodec
from broadcast_domain import BounceReport, Contact
from broadcast_domain.domain.recipient import ReportOutcome
from broadcast_domain.testing.strategies import (
    RecipientCsvFile,
    bounce_reports,
    dsn_messages,
    recipient_csv_files,
)


def import_upload(data: bytes) -> tuple[list[Contact], list[int]]:
    """The host's upload handler: the contacts to schedule, and the lines to show as bad."""
    imported = CsvCodec().parse_recipients(data, max_rows=10_000, max_bytes=5_000_000)
    return list(imported.contacts), [problem.line for problem in imported.problems]


@given(recipient_csv_files())
def test_upload_keeps_the_good_rows_and_names_the_bad_lines(file: RecipientCsvFile) -> None:
    """UTF-8, UTF-8 with BOM or CP932, Japanese or English headers: same contacts, right lines."""
    contacts, bad_lines = import_upload(file.data)
    assert contacts == list(file.contacts)
    assert bad_lines == list(file.problem_lines)


def failed_recipients(raw: bytes) -> list[str]:
    """The host's bounce triage: who a raw bounce says could not be reached."""
    return [r.recipient or "?" for r in parse_bounce(raw).reports if r.action == "failed"]


@given(
    bounce_reports(
        recipient="yamada.taro@example.jp", actions=st.sampled_from(["failed", "delayed"])
    ),
    st.data(),
)
def test_triage_lists_failures_and_not_delays(report: BounceReport, data: st.DataObject) -> None:
    """Every DSN variant (CRLF/LF, charsets, original attached or not) is triaged alike."""
    raw = data.draw(dsn_messages(report, verp_address="bounces+abc@mail.example.com"))
    expected = ["yamada.taro@example.jp"] if report.action == "failed" else []
    assert failed_recipients(raw) == expected


# [/strategies]

# [fakes]
from broadcast_domain import Actor, AddressBookSource, BroadcastService, DeliveryStatus, InboxRole
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.fakes import FakeAddressBook, FakeBounceSource, FakeTransport
from broadcast_domain.testing.reports import dsn_message, verp_token_of

OPERATOR = Actor("operator-1", inbox_roles={"support": InboxRole.OPERATOR})


def ingest(svc: BroadcastService, source: FakeBounceSource) -> list[ReportOutcome]:
    """The host's bounce worker: record each message's reports, then mark it done."""
    kinds = []
    for item in source:
        parsed = parse_bounce(item.raw)
        tokens = [t for a in parsed.envelope_candidates if (t := verp_token_of(a))]
        for found in parsed.reports:
            outcome = svc.record_bounce(
                BounceReport(
                    recipient=found.recipient or "",
                    status=found.status or found.reply_code or "5.0.0",
                    diagnostic=found.diagnostic,
                    permanent=found.permanent,
                    reported_at=parsed.date or svc.now(),
                    verp_token=tokens[0] if tokens else None,
                    action=found.action,
                )
            )
            kinds.append(outcome.kind)
        source.mark_done(item.key)
    return kinds


def test_a_bounce_after_acceptance_turns_the_recipient_into_an_error() -> None:
    """Accepted by the server, then a DSN arrives within the window: ERROR; the mail is done."""
    clock = FakeClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    book = FakeAddressBook(
        {"book-1": [Contact("taro@example.jp", last_name="山田"), Contact("gone@example.jp")]}
    )
    svc = BroadcastService.open(
        "memory://",
        return_path="bounces@mail.example.com",
        signing_key=b"0123456789abcdef0123456789abcdef",
        clock=clock,
        address_book=book,
    )
    transport = FakeTransport(reject=["gone@example.jp"])
    bid = svc.create_broadcast(
        account_id="acme",
        inbox_id="support",
        sender="news@example.com",
        subject="お知らせ",
        text_body="本文",
        source=AddressBookSource("book-1"),
        scheduled_at=clock(),
        actor=OPERATOR,
    )
    assert svc.dispatch_due(transport).succeeded == 1
    [message] = transport.sent_to("taro@example.jp")

    clock.advance(hours=2)
    report = BounceReport(
        recipient="taro@example.jp",
        status="5.2.2",
        diagnostic="mailbox full",
        permanent=True,
        reported_at=clock(),
    )
    source = FakeBounceSource([dsn_message(report, verp_address=message.envelope_from)])
    assert ingest(svc, source) == ["applied"]
    assert source.done == ["msg-1"] and list(source) == []
    errors = svc.recipients(bid, status=DeliveryStatus.ERROR).items
    assert sorted(item.address for item in errors) == ["gone@example.jp", "taro@example.jp"]
    svc.close()


# [/fakes]

# [contracts]
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import BounceSource, IncomingBounce
from broadcast_domain.testing.contracts import BounceSourceContract


class EmlFolderSource:
    """The host's own BounceSource: ``*.eml`` files in a folder; done ones move to ``done/``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "done").mkdir(exist_ok=True)
        (folder / "aside").mkdir(exist_ok=True)

    def __iter__(self) -> Iterator[IncomingBounce]:
        for path in sorted(self.folder.glob("*.eml")):
            yield IncomingBounce(key=path.name, raw=path.read_bytes())

    def _path(self, key: str) -> Path:
        path = self.folder / key
        if "/" in key or not path.is_file():
            raise InvalidInput(f"no message {key!r} in {self.folder}", field="key")
        return path

    def mark_done(self, key: str) -> None:
        if not (self.folder / "done" / key).exists():
            os.replace(self._path(key), self.folder / "done" / key)

    def set_aside(self, key: str, reason: str) -> None:
        os.replace(self._path(key), self.folder / "aside" / key)
        (self.folder / "aside" / f"{key}.reason").write_text(reason, encoding="utf-8")


class TestEmlFolderSource(BounceSourceContract):
    """The host's source keeps the contract the ingestion loop relies on."""

    def make_source(self, messages: Sequence[bytes], stack: ExitStack) -> BounceSource:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for n, raw in enumerate(messages):
            (folder / f"{n:04d}.eml").write_bytes(raw)
        return EmlFolderSource(folder)

    def reopen(self, source: BounceSource) -> BounceSource:
        assert isinstance(source, EmlFolderSource)
        return EmlFolderSource(source.folder)

    def set_aside_messages(self, source: BounceSource) -> list[bytes]:
        assert isinstance(source, EmlFolderSource)
        return [p.read_bytes() for p in (source.folder / "aside").glob("*.eml")]


# [/contracts]

# [machine]
from hypothesis import settings

from broadcast_domain.testing.machine import BroadcastMachine, run_machine


def open_memory_store(clock: FakeClock) -> BroadcastService:
    """The host's way of opening the service; here the in-memory store."""
    return BroadcastService.open(
        "memory://",
        return_path="bounces@mail.example.com",
        signing_key=b"0123456789abcdef0123456789abcdef",
        clock=clock,
    )


def test_the_library_rules_hold_on_my_store() -> None:
    """Random interleavings of sends, replies, reports and acknowledgements keep every rule."""
    run_machine(open_memory_store, settings=settings(max_examples=10, stateful_step_count=15))


class MyStoreMachine(BroadcastMachine):
    """The same, as a class pytest collects."""

    def make_service(self, clock: FakeClock) -> BroadcastService:
        return open_memory_store(clock)


TestMyStoreMachine = MyStoreMachine.TestCase
TestMyStoreMachine.settings = settings(max_examples=10, stateful_step_count=15)
# [/machine]
