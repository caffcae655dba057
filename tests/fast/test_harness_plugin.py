"""The test kit's pytest plugin as pytest loads it: the fixtures it registers live in the modules its
fixture-setup hook knows as the kit's own (no Docker)."""

from __future__ import annotations

import re
import subprocess
import sys

from slurm_dev_cluster import pytest_plugin

#: Options of every nested session here: no cache directory left in the test's tmp_path, and no hypothesis
#: plugin (no test of theirs uses it; it imports hypothesis at the end of each session, ~0.2 CPU-s).
NESTED = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")

pytest_plugins = ("pytester",)  # sessions in this process, where a fresh one is not what is under test


def test_every_kit_fixture_is_one_the_shared_lock_hook_leaves_alone(pytester):
    """``pytest_fixture_setup`` takes the shared cluster lock around a wide fixture that a cluster test
    needs, except the kit's own fixtures, which take the locks they need themselves (a lock taken twice
    could wait on itself). So every fixture the kit registers must be defined in a module of
    ``KIT_FIXTURE_MODULES``, wherever the fixtures move. ``pytest --fixtures -v`` lists each fixture under
    the module that defines it (a session in this process: the plugin as pytest loads it is under test,
    not a fresh process)."""
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    listing = pytester.runpytest_inprocess("--fixtures", "-v", "-p", "no:cacheprovider").stdout.str()
    modules: dict[str, str] = {}
    module = ""
    for line in listing.splitlines():
        heading = re.search(r" fixtures defined from (\S+) ", line)
        if heading:
            module = heading.group(1)
        elif module.startswith("slurm_dev_cluster") and re.match(r"\w+( \[\w+ scope\])? -- ", line):
            modules[line.split()[0]] = module
    assert {"slurm_container", "slurm_stack", "faults", "_cluster_access", "airgapped", "index_url"} <= set(
        modules
    ), listing
    outside = {
        name: found for name, found in modules.items() if found not in pytest_plugin.KIT_FIXTURE_MODULES
    }
    assert not outside, f"kit fixtures the hook would wrap in the shared lock: {outside}"


ALONE_AND_SHARED = """
import pytest

pytestmark = pytest.mark.integration

def test_shared_1():
    pass

@pytest.mark.slurm_defaults("production")
def test_alone_production():
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


#: Writes the order in which each process of the nested session collected the tests (``session.items``
#: after every plugin's ``pytest_collection_modifyitems``, as ``--collect-only`` lists it), so the run
#: that checks the workers also shows the order, without a second session to collect it.
COLLECTION_ORDER = """
import os


def pytest_collection_finish(session):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "controller")
    path = session.config.rootpath / f"collected-by-{worker}.txt"
    path.write_text("\\n".join(item.name for item in session.items))
"""


def test_no_cluster_tests_run_first_and_the_tests_that_take_the_cluster_alone_share_one_worker(tmp_path):
    """Under ``-n 2 --dist loadgroup`` the tests that take the cluster alone (``faults``, defaults other than
    dev) all run on one worker, so a fault never stalls the other; the tests needing no cluster are ordered
    before the cluster tests, for the other worker to run meanwhile. ``--existing-cluster`` keeps Docker
    out of it: the ``faults`` tests skip (no stack), the others pass; ``-v`` names each test's worker."""
    (tmp_path / "conftest.py").write_text(COLLECTION_ORDER)
    (tmp_path / "test_cluster.py").write_text(ALONE_AND_SHARED)
    (tmp_path / "test_plain.py").write_text(
        "def test_plain_1():\n    pass\n\ndef test_plain_2():\n    pass\n"
    )
    (tmp_path / "cluster.yaml").write_text("backend: local\n")  # never read: no test asks for a Cluster
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *NESTED,
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "-v",
            "--existing-cluster",
            "cluster.yaml",
            "test_cluster.py",
            "test_plain.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    orders = {path.name: path.read_text().splitlines() for path in tmp_path.glob("collected-by-*.txt")}
    expected = [
        "test_plain_1",
        "test_plain_2",
        "test_shared_1",
        "test_alone_production",
        "test_alone_faults",
        "test_shared_2",
        "test_shared_dev",
        "test_alone_faults_again",
    ]
    assert orders == {"collected-by-gw0.txt": expected, "collected-by-gw1.txt": expected}, run
    worker_of = {
        match.group(2): match.group(1) for match in re.finditer(r"\[(gw\d)\] \[\s*\d+%\] \w+ \S+::(\w+)", run)
    }
    assert len(worker_of) == 8, run
    alone = {name: worker for name, worker in worker_of.items() if "alone" in name}
    assert len(alone) == 3 and len(set(alone.values())) == 1, run
    assert "slurm-cluster-alone" in run  # xdist names the group in the test ids
