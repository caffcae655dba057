"""How a session of ``-n 2 --dist loadgroup`` shares out the cluster tests, in one nested pytest session
(each costs two interpreters and their workers' start-up, ~1.5 CPU-seconds): which worker runs each test,
in what order each process collected them, and which stack each test used. Under ``--dist loadgroup`` the
tests that take the cluster alone form two groups, the fault tests and the tests on production defaults;
each worker starts with one and runs it, then whatever else it gets, on a stack of its own
(``<project>-alone``, ``<project>-alone-production``). The nested conftest stands in for Docker (the stack is never
started: ``Harness._start`` only marks it up) and records, per test, its worker, lane and stack, and the
lane that worker would choose with ``SLURM_SDK_ALONE_STACK=0``. A whole nested ``-n 2`` session takes seconds,
which is why this lives in the slow tier."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

#: Options of the nested session: no cache directory left in the test's tmp_path, and no hypothesis plugin
#: (no test of theirs uses it; it imports hypothesis at the end of each session, ~0.2 CPU-s).
pytestmark = pytest.mark.slow

NESTED = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")

ALONE_AND_SHARED = """
import pytest

pytestmark = pytest.mark.integration

def test_shared_1():
    pass

@pytest.mark.slurm_defaults("production")
def test_alone_production():
    pass

@pytest.mark.slurm_defaults("production")
def test_alone_production_again():
    pass

def test_alone_faults(faults):
    pass

def test_shared_2():
    pass

@pytest.mark.slurm_defaults("dev")
def test_shared_dev():
    pass

def test_alone_faults_again(faults):
    pass
"""

PLAIN = "def test_plain_1():\n    pass\n\ndef test_plain_2():\n    pass\n"
TEST_FILES = {"test_cluster.py": ALONE_AND_SHARED, "test_plain.py": PLAIN}

#: Stands in for Docker, and records what each process did: the order in which it collected the tests
#: (``session.items`` after every plugin's ``pytest_collection_modifyitems``, as ``--collect-only`` lists
#: it), and per cluster test its worker, lane and stack, and the lane ``_lane_for`` gives it in that same
#: worker with ``SLURM_SDK_ALONE_STACK=0`` (the one switch between the two ways of running a session).
NO_DOCKER = """
import os

import pytest

from slurm_dev_cluster.plugin_harness import ALONE_STACK_ENV, Harness, harness_of


def _marked_up(self):
    self.connection = "up"


Harness._start = _marked_up


def pytest_collection_finish(session):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "controller")
    path = session.config.rootpath / f"collected-by-{worker}.txt"
    path.write_text("\\n".join(item.name for item in session.items))


class NoFaults:
    def slurm_defaults(self, name):
        pass


@pytest.fixture
def faults():
    return NoFaults()


@pytest.fixture(autouse=True)
def record(request, monkeypatch):
    yield
    if "plain" in request.node.name:
        return
    harness = harness_of(request.config)
    monkeypatch.setenv(ALONE_STACK_ENV, "0")
    lane_on_one_stack = harness._lane_for(request.node)
    with open(os.environ["LANES_OUT"], "a") as out:
        out.write(
            f"{request.node.name} {os.environ.get('PYTEST_XDIST_WORKER')} {harness.lane} "
            f"{harness.stack.project} {lane_on_one_stack}\\n"
        )
"""


def test_under_loadgroup_each_group_that_takes_the_cluster_alone_gets_a_worker_and_a_stack_of_its_own(
    tmp_path,
):
    """The fault tests run on one worker and the tests on production defaults on the other, so neither
    stalls the other, each group on a stack of its own (unless ``SLURM_SDK_ALONE_STACK=0``); a worker then
    runs what else it gets on its group's stack. The tests needing no cluster are ordered before the
    cluster tests. ``-v`` names each test's worker."""
    (tmp_path / "conftest.py").write_text(NO_DOCKER)
    for name, text in TEST_FILES.items():
        (tmp_path / name).write_text(text)
    out = tmp_path / "lanes.txt"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "SLURM_SDK_"))}
    environ |= {"LANES_OUT": str(out), "SLURM_SDK_PROJECT": "lanes", "SLURM_SDK_STATE_HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *NESTED, "-n", "2", "--dist", "loadgroup", "-v", *TEST_FILES],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    # Each process collected the tests in the same order: the ones needing no cluster first.
    orders = {path.name: path.read_text().splitlines() for path in tmp_path.glob("collected-by-*.txt")}
    expected = [
        "test_plain_1",
        "test_plain_2",
        "test_shared_1",
        "test_alone_production",
        "test_alone_production_again",
        "test_alone_faults",
        "test_shared_2",
        "test_shared_dev",
        "test_alone_faults_again",
    ]
    assert orders == {"collected-by-gw0.txt": expected, "collected-by-gw1.txt": expected}, run.stdout

    # Each group ran on one worker, as an xdist group, and the two groups on different workers.
    worker_of = {
        match.group(2): match.group(1)
        for match in re.finditer(r"\[(gw\d)\] \[\s*\d+%\] \w+ \S+::(\w+)", run.stdout)
    }
    assert len(worker_of) == 9, run.stdout
    faults_by = {worker for name, worker in worker_of.items() if "alone_faults" in name}
    production_by = {worker for name, worker in worker_of.items() if "alone_production" in name}
    assert len(faults_by) == 1 and len(production_by) == 1 and faults_by != production_by, run.stdout
    # xdist names the group in the test ids
    assert "@slurm-cluster-alone " in run.stdout and "@slurm-cluster-alone-production " in run.stdout

    rows = [line.split() for line in out.read_text().splitlines()]
    lanes = {name: (worker, lane, project) for name, worker, lane, project, _ in rows}
    assert set(lanes) == {name for name in expected if "plain" not in name}, lanes
    for name, (worker, _, _) in lanes.items():
        assert worker == worker_of[name], (name, lanes, run.stdout)
    stack_of_group = {
        "alone_faults": ("slurm-cluster-alone", "lanes-alone"),
        "alone_production": ("slurm-cluster-alone-production", "lanes-alone-production"),
    }
    stack_of_worker = {}
    for name, (worker, lane, project) in lanes.items():
        for group, stack in stack_of_group.items():
            if group in name:
                assert (lane, project) == stack, (name, lanes)
                stack_of_worker[worker] = stack
    # Each worker runs what it gets after its group on its group's stack: the session's is never started.
    for name, (worker, lane, project) in lanes.items():
        assert (lane, project) == stack_of_worker[worker], (name, lanes)

    # SLURM_SDK_ALONE_STACK=0: the same workers would run every test on the session's stack, the alone
    # ones holding it alone.
    assert {lane_on_one_stack for *_, lane_on_one_stack in rows} == {"shared"}, rows
