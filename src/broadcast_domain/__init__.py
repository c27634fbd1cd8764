"""broadcast-domain: the event-sourced domain core of bulk e-mail broadcasts (一斉配信).

The public surface is SPEC section 4; everything named in ``__all__`` is stable.
"""

from __future__ import annotations

from broadcast_domain.application.results import (
    BounceOutcome,
    BroadcastItem,
    DispatchReport,
    ErrorPage,
    ExportRecord,
    HistoryEntry,
    ImportedRecipients,
    ImportProblem,
    MonthlyUsage,
    Page,
    RecipientItem,
    Summary,
)
from broadcast_domain.application.service import BroadcastService
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.reasons import REASONS
from broadcast_domain.domain.values import (
    Actor,
    AddressBookRole,
    AddressBookSource,
    BounceReport,
    BroadcastStatus,
    BroadcastView,
    Contact,
    CsvSource,
    DeliveryStatus,
    InboxRole,
)
from broadcast_domain.errors import (
    BroadcastError,
    ConcurrencyConflict,
    CsvExportError,
    CsvImportError,
    InvalidInput,
    InvalidSignature,
    InvalidTransition,
    PermissionDenied,
    QuotaExceeded,
    UnknownBroadcast,
    UnknownRecipient,
)

__all__ = [
    "REASONS",
    "Actor",
    "AddressBookRole",
    "AddressBookSource",
    "BounceOutcome",
    "BounceReport",
    "BroadcastError",
    "BroadcastItem",
    "BroadcastService",
    "BroadcastStatus",
    "BroadcastView",
    "ConcurrencyConflict",
    "Contact",
    "CsvExportError",
    "CsvImportError",
    "CsvSource",
    "DeliveryPolicy",
    "DeliveryStatus",
    "DispatchReport",
    "ErrorPage",
    "ExportRecord",
    "HistoryEntry",
    "ImportProblem",
    "ImportedRecipients",
    "InboxRole",
    "InvalidInput",
    "InvalidSignature",
    "InvalidTransition",
    "MonthlyUsage",
    "Page",
    "PermissionDenied",
    "QuotaExceeded",
    "RecipientItem",
    "Summary",
    "UnknownBroadcast",
    "UnknownRecipient",
]
