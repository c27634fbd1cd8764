"""Sending: ``dispatch_due`` claims due recipients, hands them over, records the replies.

Claims are recorded (``Sent``) before handing over, so two dispatchers never
both send to one recipient: the loser's write conflicts on the recipient's
version and it moves on. Where an account has a monthly limit, a reservation
event is written in the same transaction as the claims, which serialises the
dispatchers of that account so they never spend the same allowance.
Delivery is at least once: a process that dies after claiming and before
recording the outcome leaves the recipient SENDING; after the lease another
dispatcher sends it again with the same Message-ID.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from broadcast_domain.application.eventlog import VersionConflict
from broadcast_domain.application.results import DispatchReport
from broadcast_domain.domain.account import Account
from broadcast_domain.domain.allowance import allowance_id, allowance_left, pause_reason
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import BroadcastEvent, DomainEvent, SendsReserved
from broadcast_domain.domain.messages import MessageTemplate, make_message_id
from broadcast_domain.domain.recipient import Recipient
from broadcast_domain.domain.values import BroadcastStatus, Contact, DeliveryStatus, require_aware
from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import MailTransport, OutgoingMessage, TransportReply, ViewStore
from broadcast_domain.projections.views import month_of

if TYPE_CHECKING:
    from broadcast_domain.application.service import BroadcastService

__all__ = ["Dispatcher"]

DEFAULT_BATCH = 500


def account_allowance(
    views: ViewStore, account_id: str, account: Account | None, now: datetime
) -> int | None:
    """What the account's monthly limit still admits now (None: unlimited).

    The month's count plus the account's recipients claimed without an outcome
    yet (they will count once they have one) are subtracted from the limit.
    """
    if account is None or account.monthly_limit is None:
        return None
    year, month = month_of(now, account.timezone)
    in_flight = sum(
        views.counts(b.id).sending for b in views.due_broadcasts(now) if b.account_id == account_id
    )
    return allowance_left(
        account.monthly_limit, views.monthly_count(account_id, year, month), in_flight
    )


class Dispatcher:
    """One ``dispatch_due`` run over the service's store."""

    def __init__(
        self,
        service: BroadcastService,
        transport: MailTransport,
        *,
        now: datetime | None,
        max_messages: int | None,
        batch_size: int = DEFAULT_BATCH,
        sleep: Callable[[float], None] = time.sleep,
        on_progress: Callable[[DispatchReport], None] | None = None,
    ) -> None:
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
        self.svc = service
        self.transport = transport
        self.fixed_now = now
        self.budget = max_messages
        self.batch_size = batch_size
        self.sleep = sleep
        self.on_progress = on_progress
        self.sent = self.succeeded = self.errors = self.retried = 0
        self.paused: list[uuid.UUID] = []
        self._templates: dict[uuid.UUID, MessageTemplate] = {}
        self.completed: list[uuid.UUID] = []

    # --- helpers -------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.fixed_now if self.fixed_now is not None else self.svc.now()

    def report(self) -> DispatchReport:
        return DispatchReport(
            sent=self.sent,
            succeeded=self.succeeded,
            errors=self.errors,
            retried=self.retried,
            paused=tuple(self.paused),
            completed=tuple(self.completed),
        )

    def _broadcast_event(
        self, b: Broadcast, decide: Callable[[Broadcast], list[BroadcastEvent]]
    ) -> None:
        svc = self.svc

        def run() -> tuple[None, list[BroadcastEvent]]:
            return None, decide(svc._load_broadcast(b.id))

        svc._decide_and_put(run)

    def allowance(self, account_id: str, account: Account | None, now: datetime) -> int | None:
        """What the account's limit still admits this month (None: unlimited)."""
        return account_allowance(self.svc._views, account_id, account, now)

    # --- the run -------------------------------------------------------------------------

    def run(self) -> DispatchReport:
        svc = self.svc
        svc.catch_up()
        for b in svc._views.due_broadcasts(self.now()):
            if self.budget == 0:
                break
            self._dispatch_broadcast(b)
        return self.report()

    def _dispatch_broadcast(self, b: Broadcast) -> None:
        svc = self.svc
        views = svc._views
        now = self.now()
        account = views.account(b.account_id)
        left = self.allowance(b.account_id, account, now)
        if b.status is BroadcastStatus.PAUSED and (left is None or left > 0):
            self._broadcast_event(b, lambda s: s.resume(now=now))
        elif b.status is BroadcastStatus.SCHEDULED:
            self._broadcast_event(b, lambda s: s.start_sending(now=now))
        svc.catch_up()
        while self.budget is None or self.budget > 0:
            now = self.now()
            state = views.broadcast(b.id)
            if state is None or state.status in (BroadcastStatus.CANCELLED, BroadcastStatus.SENT):
                return
            size = self.batch_size
            if account is not None and account.send_rate:
                # About one second of sending per batch, so the rate limit is smooth.
                size = max(1, min(size, int(account.send_rate)))
            if self.budget is not None:
                size = min(size, self.budget)
            rows = views.due_recipients(b.id, now, size)
            if not rows:
                counts = views.counts(b.id)
                if (
                    counts.scheduled == 0
                    and counts.sending == 0
                    and state.status is not BroadcastStatus.PAUSED
                ):
                    self._broadcast_event(b, partial(Broadcast.complete, now=now))
                    self.completed.append(b.id)
                    svc.catch_up()
                return
            # The rows say who is due; the claim is decided on the aggregates in the log.
            due = [
                r
                for r in (svc._load_recipient(row.id) for row in rows)
                if r is not None and r.is_due(now)
            ]
            if not due:
                # The views lag behind the log (another dispatcher claimed these).
                svc.catch_up()
                continue
            retries = [r for r in due if r.status is DeliveryStatus.SENDING]
            fresh = [r for r in due if r.status is DeliveryStatus.SCHEDULED]
            limited = account if account is not None and account.monthly_limit is not None else None
            left = self.allowance(b.account_id, limited, now)
            reservation: SendsReserved | None = None
            if limited is not None and left is not None:
                if len(fresh) > left:
                    fresh = fresh[:left]
                if not fresh and not retries:
                    year, month = month_of(now, limited.timezone)
                    reason = pause_reason(limited.monthly_limit or 0, year, month, limited.timezone)
                    if state.status is not BroadcastStatus.PAUSED:
                        self._broadcast_event(b, partial(Broadcast.pause, reason=reason, now=now))
                        self.paused.append(b.id)
                        svc.catch_up()
                    return
                if fresh:
                    reservation = self._reservation(b.account_id, limited, now, len(fresh))
            elif state.status is BroadcastStatus.PAUSED:
                return
            claim = sorted(retries + fresh, key=lambda r: r.position)
            started = time.monotonic()
            claimed = self._claim(state, claim, now, reservation)
            if claimed is None:
                svc.catch_up()
                continue
            replies = self._hand_over(state, claimed)
            self._record(claimed, replies)
            if self.budget is not None:
                self.budget -= len(claimed)
            if self.on_progress is not None:
                self.on_progress(self.report())
            if account is not None and account.send_rate:
                wait = len(claimed) / account.send_rate - (time.monotonic() - started)
                if wait > 0:
                    self.sleep(wait)
            svc.catch_up()

    def _reservation(
        self, account_id: str, account: Account, now: datetime, count: int
    ) -> SendsReserved:
        year, month = month_of(now, account.timezone)
        aid = allowance_id(account_id, year, month)
        version = self.svc._log.last_version(aid)
        return SendsReserved(
            originator_id=aid,
            originator_version=version + 1,
            timestamp=now,
            account_id=account_id,
            year=year,
            month=month,
            count=count,
        )

    def _claim(
        self,
        b: Broadcast,
        due: Sequence[Recipient],
        now: datetime,
        reservation: SendsReserved | None,
    ) -> list[Recipient] | None:
        """Record the attempts (and the reservation) in one write; None when another writer won."""
        domain = self.svc._verp.domain
        events: list[DomainEvent] = []
        after: list[Recipient] = []
        for r in due:
            new = r.start_attempt(
                now=now,
                message_id=make_message_id(domain, uuid.uuid4().hex),
                policy=self.svc.policy,
            )
            events.extend(new)
            state = r
            for e in new:
                state = e.apply(state)
            after.append(state)
        if reservation is not None:
            events.append(reservation)
        try:
            self.svc._log.put(events)
        except VersionConflict:
            return None
        self.sent += len(after)
        return after

    def _hand_over(self, b: Broadcast, claimed: Sequence[Recipient]) -> list[TransportReply]:
        verp = self.svc._verp
        template = self._templates.get(b.id)
        if template is None:
            # The body and shared headers are encoded once per broadcast, not per recipient.
            template = self._templates[b.id] = MessageTemplate(
                sender=b.sender,
                sender_name=None,
                subject=b.subject,
                text_body=b.text_body,
                html_body=b.html_body,
            )
        date = self.now()
        messages = []
        for r in claimed:
            message_id = r.message_id or ""  # set by the claim
            envelope_from = verp.address(r.id)
            data = template.render(
                recipient=Contact(r.address, r.last_name, r.first_name, r.company),
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
        replies = self.transport.send(messages)
        if len(replies) != len(messages):
            raise InvalidInput(
                f"transport returned {len(replies)} replies for {len(messages)} messages; "
                "a MailTransport must answer once per message",
                field="transport",
            )
        return replies

    def _record(self, claimed: Sequence[Recipient], replies: Sequence[TransportReply]) -> None:
        svc = self.svc
        now = self.now()
        by_key = {reply.key: reply for reply in replies}
        events: list[DomainEvent] = []
        for r in claimed:
            reply = by_key.get(r.id.hex)
            code, text = (reply.code, reply.text) if reply else (0, "no reply from the transport")
            events.extend(r.record_reply(code=code, text=text, now=now, policy=svc.policy))
            self._tally(code, r)
        try:
            svc._log.put(events)
        except VersionConflict:
            # Someone wrote to one of these recipients meanwhile (a bounce report):
            # record each outcome on its fresh state.
            for r in claimed:
                reply = by_key.get(r.id.hex)
                code, text = (
                    (reply.code, reply.text) if reply else (0, "no reply from the transport")
                )
                self._record_one(r, code, text, now)

    def _tally(self, code: int, r: Recipient) -> None:
        if 200 <= code < 300:
            self.succeeded += 1
        elif 500 <= code < 600 or r.attempts >= self.svc.policy.max_attempts:
            self.errors += 1
        else:
            self.retried += 1

    def _record_one(self, r: Recipient, code: int, text: str, now: datetime) -> None:
        svc = self.svc

        def decide() -> tuple[None, list[Any]]:
            state = svc._load_recipient(r.id)
            if state is None or state.version < r.version or state.attempts != r.attempts:
                return None, []
            return None, state.record_reply(code=code, text=text, now=now, policy=svc.policy)

        svc._decide_and_put(decide)
