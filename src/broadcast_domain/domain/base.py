"""The base of every domain event, and the rule every mutator shares.

Each aggregate module defines its own events and applies them (one mutator per
aggregate); this module is what they have in common, so that no aggregate
imports another and nothing here imports an aggregate.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar
from uuid import UUID

import attrs

__all__ = ["DomainEvent", "existing"]


@attrs.frozen(kw_only=True)
class DomainEvent:
    """Base of every event: which aggregate, which version, when.

    Every event names its aggregate (``originator_id``), its place in that
    aggregate's sequence (``originator_version``) and when it happened
    (``timestamp``, aware UTC). Events are past-tense, frozen, slotted attrs
    classes; their stored names are the codec's stable topics, not module paths.
    """

    originator_id: UUID
    originator_version: int
    timestamp: datetime


S = TypeVar("S")


def existing(state: S | None) -> S:
    """The state an event applies to; only a creation event may apply to none."""
    if state is None:
        raise ValueError("event applied before its aggregate's creation event")
    return state
