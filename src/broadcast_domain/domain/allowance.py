"""The monthly allowance rule: never hand over what could make the month exceed its limit."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

import attrs

from broadcast_domain.domain.base import DomainEvent

__all__ = ["SendsReserved", "allowance_id", "allowance_left", "pause_reason"]

_ALLOWANCE_NS = uuid5(NAMESPACE_URL, "urn:broadcast-domain:allowance")


@attrs.frozen(kw_only=True)
class SendsReserved(DomainEvent):
    """A dispatcher reserved part of an account's monthly allowance before handing over.

    One aggregate per account and month; writing it at the next version in the
    same transaction as the claims serialises dispatchers, so two of them never
    spend the same allowance.
    """

    account_id: str
    year: int
    month: int
    count: int


def allowance_id(account_id: str, year: int, month: int) -> UUID:
    """The aggregate that serialises reservations of one account's month."""
    return uuid5(_ALLOWANCE_NS, f"{account_id}:{year:04d}-{month:02d}")


def allowance_left(limit: int | None, counted: int, in_flight: int) -> int | None:
    """How many new recipients may still be handed over (None: no limit).

    ``counted`` is the month's count (recipients with a first outcome this month);
    ``in_flight`` the recipients claimed but without an outcome yet: each will
    count once it has one, so they are reserved already.
    """
    if limit is None:
        return None
    return max(0, limit - counted - in_flight)


def pause_reason(limit: int, year: int, month: int, timezone: str) -> str:
    """The reason shown on a broadcast paused by the limit."""
    return (
        f"monthly limit of {limit:,} sends reached for {year:04d}-{month:02d} ({timezone}); "
        "raise the limit with configure_account or wait for the next month"
    )
