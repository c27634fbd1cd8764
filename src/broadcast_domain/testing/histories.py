"""Event histories written the way the library writes them, by driving the real aggregates.

:class:`HistoryBuilder` keeps the aggregates' states and a clock, and records
the events that their command methods return, each at the next position, in
the order the service and the dispatcher record them (a broadcast's
recipients before the broadcast itself; a claim's ``Sent`` events with their
``SendsReserved``; a reply only to an attempt that awaits one). A command the
rules refuse records nothing, so any sequence of builder calls gives a
history the library could have written. The hypothesis strategy
:func:`broadcast_domain.testing.strategies.histories` calls it with random
commands; tests that want one particular history call it by hand::

    h = HistoryBuilder()
    bid = h.create_broadcast([Contact("a@example.com")])
    h.advance(minutes=1)
    h.start_sending(bid)
    h.attempt(bid, "a@example.com")
    h.reply(bid, "a@example.com", 550, "5.1.1 user unknown")
    views = fold(h.history)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from broadcast_domain.domain.account import Account, account_aggregate_id
from broadcast_domain.domain.allowance import allowance_id, allowance_left, pause_reason
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import (
    AccountConfigured,
    BroadcastEvent,
    BroadcastScheduled,
    DomainEvent,
    RecipientEvent,
    SendsReserved,
)
from broadcast_domain.domain.messages import make_message_id
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.recipient import Recipient, derive_report_id, recipient_id, schedule
from broadcast_domain.domain.values import (
    BounceReport,
    BroadcastStatus,
    Contact,
    DeliveryStatus,
    normalise_address,
)
from broadcast_domain.errors import InvalidInput, InvalidTransition
from broadcast_domain.projections.views import month_of

__all__ = ["History", "HistoryBuilder"]

_BROADCAST_NS = uuid5(NAMESPACE_URL, "urn:broadcast-domain:testing:broadcast")

History = list[tuple[int, DomainEvent]]
"""(position, event) pairs, positions from 1 upwards, as ``EventLog.read`` returns them."""


class HistoryBuilder:
    """Records what the real aggregates decide, at increasing positions; see the module docstring.

    Every command returns the events it recorded (an empty list when the rules
    refuse it or when it changes nothing). ``history`` is everything so far.
    """

    def __init__(
        self,
        start: datetime | None = None,
        *,
        policy: DeliveryPolicy | None = None,
        mail_domain: str = "mail.example.com",
    ) -> None:
        self.start = start or datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        if self.start.tzinfo is None:
            raise InvalidInput("HistoryBuilder needs an aware start time", field="start")
        self.now = self.start
        self.policy = policy or DeliveryPolicy()
        self.mail_domain = mail_domain
        self.history: History = []
        self.broadcasts: dict[UUID, Broadcast] = {}
        self.recipients: dict[UUID, Recipient] = {}
        self.accounts: dict[str, Account] = {}
        self.members: dict[UUID, list[UUID]] = {}
        self._serial = 0

    # --- plumbing ------------------------------------------------------------------------

    def _record(self, events: Sequence[DomainEvent]) -> list[DomainEvent]:
        for event in events:
            self.history.append((len(self.history) + 1, event))
            if isinstance(event, RecipientEvent):
                self.recipients[event.originator_id] = event.apply(
                    self.recipients.get(event.originator_id)
                )
            elif isinstance(event, AccountConfigured):
                self.accounts[event.account_id] = event.apply(self.accounts.get(event.account_id))
            elif isinstance(event, BroadcastEvent):
                bid = event.originator_id
                self.broadcasts[bid] = event.apply(self.broadcasts.get(bid))
        return list(events)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move the clock forward; return the new time."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise InvalidInput("the clock does not go backwards", field="delta")
        self.now += step
        return self.now

    def recipient(self, broadcast_id: UUID, address: str) -> Recipient:
        """A recipient's current state."""
        state = self.recipients.get(recipient_id(broadcast_id, address))
        if state is None:
            raise InvalidInput(f"broadcast {broadcast_id} has no recipient {address!r}")
        return state

    def addresses(self, broadcast_id: UUID) -> list[str]:
        """The broadcast's recipient addresses in position order."""
        return [self.recipients[rid].address for rid in self.members.get(broadcast_id, [])]

    @property
    def position(self) -> int:
        """The position of the last recorded event (0 when none)."""
        return len(self.history)

    # --- accounts and broadcasts ---------------------------------------------------------

    def configure_account(
        self,
        account_id: str = "acme",
        *,
        monthly_limit: int | None = None,
        timezone: str = "UTC",
        send_rate: float | None = None,
    ) -> list[DomainEvent]:
        """Record an account configuration (the last one wins)."""
        current = self.accounts.get(account_id)
        return self._record(
            [
                AccountConfigured(
                    originator_id=account_aggregate_id(account_id),
                    originator_version=(current.version if current else 0) + 1,
                    timestamp=self.now,
                    account_id=account_id,
                    monthly_limit=monthly_limit,
                    timezone=timezone,
                    send_rate=send_rate,
                )
            ]
        )

    def create_broadcast(
        self,
        contacts: Sequence[Contact],
        *,
        account_id: str = "acme",
        inbox_id: str = "support",
        subject: str = "お知らせ",
        scheduled_at: datetime | None = None,
        source_kind: str = "address_book",
        source_ref: str = "book-1",
        created_by: str = "operator-1",
        broadcast_id: UUID | None = None,
    ) -> UUID:
        """Schedule a broadcast: the recipients (folded by address) first, then the broadcast.

        The id is derived from the start time and a serial number unless given,
        so that a history drawn by hypothesis replays identically.
        """
        folded: dict[str, Contact] = {}
        for contact in contacts:
            folded.setdefault(normalise_address(contact.address), contact)
        if not folded:
            raise InvalidInput("a broadcast needs at least one recipient", field="contacts")
        self._serial += 1
        bid = broadcast_id or uuid5(_BROADCAST_NS, f"{self.start.isoformat()}:{self._serial}")
        events: list[DomainEvent] = [*schedule(bid, account_id, folded.values(), self.now)]
        events.append(
            BroadcastScheduled(
                originator_id=bid,
                originator_version=1,
                timestamp=self.now,
                account_id=account_id,
                inbox_id=inbox_id,
                sender="news@example.com",
                subject=subject,
                text_body="本文",
                html_body=None,
                source_kind=source_kind,
                source_ref=source_ref,
                scheduled_at=(scheduled_at or self.now).astimezone(UTC),
                created_by=created_by,
                recipient_count=len(folded),
            )
        )
        self.members[bid] = [e.originator_id for e in events[:-1]]
        self._record(events)
        return bid

    def _broadcast_command(
        self, broadcast_id: UUID, command: str, **kwargs: object
    ) -> list[DomainEvent]:
        state = self.broadcasts.get(broadcast_id)
        if state is None:
            return []
        try:
            return self._record(getattr(state, command)(now=self.now, **kwargs))
        except InvalidTransition:
            return []

    def start_sending(self, broadcast_id: UUID) -> list[DomainEvent]:
        """SCHEDULED -> SENDING once its time has come (as the dispatcher does)."""
        state = self.broadcasts.get(broadcast_id)
        if state is None or state.scheduled_at > self.now:
            return []
        return self._broadcast_command(broadcast_id, "start_sending")

    def cancel(self, broadcast_id: UUID, by: str = "operator-1") -> list[DomainEvent]:
        """Cancel before sending starts."""
        return self._broadcast_command(broadcast_id, "cancel", by=by)

    def pause(self, broadcast_id: UUID, reason: str = "monthly limit reached") -> list[DomainEvent]:
        """Pause (the dispatcher does so when the monthly limit is used up)."""
        return self._broadcast_command(broadcast_id, "pause", reason=reason)

    def resume(self, broadcast_id: UUID) -> list[DomainEvent]:
        """Resume a paused broadcast once its account's limit admits more (as the dispatcher)."""
        state = self.broadcasts.get(broadcast_id)
        if state is None or self.allowance_left(state.account_id) == 0:
            return []
        return self._broadcast_command(broadcast_id, "resume")

    def complete(self, broadcast_id: UUID) -> list[DomainEvent]:
        """SENDING -> SENT, only once no recipient is scheduled or sending."""
        state = self.broadcasts.get(broadcast_id)
        if state is None or state.status is not BroadcastStatus.SENDING:
            return []
        pending = (DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING)
        if any(self.recipients[rid].status in pending for rid in self.members[broadcast_id]):
            return []
        return self._broadcast_command(broadcast_id, "complete")

    def export(
        self, broadcast_id: UUID, by: str = "operator-1", kind: str = "results"
    ) -> list[DomainEvent]:
        """Record a results download as of the current position."""
        rows = len(self.members.get(broadcast_id, []))
        return self._broadcast_command(
            broadcast_id, "record_export", by=by, kind=kind, as_of=self.position, rows=rows
        )

    # --- recipients ----------------------------------------------------------------------

    def attempt(self, broadcast_id: UUID, address: str) -> list[DomainEvent]:
        """Claim a due recipient of a sending broadcast (with a reservation under a limit)."""
        b = self.broadcasts.get(broadcast_id)
        if b is None or b.status is not BroadcastStatus.SENDING:
            return []
        r = self.recipient(broadcast_id, address)
        if not r.is_due(self.now):
            return []
        self._serial += 1
        events: list[DomainEvent] = list(
            r.start_attempt(
                now=self.now,
                message_id=make_message_id(self.mail_domain, f"h{self._serial}.{r.id.hex[:12]}"),
                policy=self.policy,
            )
        )
        account = self.accounts.get(b.account_id)
        if (
            account is not None
            and account.monthly_limit is not None
            and r.status is DeliveryStatus.SCHEDULED
        ):
            if self.allowance_left(b.account_id) == 0:
                # The dispatcher never hands over past the limit: it pauses instead.
                year, month = month_of(self.now, account.timezone)
                reason = pause_reason(account.monthly_limit, year, month, account.timezone)
                return self.pause(broadcast_id, reason)
            year, month = month_of(self.now, account.timezone)
            aid = allowance_id(b.account_id, year, month)
            version = sum(
                1
                for _, e in self.history
                if isinstance(e, SendsReserved) and e.originator_id == aid
            )
            events.append(
                SendsReserved(
                    originator_id=aid,
                    originator_version=version + 1,
                    timestamp=self.now,
                    account_id=b.account_id,
                    year=year,
                    month=month,
                    count=1,
                )
            )
        return self._record(events)

    def allowance_left(self, account_id: str) -> int | None:
        """What the account's monthly limit still admits now (None: no limit)."""
        account = self.accounts.get(account_id)
        if account is None or account.monthly_limit is None:
            return None
        this_month = month_of(self.now, account.timezone)
        counted = in_flight = 0
        for r in self.recipients.values():
            if r.account_id != account_id:
                continue
            if r.first_outcome_at is not None:
                counted += month_of(r.first_outcome_at, account.timezone) == this_month
            elif r.status is DeliveryStatus.SENDING:
                in_flight += 1
        return allowance_left(account.monthly_limit, counted, in_flight)

    def reply(
        self, broadcast_id: UUID, address: str, code: int, text: str = ""
    ) -> list[DomainEvent]:
        """Record the server's reply to the attempt awaiting one (2xx, 4xx, 5xx or 0)."""
        r = self.recipient(broadcast_id, address)
        if r.status is not DeliveryStatus.SENDING or r.lease_until is None:
            return []
        return self._record(r.record_reply(code=code, text=text, now=self.now, policy=self.policy))

    def report(
        self,
        broadcast_id: UUID,
        address: str,
        report: BounceReport,
        received_at: datetime | None = None,
    ) -> list[DomainEvent]:
        """Take in a report about the recipient (received now unless said otherwise)."""
        r = self.recipient(broadcast_id, address)
        _, events = r.receive_report(
            report,
            report_id=derive_report_id(report),
            received_at=received_at or self.now,
            now=self.now,
            policy=self.policy,
        )
        return self._record(events)

    def acknowledge(
        self, broadcast_id: UUID, address: str, by: str = "operator-1"
    ) -> list[DomainEvent]:
        """Acknowledge the recipient's error (nothing unless it is an unacknowledged error)."""
        r = self.recipient(broadcast_id, address)
        try:
            return self._record(r.acknowledge(by=by, now=self.now))
        except InvalidTransition:
            return []
