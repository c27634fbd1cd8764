"""The rule-based state machine on memory://, on SQLite files and on PostgreSQL."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import settings

from broadcast_domain import BroadcastService
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.machine import SIGNING_KEY, BroadcastMachine, run_machine
from broadcast_domain.testing.postgres import PostgresDatabases


class MemoryMachine(BroadcastMachine):
    """SPEC 2 invariants hold on memory://."""


TestMemoryMachine = MemoryMachine.TestCase
TestMemoryMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_spec_invariants_hold_on_sqlite_files(tmp_path: Path) -> None:
    """Every SPEC 2 invariant the machine checks holds on a fresh SQLite file per run."""
    serial = itertools.count()

    def open_sqlite(clock: FakeClock) -> BroadcastService:
        return BroadcastService.open(
            f"sqlite:///{tmp_path / f'machine-{next(serial)}.db'}",
            return_path="bounces@mail.example.com",
            signing_key=SIGNING_KEY,
            clock=clock,
        )

    run_machine(
        open_sqlite, settings=settings(max_examples=25, stateful_step_count=25, deadline=None)
    )
    assert next(serial) >= 1


@pytest.mark.postgres
def test_spec_invariants_hold_on_postgres(postgres_databases: PostgresDatabases) -> None:
    """Every SPEC 2 invariant and the replay equality hold on PostgreSQL, a database per run."""

    def open_postgres(clock: FakeClock) -> BroadcastService:
        return BroadcastService.open(
            postgres_databases(),
            return_path="bounces@mail.example.com",
            signing_key=SIGNING_KEY,
            clock=clock,
        )

    run_machine(
        open_postgres, settings=settings(max_examples=15, stateful_step_count=20, deadline=None)
    )
