"""Who may do what (SPEC 2, Permissions). Refusal raises PermissionDenied naming the role."""

from __future__ import annotations

from broadcast_domain.domain.values import (
    Actor,
    AddressBookRole,
    AddressBookSource,
    InboxRole,
    Source,
)
from broadcast_domain.errors import InvalidInput, PermissionDenied

__all__ = ["require_export", "require_inbox_role"]


def _check_actor(actor: object) -> Actor:
    if not isinstance(actor, Actor):
        raise InvalidInput(
            f"actor must be a broadcast_domain.Actor, got {type(actor).__name__}", field="actor"
        )
    return actor


def _at_least(role: object, needed: InboxRole | AddressBookRole) -> bool:
    # Both are IntEnums, so a bare ``<`` would also order an int, True or the
    # other enum: a role only counts when it is a member of the needed enum.
    # Actor refuses such values already; this keeps the rule where it is used.
    if type(role) is not type(needed):
        return False
    return list(type(needed)).index(role) >= list(type(needed)).index(needed)


def require_inbox_role(actor: object, inbox_id: str, needed: InboxRole, action: str) -> Actor:
    """The actor's role on the inbox must be ``needed`` or above."""
    a = _check_actor(actor)
    role = a.inbox_role(inbox_id)
    if not _at_least(role, needed):
        have = role.name if isinstance(role, InboxRole) else "no role"
        raise PermissionDenied(
            f"{action} needs inbox role {needed.name} or above on inbox {inbox_id!r}; "
            f"user {a.user_id!r} has {have}",
            required=f"InboxRole.{needed.name}",
        )
    return a


def require_export(actor: object, inbox_id: str, source: Source, action: str) -> Actor:
    """Exports: address-book ADMIN+ for address-book sources, inbox OPERATOR+ for CSV sources."""
    a = _check_actor(actor)
    if isinstance(source, AddressBookSource):
        role = a.address_book_role(source.address_book_id)
        if not _at_least(role, AddressBookRole.ADMIN):
            have = role.name if isinstance(role, AddressBookRole) else "no role"
            raise PermissionDenied(
                f"{action} needs address book role ADMIN or above on address book "
                f"{source.address_book_id!r}; user {a.user_id!r} has {have}",
                required="AddressBookRole.ADMIN",
            )
        return a
    return require_inbox_role(a, inbox_id, InboxRole.OPERATOR, action)
