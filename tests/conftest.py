"""Suite-wide pytest configuration: the hypothesis profiles.

``dev`` is the default (quick, for the edit-test loop), ``ci`` runs more
examples but stays bounded so the whole suite fits in a few minutes on two
cores, ``long`` is for a deliberate hunt.  The profile is chosen by
``HYPOTHESIS_PROFILE``, else ``ci`` when the ``CI`` variable is set, else ``dev``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hypothesis import HealthCheck, settings

# The PostgreSQL fixtures: one embedded server per session, a database per test.
pytest_plugins = ["conftest_postgres"]

# No deadlines anywhere: a shared two-core machine makes per-example timing
# noise, and a deadline would turn that noise into flaky failures.
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    # A fresh clone has no example database worth keeping; print the blob so a
    # failure found in CI can be replayed locally with @reproduce_failure.
    database=None,
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=5_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def hypothesis_profile(environ: Mapping[str, str]) -> str:
    """The profile name that ``environ`` asks for."""
    if name := environ.get("HYPOTHESIS_PROFILE"):
        return name
    on_ci = environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}
    return "ci" if on_ci else "dev"


settings.load_profile(hypothesis_profile(os.environ))
