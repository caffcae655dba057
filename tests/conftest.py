"""Shared pytest setup: the hypothesis profiles. The dev-cluster plugin (markers, fixtures, stack lifecycle)
is not named here: this repository's tests get it exactly as any project does, from the installed
slurm-dev-cluster distribution (its pytest11 entry point).

Bytecode: under ``PYTHONDONTWRITEBYTECODE`` the run's processes share a private bytecode cache outside the
tree instead of compiling every module again (tests/bytecode.py).

Hypothesis profiles, chosen here before any test module is imported (so every ``@settings`` builds on it):

- ``ci``: no test fails by chance. ``derandomize=True`` draws the same examples on every run (from each
  test's own seed), ``database=None`` replays nothing from earlier runs, ``deadline=None`` and no
  ``too_slow`` health check so a busy runner's timing never fails a test, and ``print_blob=True`` so a
  failure prints the ``@reproduce_failure`` line to replay it. Explicit ``@example``s always run.
- ``dev``: random examples on every run (new inputs keep being tried), and the example database in
  ``.hypothesis/`` replays the ones that failed before first; no deadline either (the fast tier runs
  in parallel with subprocess-heavy tests).

``HYPOTHESIS_PROFILE=ci|dev`` picks one; otherwise ``ci`` when the ``CI`` environment variable is true
(``.ci/run`` and the GitHub workflows set ``CI=true``), else ``dev``. A test's ``@settings(...)`` may set
``max_examples``, ``deadline`` or health checks, never ``derandomize`` or ``database``: collection fails
when one does, since that would bring chance back into CI.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.bytecode import share_bytecode

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)  # randomized, default example database (.hypothesis/)


def _profile() -> str:
    chosen = os.environ.get("HYPOTHESIS_PROFILE")
    if chosen:
        return chosen
    return "ci" if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"} else "dev"


settings.load_profile(_profile())


def pytest_configure(config: pytest.Config) -> None:
    # Before xdist starts its workers: they, and every process the tests start, inherit the environment.
    share_bytecode()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse hypothesis tests whose ``@settings`` override the profile's randomness or database."""
    profile = settings.default
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)  # set by @given/@settings
        if own is None:
            continue
        for name in ("derandomize", "database"):
            if getattr(own, name) != getattr(profile, name):
                raise pytest.UsageError(
                    f"{item.nodeid}: @settings sets {name}; leave it to the hypothesis profile "
                    "(tests/conftest.py) so CI runs stay deterministic"
                )
