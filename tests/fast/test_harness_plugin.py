"""The test kit's pytest plugin as pytest loads it: the fixtures it registers live in the modules its
fixture-setup hook knows as the kit's own (no Docker)."""

from __future__ import annotations

import re
import subprocess
import sys

from slurm_dev_cluster import pytest_plugin


def test_every_kit_fixture_is_one_the_shared_lock_hook_leaves_alone(tmp_path):
    """``pytest_fixture_setup`` takes the shared cluster lock around a wide fixture that a cluster test
    needs, except the kit's own fixtures, which take the locks they need themselves (a lock taken twice
    could wait on itself). So every fixture the kit registers must be defined in a module of
    ``KIT_FIXTURE_MODULES``, wherever the fixtures move. ``pytest --fixtures -v`` lists each fixture under
    the module that defines it."""
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    listing = subprocess.run(
        [sys.executable, "-m", "pytest", "--fixtures", "-v", "-p", "no:cacheprovider", "test_nothing.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
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


def test_no_cluster_tests_run_first_and_the_tests_that_take_the_cluster_alone_share_one_worker(tmp_path):
    """Under ``-n 2 --dist loadgroup`` the tests that take the cluster alone (``faults``, defaults other than
    dev) all run on one worker, so a fault never stalls the other; the tests needing no cluster are ordered
    before the cluster tests, for the other worker to run meanwhile. ``--existing-cluster`` keeps Docker
    out of it: the ``faults`` tests skip (no stack), the others pass; ``-v`` names each test's worker."""
    (tmp_path / "test_cluster.py").write_text(ALONE_AND_SHARED)
    (tmp_path / "test_plain.py").write_text(
        "def test_plain_1():\n    pass\n\ndef test_plain_2():\n    pass\n"
    )
    (tmp_path / "cluster.yaml").write_text("backend: local\n")  # never read: no test asks for a Cluster
    argv = [
        "-p",
        "no:cacheprovider",
        "--existing-cluster",
        "cluster.yaml",
        "test_cluster.py",
        "test_plain.py",
    ]
    order = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    collected = [line.split("::")[1] for line in order.splitlines() if "::" in line]
    assert collected == [
        "test_plain_1",
        "test_plain_2",
        "test_shared_1",
        "test_alone_production",
        "test_alone_faults",
        "test_shared_2",
        "test_shared_dev",
        "test_alone_faults_again",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    worker_of = {
        match.group(2): match.group(1) for match in re.finditer(r"\[(gw\d)\] \[\s*\d+%\] \w+ \S+::(\w+)", run)
    }
    assert len(worker_of) == 8, run
    alone = {name: worker for name, worker in worker_of.items() if "alone" in name}
    assert len(alone) == 3 and len(set(alone.values())) == 1, run
    assert "slurm-cluster-alone" in run  # xdist names the group in the test ids
