"""Policies: the tunable rules (bounce window, retries, lease) as plain values."""

from __future__ import annotations

from datetime import timedelta

import attrs

__all__ = ["DeliveryPolicy"]


@attrs.frozen
class DeliveryPolicy:
    """How long failure reports may turn a success into an error, and how to retry.

    - ``bounce_window``: a report received later than this after the success is ``late``.
    - ``max_attempts``: a recipient that got 4xx / no reply this many times becomes ERROR.
    - ``backoff``: the wait before attempt n+1 is ``backoff * 2**(n-1)``, capped at
      ``max_backoff``.
    - ``lease``: a recipient claimed by a dispatcher that never recorded an outcome
      (it died) may be claimed again after this long, with the same Message-ID.
    """

    bounce_window: timedelta = timedelta(hours=24)
    max_attempts: int = 5
    backoff: timedelta = timedelta(minutes=5)
    max_backoff: timedelta = timedelta(hours=4)
    lease: timedelta = timedelta(minutes=10)

    def retry_delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        delay: timedelta = self.backoff * (2 ** max(0, attempt - 1))
        return min(delay, self.max_backoff)
