"""The rule-based state machine, on the in-memory store and on a SQLite file."""

from __future__ import annotations

import os
import tempfile

from hypothesis import settings

from broadcast_domain import BroadcastService
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.machine import SIGNING_KEY, BroadcastMachine


class MemoryMachine(BroadcastMachine):
    """SPEC 2 invariants hold on memory://."""


class SqliteMachine(BroadcastMachine):
    """SPEC 2 invariants hold on a SQLite file."""

    def make_service(self, clock: FakeClock) -> BroadcastService:
        self._dir = tempfile.TemporaryDirectory()
        path = os.path.join(self._dir.name, "machine.db")
        return BroadcastService.open(
            f"sqlite:///{path}",
            return_path="bounces@mail.example.com",
            signing_key=SIGNING_KEY,
            clock=clock,
        )

    def teardown(self) -> None:
        super().teardown()
        self._dir.cleanup()


TestMemoryMachine = MemoryMachine.TestCase
TestMemoryMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestSqliteMachine = SqliteMachine.TestCase
TestSqliteMachine.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
