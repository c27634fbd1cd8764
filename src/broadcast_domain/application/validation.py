"""Input checks at the facade: addresses, header fields, times.

Address syntax goes through ``email-validator`` (no DNS). Because a broadcast
may hold a million addresses, plain ASCII addresses of the common dot-atom
shape are accepted by a strict regular expression first (everything it
accepts, email-validator accepts too); anything else goes to the validator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from operator import attrgetter
from uuid import UUID

from email_validator import EmailNotValidError, validate_email

from broadcast_domain.domain.values import Contact, normalise_address
from broadcast_domain.errors import InvalidInput, UnknownBroadcast

__all__ = [
    "CheckedContacts",
    "Columns",
    "check_address",
    "check_contacts",
    "check_header_field",
    "check_paging",
    "fold_contacts",
    "require_broadcast_id",
    "require_text",
]

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")
# _FAST with the local part's length bound (64) as a look-ahead: one C call per
# address checks what the per-contact hot path checks in three steps.
_FAST_BOUNDED = re.compile(rf"(?=[^@]{{1,64}}@){_FAST.pattern}")
_UNSAFE = re.compile("[\r\n\x00]")


def check_header_field(value: str | None, field: str) -> None:
    """No CR, LF or NUL may reach a message header (header injection)."""
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string, got {type(value).__name__}", field=field)
    for bad, name in (("\r", "CR"), ("\n", "LF"), ("\x00", "NUL")):
        if bad in value:
            raise InvalidInput(
                f"{field} contains a {name} character at offset {value.index(bad)}: "
                "header fields must be a single line",
                field=field,
            )


def check_address(address: str, field: str) -> str:
    """Validate address syntax (no DNS) and return it trimmed; InvalidInput names the field."""
    if not isinstance(address, str):
        raise InvalidInput(f"{field} must be a string, got {type(address).__name__}", field=field)
    addr = address.strip()
    check_header_field(addr, field)
    if len(addr) <= 254 and _FAST.fullmatch(addr) and len(addr.partition("@")[0]) <= 64:
        return addr
    try:
        result = validate_email(addr, check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidInput(
            f"{field}: {addr!r} is not a valid e-mail address: {e}", field=field
        ) from None
    return result.normalized


def fold_contacts(
    contacts: Iterable[Contact], field: str = "recipients"
) -> tuple[list[Contact], int]:
    """Validate every contact and fold duplicates by normalised address (first kept).

    Returns the kept contacts in order and how many duplicates were dropped. The
    first bad contact raises InvalidInput naming its index and field. (Scheduling
    streams through :func:`check_contacts` instead; this is the same rule on a list.)
    """
    items = list(contacts)
    keys, columns = check_contacts(items, 0, field)
    seen: set[str] = set()
    kept: list[Contact] = []
    for key, address, contact in zip(keys, columns[0], items, strict=True):
        if key in seen:
            continue
        seen.add(key)
        kept.append(
            contact
            if address == contact.address
            else Contact(
                address, contact.last_name, contact.first_name, contact.company, contact.contact_id
            )
        )
    return kept, len(items) - len(kept)


Columns = tuple[list[str], list[str], list[str], list[str], list[str | None]]
"""Checked contacts a field at a time: addresses, last names, first names, companies, ids."""

CheckedContacts = tuple[list[str], Columns]
"""Each contact's fold key (its normalised address), and the contacts' checked columns."""

_COLUMN_GETTERS = tuple(
    attrgetter(name) for name in ("address", "last_name", "first_name", "company", "contact_id")
)


def check_contacts(
    contacts: Sequence[object], start: int, field: str = "recipients"
) -> CheckedContacts:
    """Validate a run of contacts (``contacts[0]`` is ``{field}[start]``); no folding.

    Returns each contact's fold key and the checked fields as columns, in
    order. The first bad contact raises InvalidInput naming its index and
    field, exactly as :func:`fold_contacts` would.
    """
    if contacts and set(map(type, contacts)) == {Contact}:
        addresses, lasts, firsts, companies, ids = columns = tuple(
            list(map(get, contacts)) for get in _COLUMN_GETTERS
        )
        # The common case, decided a column at a time in C: plain ASCII dot-atom
        # addresses (fold key: lower case, as NFC and casefold are identities on them),
        # names without CR, LF or NUL, contact ids that are text or None.
        try:
            names_safe = (
                _UNSAFE.search("".join(lasts) + "".join(firsts) + "".join(companies)) is None
            )
            plain = (
                names_safe
                and max(map(len, addresses)) <= 254
                and all(map(_FAST_BOUNDED.fullmatch, addresses))
                and set(map(type, ids)) <= {str, type(None)}
            )
        except TypeError:  # a field that is not text: the slow path names it
            plain = False
        if plain:
            return "\n".join(addresses).lower().split("\n"), columns  # type: ignore[return-value]
    keys: list[str] = []
    rows: list[tuple[str, str, str, str, str | None]] = []
    for index, contact in enumerate(contacts, start):
        key, values = _check_contact(contact, index, field)
        keys.append(key)
        rows.append(values)
    return keys, (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
    )


def _check_contact(
    contact: object, index: int, field: str
) -> tuple[str, tuple[str, str, str, str, str | None]]:
    # One contact, every rule: what fold_contacts does for each, plus the contact id.
    if not isinstance(contact, Contact):
        where = f"{field}[{index}]"
        raise InvalidInput(
            f"{where} must be a broadcast_domain.Contact, got {type(contact).__name__}",
            field=where,
        )
    address = check_address(contact.address, f"{field}[{index}].address")
    for name in ("last_name", "first_name", "company"):
        check_header_field(getattr(contact, name), f"{field}[{index}].{name}")
    contact_id = contact.contact_id
    if contact_id is not None and not isinstance(contact_id, str):
        where = f"{field}[{index}].contact_id"
        raise InvalidInput(
            f"{where} must be a string or None, got {type(contact_id).__name__}", field=where
        )
    return (
        normalise_address(address),
        (address, contact.last_name, contact.first_name, contact.company, contact_id),
    )


def require_text(value: object, field: str, *, allow_empty: bool = False) -> str:
    """A string (non-blank unless ``allow_empty``), or InvalidInput naming the field."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string, got {type(value).__name__}", field=field)
    if not allow_empty and not value.strip():
        raise InvalidInput(f"{field} must not be empty", field=field)
    return value


def require_broadcast_id(value: object, field: str = "broadcast_id") -> UUID:
    """A broadcast id given as a UUID or its string form; UnknownBroadcast otherwise."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise UnknownBroadcast(f"{field} {value!r} is not a broadcast id (a UUID)")


def check_paging(page: object, per_page: object) -> tuple[int, int]:
    """A page number (>= 1) and a page size (1 to 1000), or InvalidInput."""
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise InvalidInput(f"page must be an int >= 1, got {page!r}", field="page")
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= 1000:
        raise InvalidInput(
            f"per_page must be an int from 1 to 1000, got {per_page!r}", field="per_page"
        )
    return page, per_page
