"""The rule-based state machine, on the in-memory store, on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from broadcast_domain import BroadcastService
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.machine import SIGNING_KEY, BroadcastMachine
from broadcast_domain.testing.postgres import PostgresDatabases


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


class PostgresMachine(BroadcastMachine):
    """SPEC 2 invariants hold on PostgreSQL, each run on a database of its own."""

    databases: PostgresDatabases

    def make_service(self, clock: FakeClock) -> BroadcastService:
        return BroadcastService.open(
            self.databases(),
            return_path="bounces@mail.example.com",
            signing_key=SIGNING_KEY,
            clock=clock,
        )


@pytest.mark.postgres
def test_postgres_machine(postgres_databases: PostgresDatabases) -> None:
    """Every SPEC 2 invariant and the replay equality hold on the PostgreSQL store."""

    class Machine(PostgresMachine):
        databases = postgres_databases

    run_state_machine_as_test(
        Machine, settings=settings(max_examples=15, stateful_step_count=20, deadline=None)
    )


TestMemoryMachine = MemoryMachine.TestCase
TestMemoryMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestSqliteMachine = SqliteMachine.TestCase
TestSqliteMachine.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
