"""The shipped strategies keep their promises: parseable DSNs, importable CSVs, valid histories."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC

import attrs
from hypothesis import assume, given
from hypothesis import strategies as st

from broadcast_adapters.bounces.parser import parse_bounce
from broadcast_adapters.csv_io import CsvCodec
from broadcast_domain import BounceReport, BroadcastService
from broadcast_domain.codec import AttrsMapper
from broadcast_domain.ports import OutgoingMessage
from broadcast_domain.projections.views import fold
from broadcast_domain.testing.bounces import build_dsn
from broadcast_domain.testing.histories import History
from broadcast_domain.testing.reports import failure_report, report_message, report_on
from broadcast_domain.testing.strategies import (
    RecipientCsvFile,
    addresses,
    bounce_reports,
    dsn_messages,
    histories,
    recipient_csv_files,
)

VERP = "bounces+tok3n@mail.example.com"
ORIGINAL_ID = "<original-42@mail.example.com>"
# What the parser takes for a status code inside a diagnostic.
_CODE_LIKE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _parseable_address(address: str) -> bool:
    # The parser trims quotes and dots around addresses it finds in prose.
    return not address.startswith(("'", ".")) and not address.endswith(("'", "."))


@given(
    bounce_reports(actions=st.sampled_from(["failed", "delayed"])),
    st.data(),
)
def test_parser_reads_every_dsn_variant_back(report: BounceReport, data: st.DataObject) -> None:
    """Recipient, action, status, reply code, diagnostic, date and correlation hints survive."""
    assume(not _CODE_LIKE.search(report.diagnostic))
    assume(_parseable_address(report.recipient))
    raw = data.draw(dsn_messages(report, verp_address=VERP, original_message_id=ORIGINAL_ID))
    parsed = parse_bounce(raw)
    [got] = parsed.reports
    enhanced = "." in report.status
    expected_status = report.status if enhanced else f"{report.status[0]}.0.0"
    expected_reply = {"4": "451", "5": "550"}[report.status[0]] if enhanced else report.status
    assert got.recipient == report.recipient  # as the report writes it
    assert got.action == report.action
    assert got.status == expected_status
    assert got.reply_code == expected_reply
    assert got.permanent == (report.action == "failed" and report.status.startswith("5"))
    assert got.diagnostic == _collapse(f"{expected_reply} {expected_status} {report.diagnostic}")
    assert parsed.date == report.reported_at.replace(microsecond=0).astimezone(UTC)
    assert VERP in parsed.envelope_candidates
    assert set(parsed.original_message_ids) <= {ORIGINAL_ID}


@given(bounce_reports(actions=st.sampled_from(["complaint", "autoreply"])))
def test_parser_reads_complaints_and_autoreplies_back(report: BounceReport) -> None:
    """A complaint gives an ARF complaint, an auto-reply an autoreply, for the recipient."""
    assume(_parseable_address(report.recipient))
    report = attrs.evolve(report, feedback_type="abuse")
    parsed = parse_bounce(report_message(report, original_message_id=ORIGINAL_ID))
    [got] = parsed.reports
    assert (got.action, got.recipient) == (report.action, report.recipient)
    assert ORIGINAL_ID in parsed.original_message_ids


@given(
    bounce_reports(actions=st.sampled_from(["failed", "delayed"])),
    addresses(),
    st.sampled_from(["\r\n", "\n", "\r"]),
    st.booleans(),
    st.sampled_from([None, "552", "421"]),
)
def test_a_report_on_a_delivery_names_it_and_quotes_its_headers(
    report: BounceReport,
    other: str,
    line_ending: str,
    verp: bool,
    reply_code: str | None,
) -> None:
    """report_on goes to the VERP sender or plain return path and quotes the delivery's id."""
    assume(not _CODE_LIKE.search(report.diagnostic))
    assume(_parseable_address(report.recipient) and _parseable_address(other))
    assume(other.lower() != report.recipient.lower())
    delivery = OutgoingMessage(
        key="k1",
        envelope_from=VERP,
        recipient=report.recipient,
        message_id=ORIGINAL_ID,
        data=f"From: news@example.com\r\nMessage-ID: {ORIGINAL_ID}\r\n\r\nbody\r\n".encode(),
    )
    also = failure_report(other, reported_at=report.reported_at, action=report.action)
    raw = report_on(
        delivery,
        report,
        verp=verp,
        line_ending=line_ending,
        reply_code=reply_code,
        also=[also],
    )
    parsed = parse_bounce(raw)
    got = {r.recipient: r for r in parsed.reports}
    assert set(got) == {report.recipient, other}
    if reply_code is not None:
        assert {r.reply_code for r in parsed.reports} == {reply_code}
    assert ORIGINAL_ID in parsed.original_message_ids
    assert (VERP in parsed.envelope_candidates) == verp
    assert (b"\n" in raw) == (line_ending != "\r")


@given(addresses())
def test_drawn_addresses_are_parseable_by_the_parser_apart_from_edge_quotes(address: str) -> None:
    """Every drawn address is found whole by the parser unless it starts or ends with a quote."""
    assume(_parseable_address(address))
    report = BounceReport(
        recipient=address,
        status="5.1.1",
        diagnostic="",
        permanent=True,
        reported_at=__import__("datetime").datetime(2026, 1, 1, tzinfo=UTC),
    )
    [got] = parse_bounce(report_message(report)).reports
    assert got.recipient == address


@given(recipient_csv_files())
def test_csv_import_finds_the_drawn_contacts_and_bad_lines(file: RecipientCsvFile) -> None:
    """The codec reads each drawn file to its contacts, problem lines and duplicate count."""
    result = CsvCodec().parse_recipients(file.data, max_rows=1000, max_bytes=1_000_000)
    assert result.contacts == file.contacts
    assert tuple(p.line for p in result.problems) == file.problem_lines
    assert result.duplicates == file.duplicates


def _versions_are_consecutive(history: History) -> bool:
    seen: Counter[object] = Counter()
    for _, event in history:
        seen[event.originator_id] += 1
        if event.originator_version != seen[event.originator_id]:
            return False
    return True


@given(histories())
def test_histories_have_consecutive_positions_and_versions_and_round_trip_the_codec(
    history: History,
) -> None:
    """Positions run 1..n, each aggregate's versions 1..k, and every event survives the mapper."""
    assert [p for p, _ in history] == list(range(1, len(history) + 1))
    assert _versions_are_consecutive(history)
    mapper = AttrsMapper()
    for _, event in history:
        stored = mapper.to_stored_event(event)
        assert mapper.to_domain_event(stored) == event


@given(histories())
def test_a_history_recorded_in_a_store_replays_to_consistent_projections(history: History) -> None:
    """Written to an event log, a drawn history projects to the fold of itself and verifies."""
    svc = BroadcastService.open(
        "memory://", return_path="bounces@mail.example.com", signing_key=b"k" * 32
    )
    try:
        svc.events.put([e for _, e in history])
        svc.catch_up()
        assert svc.verify_projections() == []
        expected = fold(history)
        for bid, counts in expected.counts.items():
            summary = svc.summary(bid)
            assert summary.delivered == summary.succeeded + summary.errors
            assert (summary.scheduled, summary.sending, summary.errors) == (
                counts.scheduled,
                counts.sending,
                counts.errors,
            )
    finally:
        svc.close()


def test_build_dsn_writes_the_codes_it_is_given() -> None:
    """build_dsn writes 'smtp; <reply> <status>' from its arguments, and the parser reads them."""
    message = OutgoingMessage(
        key="k1",
        envelope_from=VERP,
        recipient="taro@example.jp",
        message_id=ORIGINAL_ID,
        data=b"Message-ID: <original-42@mail.example.com>\r\n\r\nbody\r\n",
    )
    [got] = parse_bounce(build_dsn(message, status="5.2.2", reply_code="552")).reports
    assert (got.status, got.reply_code) == ("5.2.2", "552")
