"""Domain events: past-tense, frozen, slotted attrs classes.

Every event names its aggregate (``originator_id``), its place in that
aggregate's sequence (``originator_version``) and when it happened
(``timestamp``, aware UTC). Each event knows how it changes its aggregate's
state (``apply``): that is the aggregate's one mutator, with no isinstance ladder.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from uuid import UUID

import attrs

if TYPE_CHECKING:
    from broadcast_domain.domain.account import Account
    from broadcast_domain.domain.broadcast import Broadcast
    from broadcast_domain.domain.recipient import Recipient

__all__ = [
    "AccountConfigured",
    "Bounced",
    "BroadcastCancelled",
    "BroadcastCompleted",
    "BroadcastPaused",
    "BroadcastResumed",
    "BroadcastScheduled",
    "Complained",
    "Deferred",
    "DomainEvent",
    "ErrorAcknowledged",
    "ResultsExported",
    "Scheduled",
    "SendingStarted",
    "SendsReserved",
    "Sent",
    "Succeeded",
]


@attrs.frozen(kw_only=True)
class DomainEvent:
    """Base of every event: which aggregate, which version, when."""

    originator_id: UUID
    originator_version: int
    timestamp: datetime

    aggregate: ClassVar[str] = ""


S = TypeVar("S")


def _existing(state: S | None) -> S:
    # Only a creation event may apply to no state; anything else is a corrupt history.
    if state is None:
        raise ValueError("event applied before its aggregate's creation event")
    return state


# --- Recipient events ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RecipientEvent(DomainEvent):
    """An event of one recipient delivery (one broadcast x one normalised address)."""

    aggregate: ClassVar[str] = "recipient"

    def apply(self, state: Recipient | None) -> Recipient:
        """Return the recipient's state after this event."""
        raise NotImplementedError  # pragma: no cover - every concrete event overrides


@attrs.frozen(kw_only=True)
class Scheduled(RecipientEvent):
    """The recipient was added to a broadcast and waits for its time."""

    broadcast_id: UUID
    account_id: str
    address: str
    last_name: str = ""
    first_name: str = ""
    company: str = ""
    contact_id: str | None = None
    position: int = 0

    def apply(self, state: Recipient | None) -> Recipient:
        from broadcast_domain.domain.recipient import Recipient

        return Recipient.started(self)


@attrs.frozen(kw_only=True)
class Sent(RecipientEvent):
    """A delivery attempt started (the recipient is claimed until ``lease_until``)."""

    attempt: int
    message_id: str
    lease_until: datetime

    def apply(self, state: Recipient | None) -> Recipient:
        return _existing(state).on_sent(self)


@attrs.frozen(kw_only=True)
class Succeeded(RecipientEvent):
    """The receiving server accepted the message."""

    attempt: int
    reply_code: int
    reply_text: str

    def apply(self, state: Recipient | None) -> Recipient:
        return _existing(state).on_succeeded(self)


@attrs.frozen(kw_only=True)
class Deferred(RecipientEvent):
    """A 4xx reply or no reply: the recipient stays SENDING until ``retry_at``."""

    attempt: int
    reply_code: int
    reply_text: str
    retry_at: datetime

    def apply(self, state: Recipient | None) -> Recipient:
        return _existing(state).on_deferred(self)


@attrs.frozen(kw_only=True)
class Bounced(RecipientEvent):
    """An error response: an SMTP rejection, exhausted retries, or a failure report."""

    source: str
    status: str
    diagnostic: str
    permanent: bool
    report_id: str
    reported_at: datetime
    received_at: datetime
    # One of REASONS; events recorded before reasons existed decode as "undefined".
    reason: str = "undefined"

    def apply(self, state: Recipient | None) -> Recipient:
        return _existing(state).on_bounced(self)


@attrs.frozen(kw_only=True)
class ErrorAcknowledged(RecipientEvent):
    """Somebody checked the delivery error."""

    acknowledged_by: str

    def apply(self, state: Recipient | None) -> Recipient:
        return _existing(state).on_acknowledged(self)


@attrs.frozen(kw_only=True)
class Complained(RecipientEvent):
    """The recipient reported the message as abuse (RFC 5965); not a delivery error."""

    report_id: str
    feedback_type: str
    received_at: datetime

    def apply(self, state: Recipient | None) -> Recipient:
        return _existing(state).on_complained(self)


# --- Broadcast events ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BroadcastEvent(DomainEvent):
    """An event of a broadcast."""

    aggregate: ClassVar[str] = "broadcast"

    def apply(self, state: Broadcast | None) -> Broadcast:
        """Return the broadcast's state after this event."""
        raise NotImplementedError  # pragma: no cover


@attrs.frozen(kw_only=True)
class BroadcastScheduled(BroadcastEvent):
    """A broadcast was created and scheduled (its recipients were recorded before it)."""

    account_id: str
    inbox_id: str
    sender: str
    subject: str
    text_body: str
    html_body: str | None
    source_kind: str
    source_ref: str
    scheduled_at: datetime
    created_by: str
    recipient_count: int

    def apply(self, state: Broadcast | None) -> Broadcast:
        from broadcast_domain.domain.broadcast import Broadcast

        return Broadcast.started(self)


@attrs.frozen(kw_only=True)
class SendingStarted(BroadcastEvent):
    """The first message of the broadcast is being handed over."""

    def apply(self, state: Broadcast | None) -> Broadcast:
        return _existing(state).on_sending_started(self)


@attrs.frozen(kw_only=True)
class BroadcastCompleted(BroadcastEvent):
    """No recipient is still scheduled or sending: the broadcast is SENT."""

    def apply(self, state: Broadcast | None) -> Broadcast:
        return _existing(state).on_completed(self)


@attrs.frozen(kw_only=True)
class BroadcastCancelled(BroadcastEvent):
    """The broadcast was cancelled before sending started."""

    cancelled_by: str

    def apply(self, state: Broadcast | None) -> Broadcast:
        return _existing(state).on_cancelled(self)


@attrs.frozen(kw_only=True)
class BroadcastPaused(BroadcastEvent):
    """Sending stopped because the monthly allowance is used up."""

    reason: str

    def apply(self, state: Broadcast | None) -> Broadcast:
        return _existing(state).on_paused(self)


@attrs.frozen(kw_only=True)
class BroadcastResumed(BroadcastEvent):
    """Sending may go on: the limit was raised or the month turned."""

    def apply(self, state: Broadcast | None) -> Broadcast:
        return _existing(state).on_resumed(self)


@attrs.frozen(kw_only=True)
class ResultsExported(BroadcastEvent):
    """Somebody downloaded the results (or the error list) of the broadcast."""

    exported_by: str
    kind: str
    as_of: int
    rows: int

    def apply(self, state: Broadcast | None) -> Broadcast:
        return _existing(state).on_exported(self)


# --- Account events --------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class AccountConfigured(DomainEvent):
    """An account's monthly limit, time zone or send rate was set."""

    aggregate: ClassVar[str] = "account"

    account_id: str
    monthly_limit: int | None
    timezone: str
    send_rate: float | None

    def apply(self, state: Account | None) -> Account:
        from broadcast_domain.domain.account import Account

        return Account.from_event(self)


@attrs.frozen(kw_only=True)
class SendsReserved(DomainEvent):
    """A dispatcher reserved part of an account's monthly allowance before handing over.

    One aggregate per account and month; writing it at the next version in the
    same transaction as the claims serialises dispatchers, so two of them never
    spend the same allowance.
    """

    aggregate: ClassVar[str] = "allowance"

    account_id: str
    year: int
    month: int
    count: int


def event_fields(event: DomainEvent) -> dict[str, Any]:
    """The event's fields as a dict (for display and history)."""
    return attrs.asdict(event, recurse=False)
