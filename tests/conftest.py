"""Shared pytest configuration: the PostgreSQL fixtures live in conftest_postgres."""

from __future__ import annotations

pytest_plugins = ["conftest_postgres"]
