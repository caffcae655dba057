"""Which stack each test process of a session uses: under ``-n 2 --dist loadgroup`` the worker given the
tests that take the cluster alone runs them on a second stack, ``<project>-alone``; the other worker stays
on the session's stack. A nested pytest run whose conftest stands in for Docker (the stack is never
started: ``Harness._start`` only marks it up) records, per test, its worker, lane and stack."""

from __future__ import annotations

import os
import subprocess
import sys

from .test_harness_plugin import ALONE_AND_SHARED, NESTED

NO_DOCKER = """
import os

import pytest

from slurm_dev_cluster.plugin_harness import Harness, harness_of


def _marked_up(self):
    self.connection = "up"


Harness._start = _marked_up


class NoFaults:
    def slurm_defaults(self, name):
        pass


@pytest.fixture
def faults():
    return NoFaults()


@pytest.fixture(autouse=True)
def record(request):
    yield
    harness = harness_of(request.config)
    with open(os.environ["LANES_OUT"], "a") as out:
        out.write(f"{request.node.name} {os.environ.get('PYTEST_XDIST_WORKER')} {harness.lane} {harness.stack.project}\\n")
"""


def _lanes(tmp_path, *argv: str, **env: str) -> dict[str, tuple[str, str, str]]:
    (tmp_path / "conftest.py").write_text(NO_DOCKER)
    (tmp_path / "test_cluster.py").write_text(ALONE_AND_SHARED)
    out = tmp_path / "lanes.txt"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "SLURM_SDK_"))}
    environ |= {"LANES_OUT": str(out), "SLURM_SDK_PROJECT": "lanes", "SLURM_SDK_STATE_HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *NESTED, "-q", *argv, "test_cluster.py"],
        cwd=tmp_path,
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = [line.split() for line in out.read_text().splitlines()]
    return {name: (worker, lane, project) for name, worker, lane, project in rows}


def test_under_loadgroup_the_tests_that_take_the_cluster_alone_get_a_stack_of_their_own(tmp_path):
    lanes = _lanes(tmp_path, "-n", "2", "--dist", "loadgroup")
    alone = {name: row for name, row in lanes.items() if "alone" in name}
    shared = {name: row for name, row in lanes.items() if "shared" in name}
    assert len(alone) == 3 and len(shared) == 3, lanes
    assert {(lane, project) for _, lane, project in alone.values()} == {("alone", "lanes-alone")}, lanes
    # The other worker, which never took the cluster alone, runs its tests on the session's stack; the
    # worker of the group runs what it gets afterwards on its own stack.
    alone_worker = {worker for worker, _, _ in alone.values()}
    for name, (worker, lane, project) in shared.items():
        expected = ("alone", "lanes-alone") if worker in alone_worker else ("shared", "lanes")
        assert (lane, project) == expected, (name, lanes)
    assert any(worker not in alone_worker for worker, _, _ in shared.values()), lanes


def test_one_stack_when_told_so(tmp_path):
    """``SLURM_SDK_ALONE_STACK=0``: every test on the session's stack, the alone ones holding it alone."""
    lanes = _lanes(tmp_path, "-n", "2", "--dist", "loadgroup", SLURM_SDK_ALONE_STACK="0")
    assert {(lane, project) for _, lane, project in lanes.values()} == {("shared", "lanes")}, lanes
