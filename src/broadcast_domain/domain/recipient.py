"""The Recipient aggregate: one broadcast x one normalised address, and its rules.

The state is immutable; events produce the next state (``Event.apply``) and
commands are methods that check a rule and return the events to record (an
empty list when nothing changes). The rules are SPEC section 2.
"""

from __future__ import annotations

import hashlib
import operator
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, get_args
from uuid import NAMESPACE_URL, UUID, SafeUUID, uuid5

import attrs

from broadcast_domain.domain.base import DomainEvent, existing
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.reasons import classify_reason, describe_status, is_reason
from broadcast_domain.domain.values import (
    BounceReport,
    Contact,
    DeliveryStatus,
    normalise_address,
    without_nul,
)
from broadcast_domain.errors import InvalidTransition

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "OUTCOME_KINDS",
    "Bounced",
    "Complained",
    "Deferred",
    "ErrorAcknowledged",
    "Recipient",
    "RecipientEvent",
    "ReportOutcome",
    "Scheduled",
    "Sent",
    "Succeeded",
    "derive_report_id",
    "mutate",
    "outcome_detail",
    "recipient_id",
    "recipient_id_hasher",
    "recipient_id_maker",
    "report_detail",
    "report_identity",
    "report_reason",
    "schedule",
]


# --- events ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RecipientEvent(DomainEvent):
    """An event of one recipient delivery (one broadcast x one normalised address)."""

    def apply(self, state: Recipient | None) -> Recipient:
        """The recipient's state after this event (see :func:`mutate`)."""
        return _MUTATORS[type(self)](self, state)


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


@attrs.frozen(kw_only=True)
class Sent(RecipientEvent):
    """A delivery attempt started (the recipient is claimed until ``lease_until``)."""

    attempt: int
    message_id: str
    lease_until: datetime


@attrs.frozen(kw_only=True)
class Succeeded(RecipientEvent):
    """The receiving server accepted the message."""

    attempt: int
    reply_code: int
    reply_text: str = attrs.field(converter=without_nul)


@attrs.frozen(kw_only=True)
class Deferred(RecipientEvent):
    """A 4xx reply or no reply: the recipient stays SENDING until ``retry_at``."""

    attempt: int
    reply_code: int
    reply_text: str = attrs.field(converter=without_nul)
    retry_at: datetime


@attrs.frozen(kw_only=True)
class Bounced(RecipientEvent):
    """An error response: an SMTP rejection, exhausted retries, or a failure report."""

    source: str
    status: str
    diagnostic: str = attrs.field(converter=without_nul)
    permanent: bool
    report_id: str = attrs.field(converter=without_nul)
    reported_at: datetime
    received_at: datetime
    # One of REASONS; events recorded before reasons existed decode as "undefined".
    reason: str = "undefined"


@attrs.frozen(kw_only=True)
class ErrorAcknowledged(RecipientEvent):
    """Somebody checked the delivery error."""

    acknowledged_by: str


@attrs.frozen(kw_only=True)
class Complained(RecipientEvent):
    """The recipient reported the message as abuse (RFC 5965); not a delivery error."""

    report_id: str
    feedback_type: str
    received_at: datetime


_RECIPIENT_NS = uuid5(NAMESPACE_URL, "urn:broadcast-domain:recipient")

ReportOutcome = Literal["applied", "duplicate", "late", "unmatched", "ignored"]
"""What one report did; the one definition every layer uses."""

OUTCOME_KINDS: tuple[ReportOutcome, ...] = get_args(ReportOutcome)
"""Every kind a report's outcome can have, in the order SPEC section 4 lists them."""


def recipient_id(broadcast_id: UUID, address: str) -> UUID:
    """The recipient aggregate's id: stable for a broadcast and a normalised address."""
    return uuid5(_RECIPIENT_NS, f"{broadcast_id.hex}:{normalise_address(address)}")


# uuid5's version and variant bits, applied to the first 16 bytes of the SHA-1.
_KEEP = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_SET = (0x8000 << 48) | (5 << 76)


def recipient_id_hasher(broadcast_id: UUID) -> Callable[[Iterable[str]], list[int]]:
    """``recipient_id(broadcast_id, a).int`` for many addresses, given their fold keys.

    Each key must already be ``normalise_address(a)`` (scheduling has it from
    the folding). The namespace and broadcast prefix are encoded once; what is
    left per address is one SHA-1 and the uuid5 version and variant bits, in
    one comprehension (no call per address).
    """
    prefix = _RECIPIENT_NS.bytes + f"{broadcast_id.hex}:".encode()
    sha1 = hashlib.sha1
    from_bytes = int.from_bytes

    def values(keys: Iterable[str]) -> list[int]:
        return [
            from_bytes(sha1(prefix + key.encode(), usedforsecurity=False).digest()[:16], "big")
            & _KEEP
            | _SET
            for key in keys
        ]

    return values


def recipient_id_maker(broadcast_id: UUID) -> Callable[[str], UUID]:
    """``recipient_id`` for one broadcast, for many addresses (same ids, about 3x faster).

    The UUID is made without re-checking a value that is 128 bits by
    construction.
    """
    values = recipient_id_hasher(broadcast_id)
    new_uuid = object.__new__
    set_slot = object.__setattr__
    safety = SafeUUID.unknown

    def make(address: str) -> UUID:
        u = new_uuid(UUID)
        # What UUID.__setstate__ does: the two slots, no validation.
        set_slot(u, "int", values((normalise_address(address),))[0])
        set_slot(u, "is_safe", safety)
        return u

    return make


def schedule(
    broadcast_id: UUID,
    account_id: str,
    contacts: Iterable[Contact],
    now: datetime,
    *,
    first_position: int = 0,
) -> list[Scheduled]:
    """The Scheduled event that starts each recipient of a new broadcast, in position order.

    ``contacts`` are already folded by normalised address (one recipient each);
    ``first_position`` is the first one's position when the list comes in chunks.
    """
    rid_of = recipient_id_maker(broadcast_id)
    return [
        Scheduled(
            originator_id=rid_of(c.address),
            originator_version=1,
            timestamp=now,
            broadcast_id=broadcast_id,
            account_id=account_id,
            address=c.address,
            last_name=c.last_name,
            first_name=c.first_name,
            company=c.company,
            contact_id=c.contact_id,
            position=i,
        )
        for i, c in enumerate(contacts, first_position)
    ]


def _fold_text(text: str) -> str:
    # Relays re-fold and re-case long diagnostics; the words are the report.
    return " ".join(text.split()).casefold()


def report_identity(delivery: str, action: str, status: str, diagnostic: str) -> str:
    """The id of a report that says ``action`` / ``status`` / ``diagnostic`` about ``delivery``.

    A report's identity is what it says, not how it travelled (SPEC section 2):
    the delivery it is about (the recipient id, or what correlates it while it
    is unmatched), its action, its status and its diagnostic with whitespace and
    case folded. The bounce message's own headers, envelope and arrival time
    are no part of it, so a re-delivered report gets the same id.
    """
    material = "\x1f".join(
        [delivery, action.strip().casefold(), status.strip().casefold(), _fold_text(diagnostic)]
    )
    return "report:" + hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def derive_report_id(report: BounceReport, *, delivery: UUID | None = None) -> str:
    """A report's id: the provider's when given, else :func:`report_identity` of its content.

    ``delivery`` is the recipient the report was correlated to; without it the
    delivery is named by the report's address and its VERP token or Message-ID.
    ``reported_at`` is not part of it: two copies of one report printed at other
    times are one report.
    """
    if report.report_id:
        return report.report_id
    if delivery is not None:
        key = delivery.hex
    else:
        key = "\x1e".join(
            [normalise_address(report.recipient), report.verp_token or "", report.message_id or ""]
        )
    return report_identity(key, report.action, report.status, report.diagnostic)


def _status_in(text: str) -> str | None:
    # An SMTP reply often carries an enhanced status code as its first word ("5.1.1 ...").
    first = text.split(None, 1)[0] if text.strip() else ""
    return first if first.count(".") == 2 else None


def report_detail(report: BounceReport) -> str:
    """The detail message of a report's error: never empty (SPEC section 2).

    The reporter's diagnostic, else the standard description of its enhanced
    status code, else the status as given.
    """
    diagnostic = " ".join(report.diagnostic.split())
    if diagnostic:
        return diagnostic
    described = describe_status(report.status)
    if described:
        return described
    status = report.status.strip()
    return f"status {status}" if status else "failure reported without a status or a diagnostic"


def report_reason(report: BounceReport) -> str:
    """The report's reason: the reporter's when it is one of REASONS, else classified."""
    if report.reason is not None and is_reason(report.reason):
        return report.reason
    status = report.status.strip()
    reply = status if status.isdigit() else None
    return classify_reason(None if reply else status, reply, report.diagnostic)


def _error_rank(permanent: bool, reported_at: datetime, report_id: str) -> tuple[bool, str, str]:
    # The error shown is the one with the smallest rank, so that the final state
    # does not depend on the order reports arrive in: permanent before temporary,
    # then the earliest report, then the report id as a tie-break.
    return (not permanent, reported_at.isoformat(), report_id)


@attrs.frozen
class Recipient:
    """The state of one recipient delivery."""

    id: UUID
    version: int
    broadcast_id: UUID
    account_id: str
    address: str
    last_name: str
    first_name: str
    company: str
    contact_id: str | None
    position: int
    scheduled_at: datetime
    status: DeliveryStatus = DeliveryStatus.SCHEDULED
    attempts: int = 0
    message_id: str | None = None
    first_sent_at: datetime | None = None
    lease_until: datetime | None = None
    retry_at: datetime | None = None
    succeeded_at: datetime | None = None
    first_outcome_at: datetime | None = None
    status_updated_at: datetime | None = None
    error_source: str | None = None
    error_status: str | None = None
    error_detail: str | None = None
    error_reason: str | None = None
    last_reply: str | None = None
    error_permanent: bool | None = None
    error_rank: tuple[bool, str, str] | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    complaints: int = 0
    report_ids: frozenset[str] = frozenset()

    def _evolve(self, **changes: object) -> Recipient:
        # attrs.evolve introspects the class on every call; a fold applies millions of
        # events, so copy the slots directly (same result: a new frozen instance):
        # every value read by one attrgetter, the changed ones replaced, and each
        # slot set through its descriptor in one C-level map.
        new = object.__new__(Recipient)
        values = list(_read_slots(self))
        for name, value in changes.items():
            values[_SLOT_INDEX[name]] = value
        _drain(map(_call, _SLOT_SETTERS, repeat(new), values))
        return new

    # --- folding -------------------------------------------------------------------------

    @classmethod
    def started(cls, e: Scheduled) -> Recipient:
        """The state created by a Scheduled event."""
        return cls(
            id=e.originator_id,
            version=e.originator_version,
            broadcast_id=e.broadcast_id,
            account_id=e.account_id,
            address=e.address,
            last_name=e.last_name,
            first_name=e.first_name,
            company=e.company,
            contact_id=e.contact_id,
            position=e.position,
            scheduled_at=e.timestamp,
            status_updated_at=e.timestamp,
        )

    @classmethod
    def fold(cls, events: Iterable[RecipientEvent]) -> Recipient | None:
        """Replay events from the start."""
        state: Recipient | None = None
        for event in events:
            state = event.apply(state)
        return state

    def on_sent(self, e: Sent) -> Recipient:
        return self._evolve(
            version=e.originator_version,
            status=DeliveryStatus.SENDING,
            attempts=e.attempt,
            message_id=e.message_id,
            first_sent_at=self.first_sent_at or e.timestamp,
            lease_until=e.lease_until,
            retry_at=None,
            status_updated_at=e.timestamp,
        )

    def on_succeeded(self, e: Succeeded) -> Recipient:
        return self._evolve(
            version=e.originator_version,
            status=DeliveryStatus.SUCCEEDED,
            lease_until=None,
            retry_at=None,
            succeeded_at=e.timestamp,
            last_reply=f"{e.reply_code} {e.reply_text}".strip(),
            first_outcome_at=self.first_outcome_at or e.timestamp,
            status_updated_at=e.timestamp,
        )

    def on_deferred(self, e: Deferred) -> Recipient:
        return self._evolve(
            version=e.originator_version,
            lease_until=None,
            retry_at=e.retry_at,
            last_reply=f"{e.reply_code} {e.reply_text}".strip() if e.reply_code else e.reply_text,
            status_updated_at=e.timestamp,
        )

    def on_bounced(self, e: Bounced) -> Recipient:
        rank = _error_rank(e.permanent, e.reported_at, e.report_id)
        replace = self.error_rank is None or rank < self.error_rank
        return self._evolve(
            version=e.originator_version,
            status=DeliveryStatus.ERROR,
            lease_until=None,
            retry_at=None,
            first_outcome_at=self.first_outcome_at or e.timestamp,
            # The error's time is the dominant report's own time, not when this copy
            # arrived, so duplicates arriving at other times leave the same state.
            status_updated_at=e.reported_at if replace else self.status_updated_at,
            error_source=e.source if replace else self.error_source,
            error_status=e.status if replace else self.error_status,
            error_detail=e.diagnostic if replace else self.error_detail,
            error_reason=e.reason if replace else self.error_reason,
            error_permanent=e.permanent if replace else self.error_permanent,
            error_rank=rank if replace else self.error_rank,
            report_ids=self.report_ids | {e.report_id},
        )

    def on_acknowledged(self, e: ErrorAcknowledged) -> Recipient:
        return self._evolve(
            version=e.originator_version,
            acknowledged_at=e.timestamp,
            acknowledged_by=e.acknowledged_by,
        )

    def on_complained(self, e: Complained) -> Recipient:
        return self._evolve(
            version=e.originator_version,
            complaints=self.complaints + 1,
            report_ids=self.report_ids | {e.report_id},
        )

    # --- queries -------------------------------------------------------------------------

    @property
    def detail_message(self) -> str:
        """What the user sees as 詳細メッセージ: the error's diagnostic, else the last reply."""
        if self.status is DeliveryStatus.ERROR:
            return self.error_detail or ""
        return self.last_reply or ""

    @property
    def unacknowledged_error(self) -> bool:
        """An error nobody has checked yet."""
        return self.status is DeliveryStatus.ERROR and self.acknowledged_at is None

    def received_before_sending(self, received_at: datetime) -> bool:
        """Whether a report received at ``received_at`` came in before the first attempt began."""
        return self.first_sent_at is not None and received_at < self.first_sent_at

    def is_due(self, now: datetime) -> bool:
        """May a dispatcher start an attempt now?"""
        if self.status is DeliveryStatus.SCHEDULED:
            return True
        if self.status is not DeliveryStatus.SENDING:
            return False
        if self.retry_at is not None:
            return self.retry_at <= now
        # Claimed but no outcome: the claiming process may have died.
        return self.lease_until is not None and self.lease_until <= now

    # --- commands ------------------------------------------------------------------------

    def start_attempt(
        self, *, now: datetime, message_id: str, policy: DeliveryPolicy
    ) -> list[RecipientEvent]:
        """Claim the recipient for a delivery attempt (recorded before handing over).

        Every attempt after the first reuses the first attempt's Message-ID: a
        retry after a lost reply or a dead dispatcher may reach a server that
        already holds the message, and the copies must be recognisably one message.
        """
        if not self.is_due(now):
            raise InvalidTransition(
                f"recipient {self.address} is {self.status.value} and not due at "
                f"{now.isoformat()}; nothing to send"
            )
        return [
            Sent(
                originator_id=self.id,
                originator_version=self.version + 1,
                timestamp=now,
                attempt=self.attempts + 1,
                message_id=self.message_id or message_id,
                lease_until=now + policy.lease,
            )
        ]

    def record_reply(
        self, *, code: int, text: str, now: datetime, policy: DeliveryPolicy
    ) -> list[RecipientEvent]:
        """Record the server's reply to the current attempt."""
        if self.status is not DeliveryStatus.SENDING:
            # An ERROR (e.g. a report that beat the reply) never turns back into SUCCEEDED.
            return []
        version = self.version + 1
        if 200 <= code < 300:
            return [
                Succeeded(
                    originator_id=self.id,
                    originator_version=version,
                    timestamp=now,
                    attempt=self.attempts,
                    reply_code=code,
                    reply_text=text,
                )
            ]
        if 500 <= code < 600:
            return [
                self._bounced(
                    source="smtp",
                    status=str(code),
                    diagnostic=f"{code} {text}".strip(),
                    permanent=True,
                    now=now,
                    reason=classify_reason(_status_in(text), str(code), text),
                )
            ]
        detail = f"{code} {text}".strip() if code else text
        if self.attempts >= policy.max_attempts:
            return [
                self._bounced(
                    source="retries",
                    status=str(code) if code else "4.4.7",
                    diagnostic=f"gave up after {self.attempts} attempts; last reply: {detail}",
                    permanent=False,
                    now=now,
                    # Retries used up is "expired" whatever the last temporary reply said.
                    reason="expired",
                )
            ]
        return [
            Deferred(
                originator_id=self.id,
                originator_version=version,
                timestamp=now,
                attempt=self.attempts,
                reply_code=code,
                reply_text=text,
                retry_at=now + policy.retry_delay(self.attempts),
            )
        ]

    def _bounced(
        self,
        *,
        source: str,
        status: str,
        diagnostic: str,
        permanent: bool,
        now: datetime,
        reason: str,
        report_id: str | None = None,
        reported_at: datetime | None = None,
        received_at: datetime | None = None,
    ) -> Bounced:
        """The Bounced event; one decided while sending (no report) is ``source:id:attempt``."""
        return Bounced(
            originator_id=self.id,
            originator_version=self.version + 1,
            timestamp=now,
            source=source,
            status=status,
            diagnostic=diagnostic,
            permanent=permanent,
            report_id=f"{source}:{self.id.hex}:{self.attempts}" if report_id is None else report_id,
            reported_at=now if reported_at is None else reported_at,
            received_at=now if received_at is None else received_at,
            reason=reason,
        )

    def _refusal(self, report_id: str, received_at: datetime) -> ReportOutcome | None:
        """Why no report with this id, received then, can change this delivery (or None)."""
        if report_id in self.report_ids:
            return "duplicate"
        if self.status is DeliveryStatus.SCHEDULED:
            # Nothing was sent yet, so no report can be about a delivery of ours.
            return "unmatched"
        if self.received_before_sending(received_at):
            # A report cannot answer a message that did not exist when it came in:
            # a wrong received_at, or a report about something else (docs/decisions.md).
            return "ignored"
        return None

    def receive_report(
        self,
        report: BounceReport,
        *,
        report_id: str,
        received_at: datetime,
        now: datetime,
        policy: DeliveryPolicy,
    ) -> tuple[ReportOutcome, Sequence[RecipientEvent]]:
        """Take in one normalised report about this recipient's delivery."""
        refused = self._refusal(report_id, received_at)
        if refused is not None:
            return refused, []
        if report.action == "complaint":
            return "applied", [
                Complained(
                    originator_id=self.id,
                    originator_version=self.version + 1,
                    timestamp=now,
                    report_id=report_id,
                    feedback_type=report.feedback_type or "abuse",
                    received_at=received_at,
                )
            ]
        if report.action != "failed":
            # delayed / delivered / relayed / expanded / autoreply: not a delivery error.
            return "ignored", []
        if self.succeeded_at is not None and received_at - self.succeeded_at > policy.bounce_window:
            return "late", []
        return "applied", [
            self._bounced(
                source=report.source,
                status=report.status,
                diagnostic=report_detail(report),
                permanent=report.permanent,
                now=now,
                reason=report_reason(report),
                report_id=report_id,
                reported_at=report.reported_at,
                received_at=received_at,
            )
        ]

    def acknowledge(self, *, by: str, now: datetime) -> list[RecipientEvent]:
        """Mark the error as checked; only an ERROR can be acknowledged, twice records nothing."""
        if self.status is not DeliveryStatus.ERROR:
            raise InvalidTransition(
                f"recipient {self.address} is {self.status.value}, not error: "
                "only a delivery error can be acknowledged"
            )
        if self.acknowledged_at is not None:
            return []
        return [
            ErrorAcknowledged(
                originator_id=self.id,
                originator_version=self.version + 1,
                timestamp=now,
                acknowledged_by=by,
            )
        ]


def outcome_detail(
    state: Recipient,
    kind: ReportOutcome,
    report: BounceReport,
    *,
    received_at: datetime,
    policy: DeliveryPolicy,
) -> str:
    """Why ``receive_report`` answered ``kind`` (empty for ``applied``), in words for the host.

    ``state`` is the recipient as it was before the report.
    """
    if kind == "duplicate":
        return "the same report (same delivery, action, status and diagnostic) is already recorded"
    if kind == "unmatched":
        return "the delivery was never sent: nothing can be reported about it yet"
    if kind == "late" and state.succeeded_at is not None:
        return (
            f"received {received_at.isoformat()}, more than the bounce window "
            f"({policy.bounce_window}) after the success at {state.succeeded_at.isoformat()}"
        )
    if kind == "ignored":
        if state.received_before_sending(received_at) and state.first_sent_at is not None:
            return (
                f"received {received_at.isoformat()}, before the delivery it names was first "
                f"handed over ({state.first_sent_at.isoformat()}): it cannot be about it"
            )
        return f"{report.action} is not a delivery error"
    return ""


_SLOTS = tuple(a.name for a in attrs.fields(Recipient))
_SLOT_INDEX = {name: at for at, name in enumerate(_SLOTS)}
_read_slots = attrgetter(*_SLOTS)
# The slots' own descriptors: setting through them is what object.__setattr__ does
# on a slotted class, without the frozen class's refusal.
_SLOT_SETTERS = tuple(getattr(Recipient, name).__set__ for name in _SLOTS)
_call = operator.call
_drain: Callable[[Iterable[object]], None] = deque[object](maxlen=0).extend


# --- the one mutator ---------------------------------------------------------------------

_MUTATORS: dict[type[RecipientEvent], Callable[[Any, Recipient | None], Recipient]] = {
    Scheduled: lambda e, _: Recipient.started(e),
    Sent: lambda e, s: existing(s).on_sent(e),
    Succeeded: lambda e, s: existing(s).on_succeeded(e),
    Deferred: lambda e, s: existing(s).on_deferred(e),
    Bounced: lambda e, s: existing(s).on_bounced(e),
    ErrorAcknowledged: lambda e, s: existing(s).on_acknowledged(e),
    Complained: lambda e, s: existing(s).on_complained(e),
}


def mutate(event: RecipientEvent, state: Recipient | None) -> Recipient:
    """The recipient aggregate's one mutator: its state after ``event``.

    ``Scheduled`` starts a recipient; every other event evolves an existing one.
    A table keyed by the event's class rather than an isinstance ladder: it is
    called once per event in every fold, a rebuild folds millions.
    """
    return _MUTATORS[type(event)](event, state)
