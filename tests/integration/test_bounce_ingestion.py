"""Raw bounce messages through the service: correlation, outcomes, the unmatched log, ingestion.

Every report answers a delivery really dispatched by ``dispatch_due`` (through
``ScriptedTransport``), on ``memory://`` and on a SQLite file. Some reports are
built here (RFC 3464 / 5965 / 3834), some are real bounces from the corpus
retargeted at a delivery.
"""

from __future__ import annotations

import json
import mailbox
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcast_adapters.bounces.parser import parse_bounce
from broadcast_adapters.bounces.sources import MaildirSource, MboxSource
from broadcast_domain import (
    Actor,
    BroadcastError,
    BroadcastService,
    Contact,
    CsvSource,
    DeliveryStatus,
    InboxRole,
    InvalidInput,
)
from broadcast_domain.application import intake as intake_module
from broadcast_domain.domain.events import Bounced, Complained, RecipientEvent
from broadcast_domain.domain.recipient import Recipient
from broadcast_domain.domain.unmatched import (
    BounceUnmatched,
    UnmatchedResolved,
    canonical_raw,
    unmatched_id,
)
from broadcast_domain.ports import IncomingBounce, OutgoingMessage, ParsedMessage
from broadcast_domain.testing.bounces import build_arf, build_auto_reply, build_dsn, retarget
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.machine import ScriptedTransport

KEY = b"ingest-test-signing-key-0123456789"
ACTOR = Actor("op", inbox_roles={"inbox": InboxRole.OPERATOR})
KINDS = {"applied", "duplicate", "late", "unmatched", "ignored"}


@attrs.define
class World:
    """A service with one broadcast already dispatched (every recipient SUCCEEDED)."""

    svc: BroadcastService
    clock: FakeClock
    bid: Any
    sent: dict[str, OutgoingMessage]
    transport: ScriptedTransport

    def state(self, address: str) -> Recipient:
        state = Recipient.fold(self.svc.history(self.bid, address))  # type: ignore[arg-type]
        assert state is not None
        return state

    def status(self, address: str) -> DeliveryStatus:
        return self.state(address).status

    def recipient_events(self) -> int:
        return sum(len(self.svc.history(self.bid, a)) for a in self.sent)


def make_world(url: str, n: int = 6, parser: Any = None) -> World:
    clock = FakeClock()
    svc = BroadcastService.open(
        url,
        return_path="bounces@mail.example.com",
        signing_key=KEY,
        clock=clock,
        bounce_parser=parser,
    )
    addresses = [f"user{i}@example.org" for i in range(n)]
    bid = svc.create_broadcast(
        account_id="acme",
        inbox_id="inbox",
        sender="news@example.com",
        subject="お知らせ",
        text_body="本文",
        source=CsvSource("members.csv"),
        recipients=[
            Contact(a, last_name="山田", first_name=str(i)) for i, a in enumerate(addresses)
        ],
        scheduled_at=clock(),
        actor=ACTOR,
    )
    transport = ScriptedTransport()
    report = svc.dispatch_due(transport)
    assert report.succeeded == n
    clock.advance(minutes=5)
    return World(svc, clock, bid, {m.recipient: m for m in transport.sent}, transport)


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """memory:// and a SQLite file."""
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'ingest.db'}"


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    """A dispatched broadcast of six recipients."""
    w = make_world(store_url)
    yield w
    assert w.svc.verify_projections() == []
    w.svc.close()


# --- one message ------------------------------------------------------------------------


def test_a_dsn_to_the_verp_address_turns_the_delivery_into_an_error(world: World) -> None:
    """A DSN sent to the VERP return path applies and the recipient becomes ERROR."""
    m = world.sent["user0@example.org"]
    outcomes = world.svc.record_bounce_message(build_dsn(m))
    assert [o.kind for o in outcomes] == ["applied"]
    assert outcomes[0].address == "user0@example.org"
    assert outcomes[0].report.verp_token is not None
    state = world.state("user0@example.org")
    assert state.status is DeliveryStatus.ERROR
    assert state.error_status == "5.1.1"
    assert "User unknown" in (state.error_detail or "")
    assert world.status("user1@example.org") is DeliveryStatus.SUCCEEDED
    assert world.svc.summary(world.bid).errors == 1


def test_the_envelope_recipient_given_by_the_host_correlates_the_dsn(world: World) -> None:
    """A DSN whose headers carry no token applies by the envelope recipient the host passes."""
    m = world.sent["user1@example.org"]
    raw = build_dsn(m, verp=False).replace(m.message_id.encode(), b"<other@elsewhere.example>")
    outcomes = world.svc.record_bounce_message(raw, envelope_recipient=m.envelope_from)
    assert [o.kind for o in outcomes] == ["applied"]
    assert world.status("user1@example.org") is DeliveryStatus.ERROR


def test_a_dsn_without_verp_is_matched_by_the_quoted_message_id(world: World) -> None:
    """A DSN to the plain return path applies through the Message-ID of the quoted original."""
    m = world.sent["user2@example.org"]
    raw = build_dsn(m, verp=False)
    assert b"+" not in raw.split(b"\nSubject:")[0]
    outcomes = world.svc.record_bounce_message(raw)
    assert [o.kind for o in outcomes] == ["applied"]
    assert outcomes[0].report.message_id == m.message_id
    assert world.status("user2@example.org") is DeliveryStatus.ERROR


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_line_endings_do_not_matter(world: World, newline: str) -> None:
    """CRLF and bare-CR copies of a DSN apply, and a copy with other line ends is a duplicate."""
    m = world.sent["user3@example.org"]
    assert [o.kind for o in world.svc.record_bounce_message(build_dsn(m, newline=newline))] == [
        "applied"
    ]
    again = world.svc.record_bounce_message(build_dsn(m))
    assert [o.kind for o in again] == ["duplicate"]


def test_the_same_dsn_twice_is_a_duplicate_and_records_nothing(world: World) -> None:
    """Recording one DSN again gives duplicate and no new event."""
    raw = build_dsn(world.sent["user0@example.org"])
    world.svc.record_bounce_message(raw)
    before = world.recipient_events()
    outcomes = world.svc.record_bounce_message(raw)
    assert [o.kind for o in outcomes] == ["duplicate"]
    assert world.recipient_events() == before


def test_a_dsn_received_after_the_bounce_window_is_late(world: World) -> None:
    """A DSN received more than 24 h after the success is late and changes nothing."""
    world.clock.advance(hours=25)
    outcomes = world.svc.record_bounce_message(build_dsn(world.sent["user0@example.org"]))
    assert [o.kind for o in outcomes] == ["late"]
    assert world.status("user0@example.org") is DeliveryStatus.SUCCEEDED


def test_the_window_runs_to_the_given_received_at(world: World) -> None:
    """received_at, not the clock or the DSN's Date, decides whether a report is late."""
    m = world.sent["user0@example.org"]
    world.clock.advance(hours=30)
    received = world.clock() - timedelta(hours=29)
    outcomes = world.svc.record_bounce_message(build_dsn(m), received_at=received)
    assert [o.kind for o in outcomes] == ["applied"]


def test_a_forged_token_is_unmatched_and_changes_nothing(world: World) -> None:
    """A DSN to a VERP address with a tampered token and no known Message-ID is unmatched."""
    m = world.sent["user0@example.org"]
    local = m.envelope_from.partition("@")[0]
    token = local.split("+", 1)[1]
    forged_token = ("b" if token[0] != "b" else "c") + token[1:]
    raw = build_dsn(m).replace(token.encode(), forged_token.encode())
    raw = raw.replace(m.message_id.encode(), b"<forged@attacker.example>")
    before = world.recipient_events()
    outcomes = world.svc.record_bounce_message(raw)
    assert [o.kind for o in outcomes] == ["unmatched"]
    assert world.recipient_events() == before
    assert all(world.status(a) is DeliveryStatus.SUCCEEDED for a in world.sent)
    assert world.svc.unmatched_reports().total == 1


def test_a_token_signed_with_another_key_never_matches(store_url: str, world: World) -> None:
    """A genuine-looking VERP address from another key is unmatched."""
    m = world.sent["user0@example.org"]
    from broadcast_domain.domain.verp import Verp

    other = Verp("bounces@mail.example.com", b"another-key-another-key-123456").address(
        world.state("user0@example.org").id
    )
    raw = build_dsn(m).replace(m.envelope_from.encode(), other.encode())
    raw = raw.replace(m.message_id.encode(), b"<gone@nowhere.example>")
    assert [o.kind for o in world.svc.record_bounce_message(raw)] == ["unmatched"]
    assert world.status("user0@example.org") is DeliveryStatus.SUCCEEDED


def test_an_auto_reply_is_ignored(world: World) -> None:
    """An out-of-office reply is ignored: no event, the recipient stays SUCCEEDED."""
    before = world.recipient_events()
    outcomes = world.svc.record_bounce_message(build_auto_reply(world.sent["user4@example.org"]))
    assert [o.kind for o in outcomes] == ["ignored"]
    assert outcomes[0].address == "user4@example.org"
    assert world.recipient_events() == before
    assert world.svc.unmatched_reports().total == 0


def test_a_delayed_dsn_is_ignored(world: World) -> None:
    """Action: delayed is not a delivery error."""
    raw = build_dsn(world.sent["user4@example.org"], action="delayed", status="4.4.1")
    assert [o.kind for o in world.svc.record_bounce_message(raw)] == ["ignored"]
    assert world.status("user4@example.org") is DeliveryStatus.SUCCEEDED


def test_an_arf_complaint_is_recorded_as_a_complaint_not_an_error(world: World) -> None:
    """An abuse report applies as Complained; status, counts and errors are unchanged."""
    m = world.sent["user5@example.org"]
    outcomes = world.svc.record_bounce_message(build_arf(m))
    assert [o.kind for o in outcomes] == ["applied"]
    events = world.svc.history(world.bid, "user5@example.org")
    assert isinstance(events[-1], Complained)
    assert world.status("user5@example.org") is DeliveryStatus.SUCCEEDED
    s = world.svc.summary(world.bid)
    assert (s.errors, s.succeeded) == (0, 6)
    assert [o.kind for o in world.svc.record_bounce_message(build_arf(m))] == ["duplicate"]


def test_garbage_is_ignored_and_not_kept(world: World) -> None:
    """Bytes that hold no report give one ignored outcome; nothing is recorded or kept."""
    for raw in (b"", b"\x00\xff\xfe garbage", b"Subject: hello\n\nJust a note.\n", b"\r\r\n\n:"):
        outcomes = world.svc.record_bounce_message(raw)
        assert [o.kind for o in outcomes] == ["ignored"]
    assert world.svc.unmatched_reports().total == 0


def test_bad_arguments_are_invalid_input(world: World) -> None:
    """Text instead of bytes, a naive received_at or a non-string envelope are refused."""
    from datetime import datetime

    with pytest.raises(InvalidInput):
        world.svc.record_bounce_message("not bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        world.svc.record_bounce_message(b"x", received_at=datetime(2026, 1, 1))
    with pytest.raises(InvalidInput):
        world.svc.record_bounce_message(b"x", envelope_recipient=42)  # type: ignore[arg-type]


def test_each_report_of_a_multi_recipient_dsn_goes_to_its_own_recipient(world: World) -> None:
    """A DSN naming two originals' Message-IDs applies each report to the recipient it names."""
    a, b = world.sent["user0@example.org"], world.sent["user1@example.org"]
    raw = build_dsn(a, verp=False, extra_recipients=[b.recipient])
    raw = raw.replace(
        b"Auto-Submitted:",
        f"In-Reply-To: {a.message_id} {b.message_id}\nAuto-Submitted:".encode(),
        1,
    )
    outcomes = world.svc.record_bounce_message(raw)
    assert sorted((o.kind, o.address) for o in outcomes) == [
        ("applied", "user0@example.org"),
        ("applied", "user1@example.org"),
    ]
    assert world.svc.summary(world.bid).errors == 2


def test_a_verp_dsn_with_a_report_for_a_stranger_matches_only_its_recipient(world: World) -> None:
    """A VERP DSN names one delivery: a second report about another address is ignored, not kept."""
    raw = build_dsn(world.sent["user0@example.org"], extra_recipients=["stranger@example.net"])
    outcomes = world.svc.record_bounce_message(raw)
    assert sorted(o.kind for o in outcomes) == ["applied", "ignored"]
    assert "VERP token" in next(o.detail for o in outcomes if o.kind == "ignored")
    assert world.status("user0@example.org") is DeliveryStatus.ERROR
    assert world.svc.summary(world.bid).errors == 1
    assert world.svc.unmatched_reports().total == 0


# --- the unmatched log ------------------------------------------------------------------


class SwitchableParser:
    """The real parser, or one that cannot see any correlation hint (an older parser)."""

    def __init__(self) -> None:
        self.blind = True

    def __call__(self, raw: bytes) -> ParsedMessage:
        parsed = parse_bounce(raw)
        if self.blind:
            return attrs.evolve(parsed, envelope_candidates=(), original_message_ids=())
        return parsed


def test_an_unmatched_report_is_kept_once_and_matched_by_a_later_retry(store_url: str) -> None:
    """Kept unmatched messages are listed, kept once, and a retry that matches resolves them."""
    parser = SwitchableParser()
    w = make_world(store_url, parser=parser)
    try:
        m0, m1 = w.sent["user0@example.org"], w.sent["user1@example.org"]
        first = w.svc.record_bounce_message(build_dsn(m0))
        w.clock.advance(minutes=1)
        w.svc.record_bounce_message(build_dsn(m1, verp=False))
        assert [o.kind for o in first] == ["unmatched"]
        assert "kept" in first[0].detail
        assert [o.kind for o in w.svc.record_bounce_message(build_dsn(m0))] == ["unmatched"]
        page = w.svc.unmatched_reports()
        assert page.total == 2
        assert [unmatched_id(build_dsn(m0)), unmatched_id(build_dsn(m1, verp=False))] == [
            item.id for item in page.items
        ]
        assert page.items[0].raw == canonical_raw(build_dsn(m0))
        assert w.status("user0@example.org") is DeliveryStatus.SUCCEEDED
        assert [o.kind for o in w.svc.retry_unmatched()] == ["unmatched", "unmatched"]
        parser.blind = False
        retried = w.svc.retry_unmatched()
        assert sorted((o.kind, o.address) for o in retried) == [
            ("applied", "user0@example.org"),
            ("applied", "user1@example.org"),
        ]
        assert w.svc.unmatched_reports().total == 0
        assert w.svc.retry_unmatched() == []
        assert w.svc.summary(w.bid).errors == 2
        # The kept log is event-sourced: kept, then resolved.
        kept = w.svc.events.get(unmatched_id(build_dsn(m0)))
        assert [type(e) for e in kept] == [BounceUnmatched, UnmatchedResolved]
        assert w.svc.verify_projections() == []
        w.svc.rebuild_projections()
        assert w.svc.unmatched_reports().total == 0
    finally:
        w.svc.close()


def test_a_retry_keeps_the_received_time_of_the_kept_message(store_url: str) -> None:
    """A kept report received inside the window still applies when retried after it."""
    parser = SwitchableParser()
    w = make_world(store_url, parser=parser)
    try:
        w.svc.record_bounce_message(build_dsn(w.sent["user0@example.org"]))
        w.clock.advance(hours=48)
        parser.blind = False
        assert [o.kind for o in w.svc.retry_unmatched()] == ["applied"]
    finally:
        w.svc.close()


def test_the_unmatched_log_survives_reopening_the_store(tmp_path: Path) -> None:
    """Kept messages are in the store: a new service on the same file lists and retries them."""
    url = f"sqlite:///{tmp_path / 'reopen.db'}"
    w = make_world(url, parser=SwitchableParser())
    raw = build_dsn(w.sent["user2@example.org"])
    w.svc.record_bounce_message(raw)
    w.svc.close()
    svc = BroadcastService.open(
        url, return_path="bounces@mail.example.com", signing_key=KEY, clock=w.clock
    )
    try:
        assert [m.raw for m in svc.unmatched_reports().items] == [canonical_raw(raw)]
        assert [o.kind for o in svc.retry_unmatched()] == ["applied"]
        assert svc.unmatched_reports(page=1, per_page=10).total == 0
    finally:
        svc.close()


def test_unmatched_reports_pages_are_checked(world: World) -> None:
    """Bad paging arguments are InvalidInput."""
    with pytest.raises(InvalidInput):
        world.svc.unmatched_reports(page=0)


# --- ingestion from a Maildir and an mbox -----------------------------------------------


def _messages(w: World) -> list[bytes]:
    """Six failure reports (two by Message-ID only), a copy, an ARF, an auto-reply, garbage."""
    s = w.sent
    return [
        build_dsn(s["user0@example.org"]),
        build_dsn(s["user1@example.org"], verp=False),
        build_dsn(s["user2@example.org"], newline="\r\n"),
        build_dsn(s["user0@example.org"]),  # a second copy of the first report
        build_arf(s["user3@example.org"]),
        build_auto_reply(s["user4@example.org"]),
        b"Subject: spam\n\nbuy now\n",
        build_dsn(s["user5@example.org"], verp=False, status="5.2.2"),
        build_dsn(s["user4@example.org"], status="5.7.1"),
        build_dsn(s["user3@example.org"], verp=False, status="5.1.2"),
    ]


class Crash(Exception):
    """A simulated crash (not a BroadcastError, so nothing catches it)."""


class CrashWhileReading:
    """A source wrapper that dies while yielding its ``at``-th message (the process stops)."""

    def __init__(self, inner: Any, at: int) -> None:
        self.inner = inner
        self.at = at

    def __iter__(self) -> Iterator[IncomingBounce]:
        for n, item in enumerate(self.inner, start=1):
            if n == self.at:
                raise Crash(f"crash while reading message {n}")
            yield item

    def mark_done(self, key: str) -> None:
        self.inner.mark_done(key)

    def set_aside(self, key: str, reason: str) -> None:
        self.inner.set_aside(key, reason)


class CrashAfterMarking:
    """A source wrapper whose mark_done crashes after ``limit`` messages were marked."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.marked = 0

    def __iter__(self) -> Iterator[IncomingBounce]:
        return iter(self.inner)

    def mark_done(self, key: str) -> None:
        if self.marked >= self.limit:
            raise Crash("crash after committing, before marking")
        self.inner.mark_done(key)
        self.marked += 1

    def set_aside(self, key: str, reason: str) -> None:
        self.inner.set_aside(key, reason)


def _write_maildir(folder: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(folder, create=True)
    for raw in messages:
        box.add(mailbox.MaildirMessage(raw))
    return folder


def _write_mbox(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.mbox(path)
    for raw in messages:
        box.add(mailbox.mboxMessage(raw))
    box.flush()
    box.close()
    return path


def _check_final(w: World) -> None:
    """Every failure report applied exactly once; the ARF is a complaint, not an error."""
    for address in w.sent:
        bounced = [e for e in w.svc.history(w.bid, address) if isinstance(e, Bounced)]
        assert len(bounced) == 1, address
    complaints = [e for e in w.svc.history(w.bid, "user3@example.org") if isinstance(e, Complained)]
    assert len(complaints) == 1
    assert w.svc.summary(w.bid).errors == 6
    assert w.svc.verify_projections() == []


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_ingest_records_every_message_and_marks_it_done(
    store_url: str, tmp_path: Path, kind: str
) -> None:
    """One run applies each report once, counts every outcome and leaves nothing pending."""
    w = make_world(store_url)
    try:
        messages = _messages(w)
        path = (
            _write_maildir(tmp_path / "box", messages)
            if kind == "maildir"
            else _write_mbox(tmp_path / "box.mbox", messages)
        )
        source = MaildirSource(path) if kind == "maildir" else MboxSource(path)
        progress: list[dict[str, int]] = []
        counts = w.svc.ingest(source, on_progress=progress.append)
        assert counts == {
            "applied": 7,
            "duplicate": 1,
            "late": 0,
            "unmatched": 0,
            "ignored": 2,
            "set_aside": 0,
            "messages": 10,
        }
        assert progress[-1] == counts
        _check_final(w)
        fresh = MaildirSource(path) if kind == "maildir" else MboxSource(path)
        assert list(fresh) == []
        again = (
            _write_maildir(tmp_path / "again", messages)
            if kind == "maildir"
            else _write_mbox(tmp_path / "again.mbox", messages)
        )
        before = w.svc.events.max_position()
        second = w.svc.ingest(MaildirSource(again) if kind == "maildir" else MboxSource(again))
        assert (second["duplicate"], second["applied"]) == (8, 0)
        assert w.svc.events.max_position() == before
    finally:
        w.svc.close()


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
@pytest.mark.parametrize("scenario", [("reading", 200), ("reading", 4), ("marking", 200)])
def test_a_crashed_ingest_then_a_second_run_loses_nothing_and_applies_nothing_twice(
    store_url: str,
    tmp_path: Path,
    kind: str,
    scenario: tuple[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run dying before, between or after commits is completed by the next, exactly once."""
    crash, batch = scenario
    monkeypatch.setattr(intake_module, "_INGEST_BATCH", batch)
    w = make_world(store_url)
    try:
        messages = _messages(w)
        path = (
            _write_maildir(tmp_path / "box", messages)
            if kind == "maildir"
            else _write_mbox(tmp_path / "box.mbox", messages)
        )

        def open_source() -> Any:
            return MaildirSource(path) if kind == "maildir" else MboxSource(path)

        first: Any = (
            CrashWhileReading(open_source(), 6)
            if crash == "reading"
            else CrashAfterMarking(open_source(), 3)
        )
        with pytest.raises(Crash):
            w.svc.ingest(first)
        pending_after_crash = len(list(open_source()))
        # Reading dies at the 6th message: with batches of 4 the first batch was committed.
        assert (
            pending_after_crash
            == {("reading", 200): 10, ("reading", 4): 6, ("marking", 200): 7}[(crash, batch)]
        )
        second = w.svc.ingest(open_source())
        assert second["messages"] == pending_after_crash
        assert list(open_source()) == []
        _check_final(w)
    finally:
        w.svc.close()


class Refusing(BroadcastError):
    """A handling failure the intake must set aside."""


class RefusingParser:
    """Raises for messages containing a marker: a BroadcastError, or a bug of a host's parser."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __call__(self, raw: bytes) -> ParsedMessage:
        if b"POISON" in raw:
            raise self.error
        return parse_bounce(raw)


@pytest.mark.parametrize(
    "error", [Refusing("this message is poison"), ValueError("parser bug: poison")]
)
def test_a_message_whose_handling_fails_is_set_aside_not_deleted(
    store_url: str, tmp_path: Path, error: Exception
) -> None:
    """A handling or parser failure on one message sets it aside; the others are done."""
    w = make_world(store_url, parser=RefusingParser(error))
    try:
        messages = [
            build_dsn(w.sent["user0@example.org"]),
            b"Subject: POISON\n\nx\n",
            build_dsn(w.sent["user1@example.org"]),
        ]
        path = _write_maildir(tmp_path / "box", messages)
        counts = w.svc.ingest(MaildirSource(path))
        assert (counts["applied"], counts["set_aside"], counts["messages"]) == (2, 1, 2)
        aside = [p for p in (path / ".failed").iterdir() if not p.name.endswith(".reason")]
        assert [p.read_bytes() for p in aside] == [messages[1]]
        reason = next((path / ".failed").glob("*.reason")).read_text()
        assert "poison" in reason
        assert list(MaildirSource(path)) == []
    finally:
        w.svc.close()


def test_ingest_refuses_what_is_not_a_source(world: World) -> None:
    """A list of bytes is not a BounceSource: InvalidInput, nothing recorded."""
    with pytest.raises(InvalidInput):
        world.svc.ingest([b"raw"])  # type: ignore[arg-type]


def test_ingest_keeps_unmatched_messages(store_url: str, tmp_path: Path) -> None:
    """A report for nobody is counted unmatched, marked done and kept in the unmatched log."""
    w = make_world(store_url)
    try:
        m = w.sent["user0@example.org"]
        stranger = build_dsn(m, verp=False).replace(m.message_id.encode(), b"<x@nowhere.example>")
        path = _write_mbox(tmp_path / "box.mbox", [stranger, build_dsn(m)])
        counts = w.svc.ingest(MboxSource(path))
        assert (counts["unmatched"], counts["applied"], counts["messages"]) == (1, 1, 2)
        assert [item.raw for item in w.svc.unmatched_reports().items] == [stranger.rstrip(b"\n")]
    finally:
        w.svc.close()


# --- real corpus messages ---------------------------------------------------------------


def _repo_root() -> Path:
    for folder in Path(__file__).resolve().parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    raise RuntimeError("no pyproject.toml above the test file")


def _corpus() -> Path | None:
    configured = os.environ.get("BROADCAST_CORPUS")
    folder = Path(configured) if configured else _repo_root().parent / "shared" / "corpus"
    return folder if (folder / "expectations.json").is_file() else None


@pytest.fixture(scope="module")
def corpus_bounces() -> list[bytes]:
    """Corpus bounces with one failed report naming a recipient and quoting a Message-ID."""
    folder = _corpus()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail("the bounce corpus is missing; set BROADCAST_CORPUS")
        pytest.skip("the bounce corpus is not available; set BROADCAST_CORPUS")
    items = json.loads((folder / "expectations.json").read_text("utf-8"))["items"]
    found = []
    for item in items:
        if item["kind"] != "bounce":
            continue
        raw = (folder / "set-of-emails" / item["file"]).read_bytes()
        parsed = parse_bounce(raw)
        failed = [r for r in parsed.reports if r.action == "failed"]
        if (
            len(parsed.reports) == 1
            and failed
            and failed[0].recipient
            and parsed.original_message_ids
        ):
            found.append(raw)
    return found


def retarget_at(raw: bytes, m: OutgoingMessage, *, verp: bool) -> bytes:
    """The corpus bounce rewritten to name ``m``'s recipient and Message-ID (or VERP address)."""
    parsed = parse_bounce(raw)
    pairs = [(parsed.reports[0].recipient or "", m.recipient)]
    if not verp:
        pairs += [
            (mid.strip("<>"), m.message_id.strip("<>")) for mid in parsed.original_message_ids
        ]
    return retarget(raw, replacements=pairs, to=m.envelope_from if verp else None)


@pytest.mark.parametrize("verp", [True, False])
def test_real_corpus_bounces_retargeted_at_deliveries_apply(
    store_url: str, corpus_bounces: list[bytes], verp: bool
) -> None:
    """Real bounces rewritten to name a delivery (by VERP or Message-ID) turn it into an error."""
    w = make_world(store_url, n=12)
    try:
        step = max(1, len(corpus_bounces) // 12)
        picked = corpus_bounces[::step][:12]
        applied = 0
        for raw, m in zip(picked, w.sent.values(), strict=False):
            changed = retarget_at(raw, m, verp=verp)
            hints = parse_bounce(changed)
            if not verp and m.message_id not in hints.original_message_ids:
                continue  # the id sits in an encoded part that a byte rewrite cannot reach
            outcomes = w.svc.record_bounce_message(changed)
            assert [o.kind for o in outcomes] == ["applied"], outcomes
            assert w.status(m.recipient) is DeliveryStatus.ERROR
            applied += 1
        assert applied >= 8
    finally:
        w.svc.close()


# --- never an exception on any bytes ----------------------------------------------------


@st.composite
def mutated(draw: Any, seeds: list[bytes]) -> bytes:
    """A seed message with random slices deleted, replaced or duplicated, and line ends changed."""
    raw = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        if not raw:
            break
        at = draw(st.integers(0, len(raw) - 1))
        size = draw(st.integers(1, 64))
        op = draw(st.sampled_from(["delete", "replace", "duplicate"]))
        if op == "delete":
            del raw[at : at + size]
        elif op == "replace":
            raw[at : at + size] = draw(st.binary(min_size=0, max_size=size))
        else:
            raw[at:at] = raw[at : at + size]
    newline = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    return bytes(raw).replace(b"\r\n", b"\n").replace(b"\n", newline)


def test_any_bytes_give_outcomes_and_unmatched_ones_change_no_recipient(
    store_url: str, corpus_bounces: list[bytes]
) -> None:
    """Random and mutated messages only ever return outcomes; unless applied, no recipient event."""
    w = make_world(store_url, n=4)
    try:
        messages = list(w.sent.values())
        seeds = [
            build_dsn(messages[0]),
            build_dsn(messages[1], verp=False),
            build_arf(messages[2]),
            build_auto_reply(messages[3]),
        ]
        seeds += [
            retarget_at(raw, messages[i % 4], verp=i % 2 == 0)
            for i, raw in enumerate(corpus_bounces[:40:4])
        ]
        seeds += corpus_bounces[1:40:4]

        @settings(
            max_examples=120 if store_url == "memory://" else 40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(raw=st.binary(max_size=400) | mutated(seeds))
        def check(raw: bytes) -> None:
            before = w.svc.events.max_position()
            outcomes = w.svc.record_bounce_message(raw)
            assert outcomes
            assert {o.kind for o in outcomes} <= KINDS
            new = w.svc.events.read(before, 100)
            if not any(o.kind == "applied" for o in outcomes):
                assert not any(isinstance(e, RecipientEvent) for _, e in new)
            assert all(
                isinstance(e, RecipientEvent | BounceUnmatched | UnmatchedResolved) for _, e in new
            )

        check()
        assert w.svc.verify_projections() == []
    finally:
        w.svc.close()
