"""The monthly allowance rule: never hand over what could make the month exceed its limit."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

__all__ = ["allowance_id", "allowance_left", "pause_reason"]

_ALLOWANCE_NS = uuid5(NAMESPACE_URL, "urn:broadcast-domain:allowance")


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
