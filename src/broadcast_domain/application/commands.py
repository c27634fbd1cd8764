"""The plain commands: accounts, scheduling and cancelling broadcasts, acknowledging errors.

Each loads what it decides on through the gateway, asks the domain for events
and records them (``decide_and_put`` retries on a version conflict).
Sending and bounce intake have modules of their own (``dispatching``,
``intake``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broadcast_domain.application.eventlog import VersionConflict
from broadcast_domain.application.gateway import Gateway
from broadcast_domain.application.importing import NewBroadcast
from broadcast_domain.application.projector import Projector
from broadcast_domain.application.scheduling import prepare_recipients
from broadcast_domain.application.validation import require_text
from broadcast_domain.codec import acknowledgement_rows_encoder
from broadcast_domain.domain.account import account_aggregate_id
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import (
    AccountConfigured,
    BroadcastEvent,
    BroadcastScheduled,
    DomainEvent,
    RecipientEvent,
)
from broadcast_domain.domain.permissions import require_inbox_role
from broadcast_domain.domain.recipient import recipient_id
from broadcast_domain.domain.values import InboxRole, require_aware
from broadcast_domain.errors import ConcurrencyConflict, InvalidInput, UnknownRecipient
from broadcast_domain.projections.views import BulkAcknowledgement

__all__ = ["WRITE_CHUNK", "Commands"]

WRITE_CHUNK = 10_000
"""Events per transaction when one command records many (scheduling, acknowledging)."""


def _check_account_settings(
    monthly_limit: object, timezone: object, send_rate: object
) -> tuple[int | None, str, float | None]:
    if monthly_limit is not None and (
        not isinstance(monthly_limit, int) or isinstance(monthly_limit, bool) or monthly_limit < 0
    ):
        raise InvalidInput(
            f"monthly_limit must be a non-negative int or None, got {monthly_limit!r}",
            field="monthly_limit",
        )
    zone = require_text(timezone, "timezone")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"timezone {timezone!r} is not an IANA time zone name such as 'Asia/Tokyo'",
            field="timezone",
        ) from None
    if send_rate is not None and (
        isinstance(send_rate, bool) or not isinstance(send_rate, int | float) or send_rate <= 0
    ):
        raise InvalidInput(
            f"send_rate must be a positive number of messages per second, got {send_rate!r}",
            field="send_rate",
        )
    return monthly_limit, zone, float(send_rate) if send_rate is not None else None


class Commands:
    """Records accounts, broadcasts and acknowledgements."""

    def __init__(
        self, gateway: Gateway, projector: Projector, clock: Callable[[], datetime]
    ) -> None:
        self.gateway = gateway
        self.projector = projector
        self.now = clock

    def configure_account(
        self, account_id: object, *, monthly_limit: object, timezone: object, send_rate: object
    ) -> None:
        """Record an account's monthly limit, time zone and send rate."""
        account = require_text(account_id, "account_id")
        limit, zone, rate = _check_account_settings(monthly_limit, timezone, send_rate)
        now = self.now()

        def decide() -> tuple[None, list[DomainEvent]]:
            current = self.gateway.account(account)
            return None, [
                AccountConfigured(
                    originator_id=account_aggregate_id(account),
                    originator_version=(current.version if current else 0) + 1,
                    timestamp=now,
                    account_id=account,
                    monthly_limit=limit,
                    timezone=zone,
                    send_rate=rate,
                )
            ]

        self.gateway.decide_and_put(decide)

    def create_broadcast(self, new: NewBroadcast) -> UUID:
        """Record a broadcast and its recipients once every recipient has been checked.

        The recipients are read, checked, folded and encoded first (in bounded
        memory, :mod:`~broadcast_domain.application.scheduling`), so a bad one
        anywhere records nothing. Then they are written a chunk per transaction,
        and the broadcast's own event last: until it commits the broadcast does
        not exist, so a crash midway leaves nothing visible or sendable.
        """
        now = self.now()
        bid = uuid.uuid4()
        with prepare_recipients(
            new.recipients, broadcast_id=bid, account_id=new.account_id, now=now
        ) as prepared:
            if not prepared.count:
                raise InvalidInput("a broadcast needs at least one recipient", field="recipients")
            for rows in prepared.chunks():
                self.gateway.put_rows(rows)
        self.gateway.put(
            [
                BroadcastScheduled(
                    originator_id=bid,
                    originator_version=1,
                    timestamp=now,
                    account_id=new.account_id,
                    inbox_id=new.inbox_id,
                    sender=new.sender,
                    subject=new.subject,
                    text_body=new.text_body,
                    html_body=new.html_body,
                    source_kind=new.source_kind,
                    source_ref=new.source_ref,
                    scheduled_at=new.scheduled_at,
                    created_by=new.created_by,
                    recipient_count=prepared.count,
                )
            ]
        )
        return bid

    def cancel_broadcast(self, broadcast_id: object, *, actor: Any) -> None:
        """Cancel a broadcast whose sending has not started (inbox OPERATOR or above)."""
        first = self.gateway.broadcast(broadcast_id)
        who = require_inbox_role(
            actor, first.inbox_id, InboxRole.OPERATOR, "cancelling a broadcast"
        )
        now = self.now()

        def decide() -> tuple[None, list[BroadcastEvent]]:
            return None, self.gateway.broadcast(first.id).cancel(by=who.user_id, now=now)

        self.gateway.decide_and_put(decide)

    def acknowledge_errors(self, b: Broadcast, *, actor: Any, as_of: int | datetime | None) -> int:
        """Acknowledge every unacknowledged error recorded up to ``as_of``; how many.

        ``as_of`` is the ``.as_of`` of an ``unacknowledged_errors()`` page (a log
        position), or an aware time: the errors recorded at or before it.
        """
        who = require_inbox_role(actor, b.inbox_id, InboxRole.OPERATOR, "acknowledging errors")
        views = self.projector.views
        if isinstance(as_of, datetime):
            as_of = self.gateway.position_at(require_aware(as_of, "as_of"))
        if as_of is None:
            as_of = views.position()
        if isinstance(as_of, bool) or not isinstance(as_of, int) or as_of < 0:
            raise InvalidInput(
                "as_of must be the .as_of of an unacknowledged_errors() page or an aware time",
                field="as_of",
            )
        now = self.now()
        # Each row is an unacknowledged error at its version: the event a
        # Recipient.acknowledge() would record is ErrorAcknowledged(version + 1, now,
        # who), without loading it; its stored row is encoded without building it.
        encode = acknowledgement_rows_encoder(now, who.user_id)
        total = conflicts = 0
        while conflicts < self.gateway.max_retries:
            # The worklist is a read (the views); each write is checked by the
            # recipients' versions, so a stale row conflicts and is read again.
            read_at = self.projector.catch_up()
            ids: list[UUID] = []
            versions: list[int] = []
            more = False
            for rid, version in views.iter_unacknowledged_versions(b.id, as_of):
                if len(ids) >= WRITE_CHUNK:
                    more = True  # one row past a full batch: the list goes on
                    break
                ids.append(rid)
                versions.append(version + 1)
            if not ids:
                return total
            try:
                positions = self.gateway.put_rows(encode(ids, versions))
            except VersionConflict:
                conflicts += 1
                continue
            total += len(ids)
            if not more and as_of <= read_at:
                # The list was read whole at a position at or after as_of: every error up
                # to as_of was in it (an error's position never changes, and an
                # acknowledgement is never undone), so no second read is needed. The
                # views take the events as written when nothing came between: each
                # row is then the error read (the log took each next version), so the
                # fold's outcome is known and no event is built or folded.
                bulk = BulkAcknowledgement(b.id, ids, versions, positions or (), now, who.user_id)
                if positions is None or not self.projector.apply_acknowledgements(bulk):
                    self.projector.catch_up()
                return total
        raise ConcurrencyConflict(
            "acknowledging errors kept conflicting with other writers; try again"
        )

    def record_export(self, bid: UUID, by: str, kind: str, as_of: int, rows: int) -> None:
        """Record that ``by`` exported ``rows`` rows of kind ``kind`` as of ``as_of``."""
        now = self.now()
        self.gateway.decide_and_put(
            lambda: (
                None,
                self.gateway.broadcast(bid).record_export(
                    by=by, kind=kind, as_of=as_of, rows=rows, now=now
                ),
            )
        )

    def acknowledge_error(self, b: Broadcast, address: object, *, actor: Any) -> bool:
        """Acknowledge one recipient's error; False when it was already acknowledged."""
        who = require_inbox_role(actor, b.inbox_id, InboxRole.OPERATOR, "acknowledging errors")
        rid = recipient_id(b.id, require_text(address, "address"))
        now = self.now()

        def decide() -> tuple[bool, list[RecipientEvent]]:
            state = self.gateway.recipient(rid)
            if state is None:
                raise UnknownRecipient(f"broadcast {b.id} has no recipient {address!r}")
            events = state.acknowledge(by=who.user_id, now=now)
            return bool(events), events

        return self.gateway.decide_and_put(decide)
