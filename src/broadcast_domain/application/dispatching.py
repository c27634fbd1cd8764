"""Sending: ``dispatch_due`` claims due recipients, hands them over, records the replies.

Claims are recorded (``Sent``) before handing over, so two dispatchers never
both send to one recipient: the loser's write conflicts on the recipient's
version and it moves on. Where an account has a monthly limit, a reservation
event is written in the same transaction as the claims, which serialises the
dispatchers of that account so they never spend the same allowance.
Delivery is at least once: a process that dies after claiming and before
recording the outcome leaves the recipient SENDING; after the lease another
dispatcher sends it again with the same Message-ID.

Decisions come from the write side. A pass over a broadcast asks the views
which recipients are due, a batch at a time (each next batch from the last
position it holds, read while the batch before is on its way), and how many
wait for a retry; the dispatcher keeps what it claimed and handed over in
memory and does not project until the pass is done. A recipient whose row
shows it untouched since it was scheduled is claimed on the row: its claim is
its first attempt, written as the stored row of that Sent event without
building the event or the aggregate (a 2xx reply to a claim is written the
same way); others are read from the event log together and decided on by the
aggregate. Every claim names the recipient's next version, so a row behind the
log loses on the event store and the batch is decided again on the log's
states. Hand-over is a
bounded pipeline: one worker thread sends a batch while the caller's thread
records the previous batch's replies and claims the next one. A batch is
handed to the worker only after its claim is committed, so a crash at any
point leaves every handed-over recipient claimed (SENDING) and nothing lost.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import partial
from os import urandom
from typing import Any, NamedTuple

import attrs

from broadcast_domain.application.eventlog import VersionConflict
from broadcast_domain.application.gateway import Gateway
from broadcast_domain.application.projector import Projector
from broadcast_domain.application.results import DispatchReport
from broadcast_domain.codec import AttrsMapper, Row, attempt_rows_encoder, success_rows_encoder
from broadcast_domain.domain.account import Account
from broadcast_domain.domain.allowance import allowance_id, allowance_left, pause_reason
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import BroadcastEvent, SendsReserved
from broadcast_domain.domain.messages import MessageTemplate, check_address, make_message_id
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.recipient import Bounced, Recipient, RecipientEvent, Succeeded
from broadcast_domain.domain.values import BroadcastStatus, DeliveryStatus, require_aware
from broadcast_domain.domain.verp import Verp
from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import MailTransport, OutgoingMessage, TransportReply
from broadcast_domain.projections.rows import RecipientRow
from broadcast_domain.projections.views import month_of

__all__ = ["DEFAULT_BATCH", "PASS_SIZE", "Dispatcher", "scheduled_state"]

DEFAULT_BATCH = 500
"""Recipients claimed, handed over and recorded together."""

PASS_SIZE = 10_000
"""Due recipients one pass takes, at most; a pass reads them a batch at a time."""

_DEPTH = 2
"""Batches handed over but not yet recorded, at most (the pipeline's bound)."""


class Dispatcher:
    """Dispatches what is due in one store: the ``dispatch_due`` use case."""

    def __init__(
        self,
        gateway: Gateway,
        projector: Projector,
        verp: Verp,
        policy: DeliveryPolicy,
        clock: Callable[[], datetime],
        *,
        batch_size: int = DEFAULT_BATCH,
        pass_size: int = PASS_SIZE,
    ) -> None:
        self.gateway = gateway
        self.projector = projector
        self.verp = verp
        self.policy = policy
        self.clock = clock
        self.batch_size = batch_size
        self.pass_size = pass_size

    def dispatch(
        self,
        transport: MailTransport,
        *,
        now: datetime | None = None,
        max_messages: int | None = None,
        on_progress: Callable[[DispatchReport], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> DispatchReport:
        """Send what is due (see ``BroadcastService.dispatch_due``)."""
        if not isinstance(transport, MailTransport):
            raise InvalidInput(
                "transport must implement MailTransport (send(messages) and close())",
                field="transport",
            )
        if now is not None:
            require_aware(now, "now")
        if max_messages is not None and (
            isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 0
        ):
            raise InvalidInput(
                "max_messages must be a non-negative int or None", field="max_messages"
            )
        clock = self.clock if now is None else (lambda: now)
        run = _Run(
            self,
            transport,
            clock=clock,
            budget=max_messages,
            on_progress=on_progress,
            sleep=sleep,
        )
        return run.go()

    # --- the monthly allowance, shared with configure_account -----------------------------

    def allowance(self, account_id: str, account: Account | None, now: datetime) -> int | None:
        """What the account's monthly limit still admits now (None: unlimited).

        The month's count plus the account's recipients claimed without an
        outcome yet (they will count once they have one) are subtracted from
        the limit. Read from the views, which the caller has caught up.
        """
        if account is None or account.monthly_limit is None:
            return None
        views = self.projector.views
        year, month = month_of(now, account.timezone)
        in_flight = sum(
            views.counts(b.id).sending
            for b in views.due_broadcasts(now)
            if b.account_id == account_id
        )
        return allowance_left(
            account.monthly_limit, views.monthly_count(account_id, year, month), in_flight
        )

    def resume_if_admitted(
        self, state: Broadcast, account: Account | None, now: datetime
    ) -> Broadcast:
        """Resume a paused broadcast when the account's limit admits more; the state after."""
        if state.status is not BroadcastStatus.PAUSED:
            return state
        left = self.allowance(state.account_id, account, now)
        if left is not None and left == 0:
            return state
        return self.change(state.id, lambda b: b.resume(now=now))

    def resume_account(self, account_id: str) -> None:
        """Resume the account's paused broadcasts at once when its new limit admits more."""
        self.projector.catch_up()
        now = self.clock()
        account = self.gateway.account(account_id)
        for b in self.projector.views.due_broadcasts(now):
            if b.account_id == account_id and b.status is BroadcastStatus.PAUSED:
                self.resume_if_admitted(self.gateway.broadcast(b.id), account, now)

    def change(
        self, broadcast_id: uuid.UUID, decide: Callable[[Broadcast], list[BroadcastEvent]]
    ) -> Broadcast:
        """Record what ``decide`` makes of the broadcast's fresh state; the state after."""

        def run() -> tuple[Broadcast, list[BroadcastEvent]]:
            state = self.gateway.broadcast(broadcast_id)
            events = decide(state)
            for e in events:
                state = e.apply(state)
            return state, events

        return self.gateway.decide_and_put(run)


@attrs.define
class _Pass:
    """One pass over a broadcast: what the views said was due, and what may still be sent."""

    bid: uuid.UUID
    now: datetime
    state: Broadcast
    # The account when it has a monthly limit (reservations are needed), else None.
    limited: Account | None
    # What the limit still admits (None: unlimited); spent as claims commit.
    left: int | None
    due: list[RecipientRow]
    # Recipients this pass may take (the pass size, or the budget left).
    want: int
    # Whether more of the pass is still to be read (``due`` holds the batches read so far).
    rest: bool
    # Whether ``due`` is everything due (the views held no more than one pass).
    whole: bool
    size: int
    rate: float | None
    # The version of the account's reservations the allowance was read at, plus what
    # this pass reserved since (a limited account's claims reserve the next version).
    reserved: int = 0
    # Fresh recipients the monthly limit kept back.
    over: int = 0


def _allowance_of(account: Account, now: datetime) -> uuid.UUID:
    year, month = month_of(now, account.timezone)
    return allowance_id(account.account_id, year, month)


def _reservation(p: _Pass, count: int) -> SendsReserved:
    """Reserve ``count`` of the allowance at the version after the one the pass read."""
    account = p.limited
    if account is None:  # pragma: no cover - only limited passes reserve
        raise AssertionError("a reservation needs an account with a monthly limit")
    year, month = month_of(p.now, account.timezone)
    return SendsReserved(
        originator_id=allowance_id(account.account_id, year, month),
        originator_version=p.reserved + 1,
        timestamp=p.now,
        account_id=account.account_id,
        year=year,
        month=month,
        count=count,
    )


def _message_ids(domain: str, count: int) -> list[str]:
    """``count`` fresh Message-IDs, ``<32 random hex digits@domain>``.

    The first is made by ``make_message_id``, which checks the domain; random
    hex digits are always a valid unique part, so the rest are formatted
    directly (the check was a tenth of deciding a claim), from one read of
    the system's randomness.
    """
    if count == 0:
        return []
    digits = urandom(16 * count).hex()
    first = make_message_id(domain, digits[:32])
    return [first, *(f"<{digits[i : i + 32]}@{domain}>" for i in range(32, 32 * count, 32))]


def _retries_in(rows: Sequence[RecipientRow]) -> int:
    return sum(1 for r in rows if r.status is DeliveryStatus.SENDING)


_MAPPER = AttrsMapper()


def _is_fresh(row: RecipientRow) -> bool:
    """Whether the row shows a recipient whose only event is its Scheduled one."""
    return (
        row.status is DeliveryStatus.SCHEDULED
        and row.version == 1
        and row.status_updated_at is not None
    )


def scheduled_state(row: RecipientRow) -> Recipient | None:
    """The state of a recipient whose only event is its Scheduled one, from its row.

    Such a row holds every field of that event (``Recipient.started`` of it is
    the whole state), so the claim needs no read of the log; None for any other
    row. Property-tested against the aggregate.
    """
    if not _is_fresh(row) or row.status_updated_at is None:
        return None
    return Recipient(
        id=row.id,
        version=row.version,
        broadcast_id=row.broadcast_id,
        account_id=row.account_id,
        address=row.address,
        last_name=row.last_name,
        first_name=row.first_name,
        company=row.company,
        contact_id=row.contact_id,
        position=row.position,
        scheduled_at=row.status_updated_at,
        status_updated_at=row.status_updated_at,
    )


class _Claim(NamedTuple):
    """A recipient this call claimed: what handing it over and recording its reply need."""

    id: uuid.UUID
    # The version of the claim's Sent event, and that event's attempt and Message-ID.
    version: int
    attempts: int
    message_id: str
    address: str
    last_name: str
    first_name: str
    company: str
    # The aggregate after the claim when the claim was decided on it; None when it was
    # decided on a fresh row (``row``, claimed at ``at``): built only if a reply needs it.
    state: Recipient | None
    row: RecipientRow | None
    at: datetime


def _attempted(
    state: Recipient, now: datetime, message_id: str, policy: DeliveryPolicy
) -> tuple[list[RecipientEvent], Recipient]:
    """What ``Recipient.start_attempt`` records, and the state after it."""
    new = state.start_attempt(now=now, message_id=message_id, policy=policy)
    for e in new:
        state = e.apply(state)
    return new, state


def _claim_of(state: Recipient, at: datetime) -> _Claim:
    return _Claim(
        state.id,
        state.version,
        state.attempts,
        state.message_id or "",
        state.address,
        state.last_name,
        state.first_name,
        state.company,
        state,
        None,
        at,
    )


class _Run:
    """One ``dispatch_due`` call: its clock, budget, tallies and hand-over pipeline."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        transport: MailTransport,
        *,
        clock: Callable[[], datetime],
        budget: int | None,
        on_progress: Callable[[DispatchReport], None] | None,
        sleep: Callable[[float], None],
    ) -> None:
        self.d = dispatcher
        self.transport = transport
        self.now = clock
        self.budget = budget
        self.on_progress = on_progress
        self.sleep = sleep
        self.sent = self.succeeded = self.errors = self.retried = 0
        self.paused: list[uuid.UUID] = []
        self.completed: list[uuid.UUID] = []
        self.accounts: dict[str, Account | None] = {}
        self.templates: dict[uuid.UUID, MessageTemplate] = {}
        self.checked_return_path = False
        # Recipients of the current pass left SENDING or untouched: the broadcast is
        # complete only when a whole pass leaves none.
        self.unsettled = 0

    def report(self) -> DispatchReport:
        return DispatchReport(
            sent=self.sent,
            succeeded=self.succeeded,
            errors=self.errors,
            retried=self.retried,
            paused=tuple(self.paused),
            completed=tuple(self.completed),
        )

    def go(self) -> DispatchReport:
        projector = self.d.projector
        projector.catch_up()
        for b in projector.views.due_broadcasts(self.now()):
            if self.budget == 0:
                break
            # A pass reads the views at its start: the due recipients, and the allowance,
            # which counts what earlier broadcasts of this call claimed. A pass returns False
            # when more is due than it held, or a claim lost a race: read again then.
            while True:
                projector.catch_up()
                if self._pass(b.id):
                    break
        return self.report()

    def _account(self, account_id: str) -> Account | None:
        if account_id not in self.accounts:
            self.accounts[account_id] = self.d.gateway.account(account_id)
        return self.accounts[account_id]

    # --- one pass over a broadcast -------------------------------------------------------

    def _pass(self, bid: uuid.UUID) -> bool:
        """Dispatch what the views say is due now; True when the broadcast needs no more passes."""
        if self.budget == 0:
            return True
        p = self._open(bid)
        if p is None:
            return True
        with _HandOver(self.transport, self._record, depth=1 if p.rate else _DEPTH) as pipe:
            stopped = self._hand_over(p, pipe)
        if stopped is not None:
            return stopped
        return self._close(p)

    def _open(self, bid: uuid.UUID) -> _Pass | None:
        """Start or resume the broadcast and read what is due; None when nothing may be sent."""
        d = self.d
        now = self.now()
        state = d.gateway.broadcast(bid)
        if state.status in (BroadcastStatus.CANCELLED, BroadcastStatus.SENT):
            return None
        account = self._account(state.account_id)
        if state.status is BroadcastStatus.PAUSED:
            state = d.resume_if_admitted(state, account, now)
        elif state.status is BroadcastStatus.SCHEDULED:
            state = d.change(bid, lambda s: s.start_sending(now=now))
        limited = account if account is not None and account.monthly_limit is not None else None
        if limited is None and state.status is BroadcastStatus.PAUSED:
            return None  # paused, and no limit of ours to resume it by
        reserved = 0
        if limited is not None:
            # The allowance is read from views caught up after this version of the
            # reservations: a reservation written since makes ours conflict, so two
            # dispatchers never spend one allowance (the pass then reads again).
            reserved = d.gateway.log.last_version(_allowance_of(limited, now))
            d.projector.catch_up()
        want = d.pass_size if self.budget is None else min(d.pass_size, self.budget)
        rate = account.send_rate if account is not None else None
        size = d.batch_size
        if rate:
            # About one second of sending per batch, so the rate limit is smooth.
            size = max(1, min(size, int(rate)))
        # The first batch is read alone so that hand-over starts at once; each next
        # batch is read while the one before is on its way (_read_next).
        first = want if want <= size else size
        views = d.projector.views
        due = views.due_recipients(bid, now, first + 1)
        whole = len(due) <= first
        rest = not whole and first < want
        due = due[:first]
        self.unsettled = views.counts(bid).sending - _retries_in(due)
        return _Pass(
            bid=bid,
            now=now,
            state=state,
            limited=limited,
            left=d.allowance(state.account_id, limited, now),
            reserved=reserved,
            due=due,
            want=want,
            rest=rest,
            whole=whole,
            size=size,
            rate=rate,
        )

    def _read_next(self, p: _Pass) -> None:
        """Add the next batch of due rows to ``p.due``: those after the last it holds.

        Nothing was projected since the pass began, so the rows it claimed still
        look due in the views; reading from the last position it holds skips
        them (due rows come in position order). One batch at a time keeps each
        read short while the batch before is on its way.
        """
        take = min(p.size, p.want - len(p.due))
        rows = self.d.projector.views.due_recipients(
            p.bid, p.now, take + 1, after=p.due[-1].position
        )
        more = len(rows) > take
        rows = rows[:take]
        self.unsettled -= _retries_in(rows)
        p.due.extend(rows)
        p.whole = not more
        p.rest = more and len(p.due) < p.want

    def _hand_over(self, p: _Pass, pipe: _HandOver) -> bool | None:
        """Claim the pass's due rows batch by batch and hand each claimed batch over.

        None when every row was dealt with; otherwise what ``_pass`` returns: True
        when the budget ran out, False when a claim lost a race (read again).
        """
        start = 0
        while start < len(p.due):
            if self.budget == 0:
                return True
            step = p.size if self.budget is None else min(p.size, self.budget)
            rows = p.due[start : start + step]
            start += len(rows)
            began = time.monotonic()
            claimed = self._claim_batch(p, rows)
            if claimed is None:
                return False
            if claimed:
                if self.budget is not None:
                    self.budget -= len(claimed)
                pipe.submit(claimed, self._messages(p.state, claimed))
            if p.rest and start >= len(p.due):
                self._read_next(p)
            if claimed and p.rate:
                wait = len(claimed) / p.rate - (time.monotonic() - began)
                if wait > 0:
                    self.sleep(wait)
        return None

    def _close(self, p: _Pass) -> bool:
        """After the hand-over: pause at the limit, or complete when nothing is left."""
        d = self.d
        if p.over and p.limited is not None:
            if p.state.status is not BroadcastStatus.PAUSED:
                year, month = month_of(p.now, p.limited.timezone)
                limit = p.limited.monthly_limit or 0
                reason = pause_reason(limit, year, month, p.limited.timezone)
                d.change(p.bid, partial(Broadcast.pause, reason=reason, now=p.now))
                self.paused.append(p.bid)
            return True
        if self.budget == 0:
            return True
        if not p.whole:
            return False
        if self.unsettled == 0 and p.state.status is not BroadcastStatus.PAUSED:
            d.change(p.bid, partial(Broadcast.complete, now=self.now()))
            self.completed.append(p.bid)
        return True

    # --- claims ---------------------------------------------------------------------------

    def _claim_batch(self, p: _Pass, rows: Sequence[RecipientRow]) -> list[_Claim] | None:
        """Claim the due recipients among ``rows``; None when another writer won a race.

        A recipient the views show untouched since it was scheduled is claimed on
        the state its row describes (the one Scheduled event), without reading the
        log; any other is loaded from the log. The claim names each recipient's
        next version, so a row behind the log (another dispatcher claimed it
        meanwhile) conflicts and nothing of the batch is written: the batch is
        then decided again on the log's states, where that recipient is not due.
        """
        candidates, from_rows = self._candidates(rows)
        claimed = self._try_claim(p, rows, candidates)
        if claimed is None and from_rows and p.limited is None:
            # Without a reservation nothing but the recipients' versions can have
            # conflicted; with one, the allowance itself may be stale: read again.
            loaded = self.d.gateway.recipients(r.id for r in rows)
            claimed = self._try_claim(p, rows, [loaded[r.id] for r in rows if r.id in loaded])
        return claimed

    def _candidates(
        self, rows: Sequence[RecipientRow]
    ) -> tuple[list[RecipientRow | Recipient], bool]:
        """What to decide each claim on, and whether any was a fresh row.

        A fresh row (the recipient's only event is its Scheduled one) is decided
        on as it is; any other recipient's state is read from the log.
        """
        fresh = [_is_fresh(r) for r in rows]
        rest = [r.id for r, is_fresh in zip(rows, fresh, strict=True) if not is_fresh]
        loaded = self.d.gateway.recipients(rest) if rest else {}
        candidates: list[RecipientRow | Recipient] = []
        for r, is_fresh in zip(rows, fresh, strict=True):
            if is_fresh:
                candidates.append(r)
            elif (state := loaded.get(r.id)) is not None:
                candidates.append(state)
        return candidates, any(fresh)

    def _try_claim(
        self,
        p: _Pass,
        rows: Sequence[RecipientRow],
        states: Sequence[RecipientRow | Recipient],
    ) -> list[_Claim] | None:
        """Claim what of ``states`` is due and the allowance admits; None on a conflict."""
        due = [s for s in states if s.is_due(p.now)]
        retries = [s for s in due if s.status is DeliveryStatus.SENDING]
        fresh = [s for s in due if s.status is DeliveryStatus.SCHEDULED]
        over = 0
        reservation: SendsReserved | None = None
        if p.limited is not None and p.left is not None:
            over = max(0, len(fresh) - p.left)
            fresh = fresh[: p.left]
            if fresh:
                reservation = _reservation(p, len(fresh))
        claim = sorted(retries + fresh, key=lambda r: r.position)
        claimed: list[_Claim] = []
        if claim:
            after = self._claim(claim, p.now, reservation)
            if after is None:
                return None
            claimed = after
        # Only a committed claim spends the allowance; what the rows held and this
        # batch did not claim stays unsettled for this pass.
        p.over += over
        if p.left is not None:
            p.left -= len(fresh)
        if reservation is not None:
            p.reserved += 1
        self.unsettled += len(rows) - len(claim)
        return claimed

    # --- claim, hand over, record --------------------------------------------------------

    def _claim(
        self,
        due: Sequence[RecipientRow | Recipient],
        now: datetime,
        reservation: SendsReserved | None,
    ) -> list[_Claim] | None:
        """Record the attempts (and the reservation) in one write; None when another writer won.

        A fresh row's claim is its first attempt, the one Sent event
        ``Recipient.start_attempt`` records for a recipient with only its
        Scheduled event (property-tested): its stored row is encoded without
        building the event or the aggregate. A state read from the log is
        decided on by the aggregate.
        """
        policy = self.d.policy
        encode = attempt_rows_encoder(now, now + policy.lease)
        rows: list[Row] = []
        claims: list[_Claim] = []
        for r, message_id in zip(due, _message_ids(self.d.verp.domain, len(due)), strict=True):
            if isinstance(r, RecipientRow):
                version = r.version + 1
                rows.append(encode(r.id, version, 1, message_id))
                claims.append(
                    _Claim(
                        r.id,
                        version,
                        1,
                        message_id,
                        r.address,
                        r.last_name,
                        r.first_name,
                        r.company,
                        None,
                        r,
                        now,
                    )
                )
                continue
            new, state = _attempted(r, now, message_id, policy)
            rows.extend(_MAPPER.to_rows(new))
            claims.append(_claim_of(state, now))
        if reservation is not None:
            rows.append(_MAPPER.to_row(reservation))
        try:
            self.d.gateway.put_rows(rows)
        except VersionConflict:
            return None
        self.sent += len(claims)
        return claims

    def _state_of(self, c: _Claim) -> Recipient:
        """The aggregate after the claim ``c`` (built from its row for a fresh row's claim)."""
        if c.state is not None:
            return c.state
        scheduled = scheduled_state(c.row) if c.row is not None else None
        if scheduled is None:  # pragma: no cover - a claim has a state or a fresh row
            raise AssertionError("a claim holds its aggregate or the fresh row it was made on")
        return _attempted(scheduled, c.at, c.message_id, self.d.policy)[1]

    def _messages(self, b: Broadcast, claimed: Sequence[_Claim]) -> list[OutgoingMessage]:
        verp = self.d.verp
        template = self.templates.get(b.id)
        if template is None:
            # The body and shared headers are encoded once per broadcast, not per recipient.
            template = self.templates[b.id] = MessageTemplate(
                sender=b.sender,
                sender_name=None,
                subject=b.subject,
                text_body=b.text_body,
                html_body=b.html_body,
            )
        if not self.checked_return_path:
            # Every VERP address differs from this one only in its token (base32
            # digits), so this check stands for all: render_to takes them unchecked,
            # as it takes the Message-IDs, all made by _message_ids.
            check_address(verp.address(uuid.UUID(int=0)), "return_path")
            self.checked_return_path = True
        date = self.now()
        messages = []
        render = template.render_to
        for r in claimed:
            message_id = r.message_id
            envelope_from = verp.address(r.id)
            data = render(
                r.address,
                r.last_name,
                r.first_name,
                message_id=message_id,
                envelope_from=envelope_from,
                date=date,
            )
            messages.append(
                OutgoingMessage(
                    key=r.id.hex,
                    envelope_from=envelope_from,
                    recipient=r.address,
                    message_id=message_id,
                    data=data,
                )
            )
        return messages

    def _record(self, claimed: Sequence[_Claim], replies: Sequence[TransportReply]) -> None:
        """Record each claimed recipient's reply, in one write.

        A 2xx reply to a claim is recorded as the Succeeded event
        ``Recipient.record_reply`` decides for a claimed (SENDING) recipient
        (property-tested), encoded without building it; any other reply is
        decided on by the aggregate.
        """
        if len(replies) != len(claimed):
            raise InvalidInput(
                f"transport returned {len(replies)} replies for {len(claimed)} messages; "
                "a MailTransport must answer once per message",
                field="transport",
            )
        now = self.now()
        policy = self.d.policy
        by_key = {reply.key: reply for reply in replies}
        success = success_rows_encoder(now)
        rows: list[Row] = []
        outcomes: list[tuple[_Claim, int, str]] = []
        for r in claimed:
            reply = by_key.get(r.id.hex)
            code, text = (reply.code, reply.text) if reply else (0, "no reply from the transport")
            outcomes.append((r, code, text))
            self._tally(code, r)
            if 200 <= code < 300:
                rows.append(success(r.id, r.version + 1, r.attempts, code, text))
                continue
            new = self._state_of(r).record_reply(code=code, text=text, now=now, policy=policy)
            rows.extend(_MAPPER.to_rows(new))
            if not new or not isinstance(new[-1], Succeeded | Bounced):
                self.unsettled += 1  # deferred (still SENDING), or nothing recorded
        try:
            self.d.gateway.put_rows(rows)
        except VersionConflict:
            # Someone wrote to one of these recipients meanwhile (a bounce report):
            # record each outcome on its fresh state. Whether they are all settled is
            # left to the next call.
            self.unsettled += len(claimed)
            for r, code, text in outcomes:
                self._record_one(r, code, text, now)
        if self.on_progress is not None:
            self.on_progress(self.report())

    def _tally(self, code: int, r: _Claim) -> None:
        if 200 <= code < 300:
            self.succeeded += 1
        elif 500 <= code < 600 or r.attempts >= self.d.policy.max_attempts:
            self.errors += 1
        else:
            self.retried += 1

    def _record_one(self, r: _Claim, code: int, text: str, now: datetime) -> None:
        policy = self.d.policy

        def decide() -> tuple[None, list[Any]]:
            state = self.d.gateway.recipient(r.id)
            if state is None or state.version < r.version or state.attempts != r.attempts:
                return None, []
            return None, state.record_reply(code=code, text=text, now=now, policy=policy)

        self.d.gateway.decide_and_put(decide)


class _HandOver:
    """The bounded pipeline: a worker thread hands batches over while the caller records.

    At most ``depth`` batches are handed to the worker and not yet recorded;
    ``record(claimed, replies)`` runs on the caller's thread, in batch order.
    If a hand-over raises, the batches already with the worker are finished
    and recorded, and then the exception reaches the caller.
    """

    def __init__(
        self,
        transport: MailTransport,
        record: Callable[[Sequence[_Claim], Sequence[TransportReply]], None],
        *,
        depth: int,
    ) -> None:
        self.transport = transport
        self.record = record
        self.depth = depth
        self.pending: deque[tuple[Sequence[_Claim], Future[list[TransportReply]]]] = deque()
        self.worker: ThreadPoolExecutor | None = None

    def __enter__(self) -> _HandOver:
        return self

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        try:
            if error is None:
                self.drain()
            else:
                self._settle()
        finally:
            if self.worker is not None:
                self.worker.shutdown(wait=True)

    def submit(self, claimed: Sequence[_Claim], messages: list[OutgoingMessage]) -> None:
        """Hand a claimed batch to the worker; record the oldest while too many are out."""
        if self.depth <= 1:
            self.record(claimed, self.transport.send(messages))
            return
        if self.worker is None:
            self.worker = ThreadPoolExecutor(1, thread_name_prefix="broadcast-hand-over")
        self.pending.append((claimed, self.worker.submit(self.transport.send, messages)))
        while len(self.pending) >= self.depth:
            self._record_oldest()

    def drain(self) -> None:
        """Record every batch still with the worker."""
        while self.pending:
            self._record_oldest()

    def _record_oldest(self) -> None:
        claimed, future = self.pending.popleft()
        try:
            replies = future.result()
        except BaseException:
            self._settle()
            raise
        self.record(claimed, replies)

    def _settle(self) -> None:
        # Something failed: record what the worker still hands over (those messages
        # went out), without letting a second failure hide the first.
        while self.pending:
            claimed, future = self.pending.popleft()
            try:
                self.record(claimed, future.result())
            except Exception:  # noqa: S112 - the first failure is the one raised
                continue
