"""The bounce-intake rules of SPEC section 2, as properties over generated reports.

Each example opens a fresh in-memory service with two accounts whose
broadcasts were dispatched, then throws reports at it: normalised reports that
carry one delivery's correlation and name another, raw reports re-wrapped in
other transport headers, reports that write the address in other case or name
other addresses, oversized and early reports. After each, the recipients that
must not change are checked event by event.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import get_args

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcast_adapters.bounces.parser import parse_bounce
from broadcast_domain import BounceReport, DeliveryStatus
from broadcast_domain.application import intake
from broadcast_domain.domain.recipient import OUTCOME_KINDS, Recipient, ReportOutcome
from broadcast_domain.domain.unmatched import (
    EXCERPT_BYTES,
    canonical_raw,
    message_digest,
    report_excerpt,
)
from broadcast_domain.domain.values import normalise_address
from broadcast_domain.ports import ParsedMessage
from broadcast_domain.testing.intake import (
    Delivery,
    World,
    dispatched_world,
    recase,
    rewrap,
    transport_changes,
)
from broadcast_domain.testing.reports import (
    dsn_message,
    failure_report,
    plain_return_path,
    report_message,
    report_on,
)

ACCOUNTS = {
    "acme": ["a0@example.org", "a1@example.org", "shared@example.net"],
    "other": ["b0@example.org", "b1@example.com", "shared@example.net"],
}
STRANGERS = ["stranger@example.net", "list-member@lists.example.org", "postmaster@example.org"]
CASES = st.sampled_from(["as-is", "domain", "local", "all", "mixed"])
STATUSES = st.sampled_from(["5.1.1", "5.2.2", "4.2.2", "550", "5.7.1", "4.4.7"])
DIAGNOSTICS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40
)


HOSTILE: Counter[str] = Counter()
"""Hostile inputs tried per category in this run (printed at the end with ``pytest -s``)."""


@pytest.fixture(scope="module", autouse=True)
def _print_hostile_counts() -> Iterator[None]:
    """Print how many hostile inputs each category tried, every one refused as it must be."""
    yield
    print("\nhostile inputs tried, nothing applied that should not be:", dict(HOSTILE))


def world() -> World:
    return dispatched_world(ACCOUNTS)


def cased(address: str, how: str) -> str:
    return address if how == "as-is" else recase(address, how)


def state_of(w: World, d: Delivery) -> Recipient:
    state = Recipient.fold(w.svc.history(d.broadcast_id, d.address))  # type: ignore[arg-type]
    assert state is not None
    return state


def grew(w: World, before: dict[str, int]) -> set[str]:
    """The deliveries whose history gained events since ``before``."""
    return {k for k, n in w.history_sizes().items() if n != before[k]}


def key(d: Delivery) -> str:
    return f"{d.account_id}/{d.address}"


# --- a report never crosses recipients (issue 16 item 3) -------------------------------


@given(data=st.data())
def test_a_normalised_report_never_changes_a_recipient_it_does_not_name(
    data: st.DataObject,
) -> None:
    """A report naming one delivery but carrying another's token or Message-ID changes nothing.

    Pairs are drawn across both accounts; when the two deliveries share an
    address (one person on both lists), the report may apply to the correlated
    delivery, never to the other one.
    """
    w = world()
    carrier = data.draw(st.sampled_from(w.deliveries), label="carrier")
    named = data.draw(st.sampled_from([d for d in w.deliveries if d != carrier]), label="named")
    how = data.draw(st.sampled_from(["token", "message_id", "both"]))
    action = data.draw(st.sampled_from(["failed", "failed", "complaint"]))
    status = data.draw(STATUSES)
    report = BounceReport(
        recipient=cased(named.address, data.draw(CASES)),
        status=status,
        diagnostic=data.draw(DIAGNOSTICS),
        permanent=status.startswith("5"),
        reported_at=w.clock(),
        verp_token=w.token(carrier) if how != "message_id" else None,
        message_id=carrier.message.message_id if how != "token" else None,
        report_id=data.draw(st.none() | st.just("sendgrid:evt-1")),
        action=action,
    )
    before = w.history_sizes()
    outcome = w.svc.record_bounce(report)
    if normalise_address(named.address) != normalise_address(carrier.address):
        HOSTILE["normalised report naming one delivery, correlated to another"] += 1
        if named.account_id != carrier.account_id:
            HOSTILE["... of which across accounts"] += 1
        assert outcome.kind == "unmatched"
        assert outcome.address is None and outcome.broadcast_id is None
        assert carrier.address not in outcome.detail  # nothing leaks about the other tenant
        assert grew(w, before) == set()
    else:
        HOSTILE["same address on two accounts, the other one's correlation"] += 1
        assert outcome.kind == "applied"
        assert grew(w, before) == {key(carrier)}
    # The control: the same report naming the carrier's own address is taken.
    own = w.svc.record_bounce(
        BounceReport(
            recipient=cased(carrier.address, data.draw(CASES)),
            status=status,
            diagnostic=report.diagnostic + " (own)",
            permanent=report.permanent,
            reported_at=report.reported_at,
            verp_token=report.verp_token,
            message_id=report.message_id,
            action=action,
        )
    )
    assert own.kind == "applied" and own.address == carrier.address
    assert grew(w, before) == {key(carrier)}


@given(data=st.data())
def test_a_notice_listing_several_recipients_is_checked_recipient_by_recipient(
    data: st.DataObject,
) -> None:
    """One notice listing several recipients under one token: its own alone applies."""
    w = world()
    carrier = data.draw(st.sampled_from(w.deliveries))
    listed = data.draw(
        st.lists(
            st.sampled_from([d.address for d in w.deliveries] + STRANGERS),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    token = w.token(carrier)
    before = w.history_sizes()
    outcomes = [
        w.svc.record_bounce(
            failure_report(
                address,
                reported_at=w.clock(),
                verp_token=token,
                message_id=data.draw(
                    st.none() | st.sampled_from([d.message.message_id for d in w.deliveries])
                ),
                status="5.1.1",
            )
        )
        for address in listed
    ]
    for address, outcome in zip(listed, outcomes, strict=True):
        if address == carrier.address:
            assert outcome.kind == "applied"
        else:
            HOSTILE["recipient of a several-recipient notice under another's token"] += 1
            assert outcome.kind == "unmatched"
    assert grew(w, before) == ({key(carrier)} if carrier.address in listed else set())


# --- a report's identity is what it says (issue 15 item 3) -----------------------------


@given(
    change=transport_changes(),
    form=st.sampled_from(["verp", "message_id", "complaint"]),
    later=st.integers(min_value=0, max_value=20 * 3600),
    envelope=st.booleans(),
    index=st.integers(min_value=0, max_value=5),
)
def test_a_report_rewrapped_in_other_transport_headers_is_a_duplicate(
    change: object, form: str, later: int, envelope: bool, index: int
) -> None:
    """Another Date, Message-ID, Received lines, line ends or arrival time: the same report."""
    w = world()
    d = w.deliveries[index]
    m = d.message
    report = failure_report(
        d.address,
        reported_at=w.clock(),
        status="5.1.1" if form != "complaint" else "5.7.1",
        diagnostic="Recipient address rejected: User unknown",
        action="complaint" if form == "complaint" else "failed",
    )
    raw = report_on(
        m, report, verp=form == "verp", original="message" if form == "complaint" else "headers"
    )
    first = w.svc.record_bounce_message(raw)
    assert [o.kind for o in first] == ["applied"]
    before = w.history_sizes()
    w.clock.advance(seconds=later)
    again = w.svc.record_bounce_message(
        rewrap(raw, change),  # type: ignore[arg-type]
        envelope_recipient=m.envelope_from if envelope and form == "verp" else None,
    )
    HOSTILE[f"re-wrapped raw report ({form})"] += 1
    assert [o.kind for o in again] == ["duplicate"]
    assert again[0].report_id == first[0].report_id
    assert grew(w, before) == set()
    # The control: another failure of the same delivery is not the same report.
    other = report_on(
        m,
        failure_report(
            d.address,
            reported_at=w.clock(),
            status="5.2.2",
            diagnostic="Mailbox full",
            action=report.action,
        ),
        verp=form == "verp",
        original="message" if form == "complaint" else "headers",
    )
    assert [o.kind for o in w.svc.record_bounce_message(other)] == ["applied"]


@given(
    data=st.data(),
    later=st.integers(min_value=1, max_value=20 * 3600),
    spacing=st.sampled_from([" ", "  ", "\n ", "\t"]),
)
def test_a_normalised_report_printed_again_later_is_a_duplicate(
    data: st.DataObject, later: int, spacing: str
) -> None:
    """The same failure of the same delivery, reported at another time or re-folded: duplicate."""
    w = world()
    d = data.draw(st.sampled_from(w.deliveries))
    words = data.draw(
        st.lists(st.from_regex(r"[A-Za-z0-9.]{1,8}", fullmatch=True), min_size=1, max_size=6)
    )
    first = w.svc.record_bounce(
        failure_report(
            d.address, reported_at=w.clock(), verp_token=w.token(d), diagnostic=" ".join(words)
        )
    )
    assert first.kind == "applied"
    before = w.history_sizes()
    w.clock.advance(seconds=later)
    again = w.svc.record_bounce(
        failure_report(
            d.address.upper(),
            reported_at=w.clock(),
            message_id=d.message.message_id,
            diagnostic=spacing.join(words).upper(),
        )
    )
    HOSTILE["normalised report re-sent later, re-folded, re-cased"] += 1
    assert again.kind == "duplicate"
    assert grew(w, before) == set()


# --- matching follows the signed token (issue 15 item 4) -------------------------------


@given(
    case=CASES,
    others=st.lists(
        st.sampled_from([*STRANGERS, "a1@example.org", "shared@example.net", "b0@example.org"]),
        max_size=4,
        unique=True,
    ),
    forwarded=st.booleans(),
    statuses=st.lists(STATUSES.filter(lambda s: s != "4.4.7"), min_size=5, max_size=5),
)
def test_a_token_names_the_delivery_whatever_else_the_report_names(
    case: str, others: list[str], forwarded: bool, statuses: list[str]
) -> None:
    """A raw report to a VERP address is about its delivery; other addresses in it get nothing.

    The report writes the address in other case, lists other addresses (some of
    them our own recipients, in either account), or, forwarded, names only others.
    """
    w = world()
    d = next(x for x in w.deliveries if x.address == "a0@example.org")
    at = w.clock()
    main = failure_report(
        "forward-target@elsewhere.example" if forwarded else cased(d.address, case),
        reported_at=at,
        status=statuses[0],
    )
    also = [
        failure_report(o, reported_at=at, status=s)
        for o, s in zip(others, statuses[1:], strict=False)
    ]
    before = w.history_sizes()
    HOSTILE["other address listed in a report to a VERP address"] += len(also)
    HOSTILE["our other recipients listed in a report to a VERP address"] += sum(
        o in ACCOUNTS["acme"] or o in ACCOUNTS["other"] for o in others
    )
    outcomes = w.svc.record_bounce_message(report_on(d.message, main, also=also))
    applied = [o for o in outcomes if o.kind == "applied"]
    assert applied and all(o.address == d.address for o in applied)
    if not forwarded:
        assert len(applied) == 1
        assert all(o.kind == "ignored" for o in outcomes if o.kind != "applied")
    assert grew(w, before) == {key(d)}
    assert state_of(w, d).status is DeliveryStatus.ERROR
    assert w.svc.unmatched_reports().total == 0


@given(case=CASES, known_id=st.booleans())
def test_without_a_token_an_address_alone_correlates_nothing(case: str, known_id: bool) -> None:
    """A report to the plain return path naming our recipient, no known Message-ID: unmatched."""
    w = world()
    d = w.deliveries[0]
    report = failure_report(cased(d.address, case), reported_at=w.clock())
    raw = dsn_message(
        report,
        verp_address=plain_return_path(d.message.envelope_from),
        original_message_id=d.message.message_id if known_id else "<unknown@elsewhere.example>",
    )
    before = w.history_sizes()
    outcomes = w.svc.record_bounce_message(raw)
    if known_id:
        assert [o.kind for o in outcomes] == ["applied"]
        assert grew(w, before) == {key(d)}
    else:
        HOSTILE["our address without a token or a known Message-ID"] += 1
        assert [o.kind for o in outcomes] == ["unmatched"]
        assert grew(w, before) == set()


# --- bounded storage and the size limit (issue 16 items 1 and 2) -----------------------


@given(
    raw=st.binary(max_size=300)
    | st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"\n\n"]), max_size=60).map(b"".join),
    chunk=st.integers(min_value=2, max_value=17),
)
def test_the_streamed_digest_is_the_digest_of_the_canonical_message(raw: bytes, chunk: int) -> None:
    """Hashing a chunk at a time gives sha256(canonical_raw(raw)), wherever the chunks fall."""
    assert message_digest(raw, chunk=chunk) == hashlib.sha256(canonical_raw(raw)).hexdigest()


def _padded(raw: bytes, where: int, size: int) -> bytes:
    """``raw`` (an LF DSN) with ``size`` bytes of text lines added at the end of part ``where``."""
    head, _, _ = raw.partition(b"\n\n")
    boundary = head.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    marker = b"\n--" + boundary
    at = -1
    for _ in range(where + 2):
        at = raw.find(marker, at + 1)
    line = b"padding text of a very talkative reporting server\n"
    return raw[:at] + b"\n" + line * (size // len(line) + 1) + raw[at:]


@given(
    where=st.sampled_from([0, 1]),
    size=st.integers(min_value=EXCERPT_BYTES, max_value=4 * EXCERPT_BYTES),
    original=st.sampled_from(["headers", "message"]),
    quote_size=st.integers(min_value=0, max_value=3 * EXCERPT_BYTES),
)
def test_an_excerpt_is_bounded_and_reads_as_the_whole_message(
    where: int, size: int, original: str, quote_size: int
) -> None:
    """A large DSN's excerpt is at most about 64 KiB and its reports read the same as the whole."""
    w = world()
    d = w.deliveries[1]
    m = d.message
    quoted = m.data + b"x" * quote_size
    raw = report_message(
        failure_report(d.address, reported_at=w.clock(), status="5.2.2", diagnostic="Mailbox full"),
        verp_address=m.envelope_from,
        original_message_id=m.message_id,
        line_ending="\n",
        charset="us-ascii",
        original=original,  # type: ignore[arg-type]
        quote=quoted,
    )
    raw = _padded(raw, where, size)
    excerpt = report_excerpt(raw)
    assert len(excerpt) <= EXCERPT_BYTES + 256
    whole, part = parse_bounce(raw), parse_bounce(excerpt)
    assert [(r.action, r.recipient, r.status) for r in part.reports] == [
        (r.action, r.recipient, r.status) for r in whole.reports
    ]
    assert set(part.envelope_candidates) >= {m.envelope_from}


@given(extra=st.integers(min_value=-2, max_value=2))
def test_a_message_over_the_size_limit_is_ignored_unread(extra: int) -> None:
    """Over ``max_bounce_bytes``: ``ignored`` with why, nothing recorded; at the limit: read."""
    limit = 80_000
    w = dispatched_world(ACCOUNTS, max_bounce_bytes=limit)
    d = w.deliveries[0]
    raw = report_on(d.message, failure_report(d.address, reported_at=w.clock()), line_ending="\n")
    raw = _padded(raw, 0, limit)
    raw = raw[: raw.index(b"padding")] + raw[raw.index(b"padding") + len(raw) - limit - extra :]
    assert len(raw) == limit + extra
    position = w.svc.events.max_position()
    outcomes = w.svc.record_bounce_message(raw)
    if extra > 0:
        HOSTILE["over the size limit"] += 1
        assert [o.kind for o in outcomes] == ["ignored"]
        assert "max_bounce_bytes" in outcomes[0].detail
        assert w.svc.events.max_position() == position
    else:
        assert [o.kind for o in outcomes] == ["applied"]


class _BlindParser:
    """The real parser, or one that sees no correlation hint (to make a report unmatched)."""

    def __init__(self) -> None:
        self.blind = True
        self.sizes: list[int] = []

    def __call__(self, raw: bytes) -> ParsedMessage:
        self.sizes.append(len(raw))
        parsed = parse_bounce(raw)
        if self.blind:
            return attrs.evolve(parsed, envelope_candidates=(), original_message_ids=())
        return parsed


@given(
    size=st.integers(min_value=EXCERPT_BYTES, max_value=6 * EXCERPT_BYTES),
    where=st.sampled_from([0, 1]),
)
def test_a_large_unmatched_report_is_kept_as_an_excerpt_and_retried_from_it(
    size: int, where: int
) -> None:
    """The log keeps the excerpt and the digest of the whole; a retry reads the excerpt."""
    parser = _BlindParser()
    w = dispatched_world(ACCOUNTS, bounce_parser=parser)
    d = w.deliveries[2]
    raw = _padded(
        report_on(
            d.message,
            failure_report(d.address, reported_at=w.clock()),
            line_ending="\n",
            charset="us-ascii",
        ),
        where,
        size,
    )
    assert [o.kind for o in w.svc.record_bounce_message(raw)] == ["unmatched"]
    (kept,) = w.svc.unmatched_reports().items
    assert len(kept.raw) <= EXCERPT_BYTES + 256 and kept.truncated
    assert kept.digest == message_digest(raw) and kept.size == len(raw)
    assert max(parser.sizes) <= EXCERPT_BYTES + 256  # the parser never saw the whole message
    parser.blind = False
    assert [o.kind for o in w.svc.retry_unmatched()] == ["applied"]
    assert w.svc.unmatched_reports().total == 0
    assert state_of(w, d).status is DeliveryStatus.ERROR


# --- reports received before the delivery (issue 16 item 9) -----------------------------


@given(
    before=st.integers(min_value=1, max_value=7 * 86400),
    raw_path=st.booleans(),
    index=st.integers(min_value=0, max_value=5),
)
def test_a_report_received_before_the_delivery_was_sent_changes_nothing(
    before: int, raw_path: bool, index: int
) -> None:
    """Received before the first hand-over: ``ignored`` with the reason, nothing recorded."""
    w = world()
    d = w.deliveries[index]
    sent_at = state_of(w, d).first_sent_at
    assert sent_at is not None
    received = sent_at - timedelta(seconds=before)
    report = failure_report(d.address, reported_at=received, verp_token=w.token(d))
    was = w.history_sizes()
    if raw_path:
        (outcome,) = w.svc.record_bounce_message(report_on(d.message, report), received_at=received)
    else:
        outcome = w.svc.record_bounce(report, received_at=received)
    HOSTILE["received before the delivery was sent"] += 1
    assert outcome.kind == "ignored"
    assert "before the delivery" in outcome.detail
    assert grew(w, was) == set()


@given(after=st.integers(min_value=0, max_value=3600), reply=st.sampled_from([250, 451]))
def test_a_report_that_beats_the_reply_still_applies(after: int, reply: int) -> None:
    """Received after the hand-over began: applied, whether the reply was a success or pending."""
    w = dispatched_world({"acme": ["a0@example.org"]}, replies={"a0@example.org": (reply, "reply")})
    (d,) = w.deliveries
    state = state_of(w, d)
    assert state.status is (DeliveryStatus.SUCCEEDED if reply == 250 else DeliveryStatus.SENDING)
    assert state.first_sent_at is not None
    received = state.first_sent_at + timedelta(seconds=after)
    outcome = w.svc.record_bounce(
        failure_report(d.address, reported_at=received, verp_token=w.token(d)), received_at=received
    )
    assert outcome.kind == "applied"
    assert state_of(w, d).status is DeliveryStatus.ERROR


# --- one definition of the outcome kinds (issue 14 item 6) -----------------------------


def test_the_outcome_kinds_have_one_definition() -> None:
    """The intake, the ingest counts and the domain share one tuple of kinds."""
    assert get_args(ReportOutcome) == OUTCOME_KINDS
    assert intake.OUTCOME_KINDS is OUTCOME_KINDS
    assert OUTCOME_KINDS == ("applied", "duplicate", "late", "unmatched", "ignored")
