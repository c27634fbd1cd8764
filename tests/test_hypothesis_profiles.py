"""The hypothesis profiles that tests/conftest.py registers and selects."""

from __future__ import annotations

import os

from hypothesis import settings


def _expected_profile() -> str:
    if name := os.environ.get("HYPOTHESIS_PROFILE"):
        return name
    on_ci = os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}
    return "ci" if on_ci else "dev"


def test_the_profile_in_force_is_the_one_the_environment_names() -> None:
    """HYPOTHESIS_PROFILE wins, else CI selects ``ci``, else ``dev`` is in force."""
    wanted = settings.get_profile(_expected_profile())
    active = settings()
    assert (active.max_examples, active.deadline, active.database) == (
        wanted.max_examples,
        wanted.deadline,
        wanted.database,
    )


def test_profiles_grow_from_dev_to_long_and_never_time_examples() -> None:
    """dev < ci < long in examples, ci stays bounded, and no profile has a deadline."""
    dev, ci, long = (settings.get_profile(n) for n in ("dev", "ci", "long"))
    assert dev.max_examples < ci.max_examples < long.max_examples
    assert ci.max_examples <= 500
    assert dev.deadline is ci.deadline is long.deadline is None
