"""Value objects of the broadcast domain: frozen, slotted attrs classes and enums."""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

from broadcast_domain.errors import InvalidInput

__all__ = [
    "Actor",
    "AddressBookRole",
    "AddressBookSource",
    "BounceReport",
    "BroadcastStatus",
    "BroadcastView",
    "Contact",
    "CsvSource",
    "DeliveryStatus",
    "InboxRole",
    "Source",
    "normalise_address",
    "require_aware",
    "search_key",
    "without_nul",
]


class DeliveryStatus(enum.Enum):
    """A recipient's delivery status (SPEC 2)."""

    SCHEDULED = "scheduled"
    SENDING = "sending"
    SUCCEEDED = "succeeded"
    ERROR = "error"

    @property
    def label(self) -> str:
        """The Japanese label shown to users and written to the result CSV."""
        return _DELIVERY_LABELS[self]

    @property
    def is_delivered(self) -> bool:
        """True once the recipient has an outcome (success or error)."""
        return self in (DeliveryStatus.SUCCEEDED, DeliveryStatus.ERROR)


_DELIVERY_LABELS = {
    DeliveryStatus.SCHEDULED: "予約済み",
    DeliveryStatus.SENDING: "配信中",
    DeliveryStatus.SUCCEEDED: "配信成功",
    DeliveryStatus.ERROR: "配信エラー",
}


class BroadcastStatus(enum.Enum):
    """A broadcast's status (SPEC 2)."""

    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"
    PAUSED = "paused"

    @property
    def label(self) -> str:
        """The Japanese label."""
        return _BROADCAST_LABELS[self]


_BROADCAST_LABELS = {
    BroadcastStatus.SCHEDULED: "予約済み",
    BroadcastStatus.SENDING: "配信中",
    BroadcastStatus.SENT: "配信済み",
    BroadcastStatus.CANCELLED: "キャンセル",
    BroadcastStatus.PAUSED: "一時停止",
}


class BroadcastView(enum.Enum):
    """Which broadcasts of an inbox a list shows."""

    ALL = "all"
    SENDING = "sending"
    SENT = "sent"


class InboxRole(enum.IntEnum):
    """An actor's role on an inbox, ordered: VIEWER < OPERATOR < ADMIN."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


class AddressBookRole(enum.IntEnum):
    """An actor's role on an address book, ordered: VIEWER < EDITOR < ADMIN < OWNER."""

    VIEWER = 1
    EDITOR = 2
    ADMIN = 3
    OWNER = 4


def normalise_address(address: str) -> str:
    """The key under which recipients are folded: trimmed, NFC, domain lower-cased.

    The local part keeps its case (RFC 5321 says it may be significant) but the
    whole address is case-folded for the key because every real mailbox provider
    treats local parts case-insensitively and users expect "A@x" and "a@x" to be one.
    """
    return unicodedata.normalize("NFC", address.strip()).casefold()


def search_key(*parts: str | None) -> str:
    """Text normalised for keyword search: NFKC, case-folded, spaces removed."""
    joined = " ".join(p for p in parts if p)
    folded = unicodedata.normalize("NFKC", joined).casefold()
    return "".join(folded.split())


def without_nul(text: str) -> str:
    """``text`` with every NUL character replaced by U+FFFD (the replacement character).

    Reply texts, diagnostics and report ids come from other servers; a NUL
    among them would be shown as nothing and is refused by PostgreSQL's text
    columns, so the events that carry them hold U+FFFD instead (their
    converters call this, and so does any encoder that writes such an event
    without building it).
    """
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def require_aware(value: datetime, field: str) -> datetime:
    """Reject naive datetimes: every time in this library is timezone-aware."""
    if not isinstance(value, datetime):
        raise InvalidInput(f"{field} must be a datetime, got {type(value).__name__}", field=field)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(
            f"{field} is a naive datetime ({value.isoformat()}); pass a timezone-aware "
            "datetime, e.g. datetime(..., tzinfo=timezone.utc)",
            field=field,
        )
    return value


def _str(value: Any) -> str:
    return "" if value is None else str(value)


@attrs.frozen
class Contact:
    """One recipient as the host knows it."""

    address: str
    last_name: str = attrs.field(default="", converter=_str)
    first_name: str = attrs.field(default="", converter=_str)
    company: str = attrs.field(default="", converter=_str)
    contact_id: str | None = None


@attrs.frozen
class AddressBookSource:
    """Recipients picked from an address book."""

    address_book_id: str


@attrs.frozen
class CsvSource:
    """Recipients imported from a CSV file."""

    file_name: str


Source = AddressBookSource | CsvSource


def _checked_roles(value: object, field: str, role_type: type[enum.Enum]) -> Mapping[str, Any]:
    # Roles decide who may export personal data: a role of the other enum, a
    # bare integer or ``True`` would compare as an int (IntEnum) and grant
    # access, so only members of the field's own enum are accepted.
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"{field} must be a mapping of id to {role_type.__name__}, got {type(value).__name__}",
            field=field,
        )
    checked: dict[str, Any] = {}
    for key, role in value.items():
        if not isinstance(key, str):
            raise InvalidInput(
                f"{field} key {key!r} must be a string id, got {type(key).__name__}",
                field=field,
            )
        if type(role) is not role_type:
            raise InvalidInput(
                f"{field}[{key!r}] must be a {role_type.__name__} "
                f"({', '.join(m.name for m in role_type)}), got {role!r}",
                field=f"{field}[{key!r}]",
            )
        checked[key] = role
    return MappingProxyType(checked)


def _inbox_roles(value: object) -> Mapping[str, InboxRole]:
    return _checked_roles(value, "inbox_roles", InboxRole)


def _address_book_roles(value: object) -> Mapping[str, AddressBookRole]:
    return _checked_roles(value, "address_book_roles", AddressBookRole)


@attrs.frozen
class Actor:
    """Who acts, with their roles per inbox and per address book (supplied by the host).

    ``inbox_roles`` maps inbox ids (strings) to ``InboxRole`` members and
    ``address_book_roles`` maps address book ids to ``AddressBookRole`` members;
    anything else (a string, an int, ``True``, the other enum) is
    ``InvalidInput`` naming the key. Both are kept as read-only copies.
    """

    user_id: str
    inbox_roles: Mapping[str, InboxRole] = attrs.field(factory=dict, converter=_inbox_roles)
    address_book_roles: Mapping[str, AddressBookRole] = attrs.field(
        factory=dict, converter=_address_book_roles
    )

    def inbox_role(self, inbox_id: str) -> InboxRole | None:
        """The actor's role on the inbox, or None."""
        return self.inbox_roles.get(inbox_id)

    def address_book_role(self, book_id: str) -> AddressBookRole | None:
        """The actor's role on the address book, or None."""
        return self.address_book_roles.get(book_id)


@attrs.frozen
class BounceReport:
    """One normalised failure report (from a DSN, a non-standard bounce or a webhook).

    ``action`` says what the report is: ``"failed"`` (a delivery error),
    ``"delayed"``, ``"delivered"``, ``"relayed"``, ``"expanded"`` (not errors),
    ``"autoreply"`` (RFC 3834, not an error) or ``"complaint"`` (RFC 5965 ARF,
    recorded as a complaint, never as an error).
    """

    recipient: str
    status: str
    diagnostic: str
    permanent: bool
    reported_at: datetime
    verp_token: str | None = None
    message_id: str | None = None
    report_id: str | None = None
    action: str = "failed"
    source: str = "report"
    remote_mta: str | None = None
    feedback_type: str | None = None
    # One of REASONS when the reporter decided it (a parser, a webhook); None lets
    # the recipient decide from the status and the diagnostic.
    reason: str | None = None
