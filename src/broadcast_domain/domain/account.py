"""The Account aggregate: the tenant's monthly limit, time zone and send rate."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

import attrs

from broadcast_domain.domain.base import DomainEvent

__all__ = ["Account", "AccountConfigured", "account_aggregate_id"]

_ACCOUNT_NS = uuid5(NAMESPACE_URL, "urn:broadcast-domain:account")


def account_aggregate_id(account_id: str) -> UUID:
    """The aggregate id of an account, derived from the host's account id."""
    return uuid5(_ACCOUNT_NS, account_id)


@attrs.frozen(kw_only=True)
class AccountConfigured(DomainEvent):
    """An account's monthly limit, time zone or send rate was set."""

    account_id: str
    monthly_limit: int | None
    timezone: str
    send_rate: float | None

    def apply(self, state: Account | None) -> Account:
        """The account after this event: the last configuration wins whole."""
        return Account.from_event(self)


@attrs.frozen
class Account:
    """An account's configuration (the last AccountConfigured wins)."""

    account_id: str
    version: int
    monthly_limit: int | None = None
    timezone: str = "UTC"
    send_rate: float | None = None

    @classmethod
    def from_event(cls, e: AccountConfigured) -> Account:
        """The state after a configuration event."""
        return cls(
            account_id=e.account_id,
            version=e.originator_version,
            monthly_limit=e.monthly_limit,
            timezone=e.timezone,
            send_rate=e.send_rate,
        )
