"""Every domain event, by name: a re-export of the events each aggregate module defines.

The aggregates own their events (``domain/recipient.py``, ``domain/broadcast.py``,
``domain/account.py``, ``domain/allowance.py``, ``domain/unmatched.py``) and
apply them with one mutator each; :class:`DomainEvent` is in ``domain/base.py``.
This module imports them and nothing imports it back, so it makes no cycle.
"""

from __future__ import annotations

from broadcast_domain.domain.account import AccountConfigured
from broadcast_domain.domain.allowance import SendsReserved
from broadcast_domain.domain.base import DomainEvent
from broadcast_domain.domain.broadcast import (
    BroadcastCancelled,
    BroadcastCompleted,
    BroadcastEvent,
    BroadcastPaused,
    BroadcastResumed,
    BroadcastScheduled,
    ResultsExported,
    SendingStarted,
)
from broadcast_domain.domain.recipient import (
    Bounced,
    Complained,
    Deferred,
    ErrorAcknowledged,
    RecipientEvent,
    Scheduled,
    Sent,
    Succeeded,
)
from broadcast_domain.domain.unmatched import BounceUnmatched, UnmatchedResolved

__all__ = [
    "AccountConfigured",
    "BounceUnmatched",
    "Bounced",
    "BroadcastCancelled",
    "BroadcastCompleted",
    "BroadcastEvent",
    "BroadcastPaused",
    "BroadcastResumed",
    "BroadcastScheduled",
    "Complained",
    "Deferred",
    "DomainEvent",
    "ErrorAcknowledged",
    "RecipientEvent",
    "ResultsExported",
    "Scheduled",
    "SendingStarted",
    "SendsReserved",
    "Sent",
    "Succeeded",
    "UnmatchedResolved",
]
