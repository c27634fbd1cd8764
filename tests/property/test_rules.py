"""SPEC section 2 rules as properties of the domain (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import assume, given
from hypothesis import strategies as st

from broadcast_domain import BounceReport, DeliveryStatus
from broadcast_domain.domain.allowance import allowance_left
from broadcast_domain.domain.events import RecipientEvent, Scheduled
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.recipient import Recipient, derive_report_id, recipient_id
from broadcast_domain.projections.views import fold, month_of
from broadcast_domain.testing.strategies import bounce_reports

T0 = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
POLICY = DeliveryPolicy()

offsets = st.integers(min_value=-3600, max_value=48 * 3600).map(lambda s: timedelta(seconds=s))
reports = bounce_reports(
    recipient="a@example.com",
    reported_at=st.datetimes(
        min_value=datetime(2026, 11, 29), max_value=datetime(2026, 12, 3), timezones=st.just(UTC)
    ),
)


def new_recipient(address: str = "a@example.com", position: int = 0) -> Recipient:
    bid = uuid4()
    return Scheduled(
        originator_id=recipient_id(bid, address),
        originator_version=1,
        timestamp=T0,
        broadcast_id=bid,
        account_id="acme",
        address=address,
        position=position,
    ).apply(None)


def run(state: Recipient, events: list[RecipientEvent] | tuple[RecipientEvent, ...]) -> Recipient:
    for e in events:
        state = e.apply(state)
    return state


def succeeded() -> Recipient:
    r = new_recipient()
    r = run(r, r.start_attempt(now=T0, message_id="<m@x>", policy=POLICY))
    return run(r, r.record_reply(code=250, text="ok", now=T0, policy=POLICY))


def ingest(state: Recipient, report: BounceReport, received: datetime) -> tuple[str, Recipient]:
    kind, events = state.receive_report(
        report,
        report_id=derive_report_id(report),
        received_at=received,
        now=received,
        policy=POLICY,
    )
    return kind, run(state, list(events))


@given(
    st.lists(st.tuples(reports, offsets), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
    st.lists(st.integers(min_value=0, max_value=5), max_size=4),
)
def test_final_state_does_not_depend_on_order_or_duplicates(items, rnd, dup_picks) -> None:  # type: ignore[no-untyped-def]
    """Applying the same reports in any order, with duplicates, ends in the same state."""
    # A report id names one report: two different reports never share one.
    ids = {derive_report_id(rep): rep for rep, _ in items}
    assume(len(ids) == len({rep for rep, _ in items}))
    pairs = [(rep, T0 + off) for rep, off in items]
    base = succeeded()
    state_a = base
    for rep, received in pairs:
        _, state_a = ingest(state_a, rep, received)
    shuffled = list(pairs) + [pairs[i % len(pairs)] for i in dup_picks]
    rnd.shuffle(shuffled)
    state_b = base
    for rep, received in shuffled:
        _, state_b = ingest(state_b, rep, received)
    assert state_a == state_b


@given(reports, offsets)
def test_failure_applies_only_within_the_bounce_window(
    report: BounceReport, offset: timedelta
) -> None:
    """A failure report turns SUCCEEDED into ERROR iff received within the window.

    One received before the delivery was handed over cannot be about it: ignored.
    """
    assume(report.action == "failed")
    kind, state = ingest(succeeded(), report, T0 + offset)
    if offset < timedelta(0):
        assert kind == "ignored"
        assert state.status is DeliveryStatus.SUCCEEDED
    elif offset <= POLICY.bounce_window:
        assert kind == "applied" and state.status is DeliveryStatus.ERROR
    else:
        assert kind == "late"
        assert state.status is DeliveryStatus.SUCCEEDED


@given(reports, offsets)
def test_same_report_twice_records_one_event(report: BounceReport, offset: timedelta) -> None:
    """The second ingestion of a report records nothing."""
    _, once = ingest(succeeded(), report, T0 + offset)
    kind, twice = ingest(once, report, T0 + offset)
    assert twice == once
    assert kind in ("duplicate", "late", "ignored")


@given(reports, offsets)
def test_delays_autoreplies_and_complaints_are_never_errors(
    report: BounceReport, offset: timedelta
) -> None:
    """Only an action 'failed' can make an error."""
    assume(report.action != "failed")
    _, state = ingest(succeeded(), report, T0 + offset)
    assert state.status is DeliveryStatus.SUCCEEDED


commands = st.lists(
    st.one_of(
        st.tuples(st.just("reply"), st.sampled_from([250, 451, 550, 0])),
        st.tuples(st.just("report"), reports),
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=20 * 3600)),
    ),
    max_size=15,
)


@given(commands)
def test_error_never_turns_back_into_success(cmds) -> None:  # type: ignore[no-untyped-def]
    """Whatever happens after an ERROR, the recipient stays ERROR."""
    state = new_recipient()
    now = T0
    seen_error = False
    for kind, arg in cmds:
        if kind == "wait":
            now += timedelta(seconds=arg)
            continue
        if state.is_due(now):
            state = run(state, state.start_attempt(now=now, message_id="<m@x>", policy=POLICY))
        if kind == "reply":
            state = run(state, state.record_reply(code=arg, text="t", now=now, policy=POLICY))
        else:
            _, state = ingest(state, arg, now)
        if seen_error:
            assert state.status is DeliveryStatus.ERROR
        seen_error = seen_error or state.status is DeliveryStatus.ERROR


@given(st.lists(st.sampled_from([451, 0]), min_size=1, max_size=12), st.integers(1, 6))
def test_4xx_stays_sending_until_attempts_are_used_up(codes: list[int], max_attempts: int) -> None:
    """Deferrals keep SENDING; the attempt that reaches max_attempts makes ERROR."""
    policy = DeliveryPolicy(max_attempts=max_attempts)
    state = new_recipient()
    now = T0
    for code in codes:
        if state.status is DeliveryStatus.ERROR:
            break
        assert state.is_due(now)
        state = run(state, state.start_attempt(now=now, message_id="<m@x>", policy=policy))
        state = run(state, state.record_reply(code=code, text="later", now=now, policy=policy))
        if state.attempts < max_attempts:
            assert state.status is DeliveryStatus.SENDING
            assert state.retry_at is not None and state.retry_at > now
            now = state.retry_at
        else:
            assert state.status is DeliveryStatus.ERROR


@given(
    st.lists(st.tuples(st.sampled_from([250, 451, 550]), reports, offsets), min_size=1, max_size=25)
)
def test_counts_add_up_and_month_counts_each_outcome_once(rows) -> None:  # type: ignore[no-untyped-def]
    """delivered = succeeded + errors; all counts add up; each outcome is counted once."""
    history = []
    position = 0
    bid = uuid4()
    for i, (code, report, offset) in enumerate(rows):
        r = Scheduled(
            originator_id=recipient_id(bid, f"u{i}@example.com"),
            originator_version=1,
            timestamp=T0,
            broadcast_id=bid,
            account_id="acme",
            address=f"u{i}@example.com",
            position=i,
        )
        events: list[RecipientEvent] = [r]
        state = r.apply(None)
        new = state.start_attempt(now=T0, message_id=f"<m{i}@x>", policy=POLICY)
        state = run(state, new)
        events += new
        new = state.record_reply(code=code, text="t", now=T0, policy=POLICY)
        state = run(state, new)
        events += new
        _, more = state.receive_report(
            report,
            report_id=derive_report_id(report),
            received_at=T0 + offset,
            now=T0 + offset,
            policy=POLICY,
        )
        events += more
        for e in events:
            position += 1
            history.append((position, e))
    views = fold(history)
    c = views.counts[bid]
    for n in (c.scheduled, c.sending, c.succeeded, c.errors, c.unacknowledged):
        assert n >= 0
    assert c.delivered == c.succeeded + c.errors
    assert c.scheduled + c.sending + c.delivered == len(rows)
    states = list(views.recipients.values())
    assert sum(views.monthly.values()) == sum(1 for s in states if s.status.is_delivered)
    for s in states:
        if s.first_outcome_at is not None:
            assert views.monthly[("acme", *month_of(s.first_outcome_at, "UTC"))] >= 1


@given(st.none() | st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_allowance_never_admits_more_than_the_limit(
    limit: int | None, counted: int, in_flight: int
) -> None:
    """count + in-flight + what is admitted never passes the limit (unless already past)."""
    left = allowance_left(limit, counted, in_flight)
    if limit is None:
        assert left is None
    else:
        assert left is not None and left >= 0
        assert counted + in_flight + left <= max(limit, counted + in_flight)


@given(reports)
def test_only_errors_can_be_acknowledged_once(report: BounceReport) -> None:
    """Acknowledging an ERROR records one event, a second time none."""
    assume(report.action == "failed")
    _, state = ingest(succeeded(), report, T0)
    first = state.acknowledge(by="u", now=T0)
    assert len(first) == 1
    assert run(state, first).acknowledge(by="u", now=T0) == []


@given(st.uuids(), st.integers(min_value=0), st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"))
def test_a_changed_verp_token_never_verifies(rid, where: int, char: str) -> None:  # type: ignore[no-untyped-def]
    """Any single-character change of a genuine token is refused."""
    from broadcast_domain.domain.verp import Verp

    verp = Verp("bounces@mail.example.com", b"k" * 32)
    token = verp.token(rid)
    assert verp.verify(token) == rid
    i = where % len(token)
    assume(token[i] != char)
    assert verp.verify(token[:i] + char + token[i + 1 :]) is None
