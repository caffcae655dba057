"""The test kit's pytest plugin as pytest loads it: the fixtures it registers live in the modules its
fixture-setup hook knows as the kit's own (no Docker). How a ``-n 2`` session shares out the cluster tests
is in test_harness_lanes.py."""

from __future__ import annotations

import re

from slurm_dev_cluster import plugin_harness, pytest_plugin
from slurm_dev_cluster.naming import alone_project

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


def test_each_test_that_takes_the_cluster_alone_is_grouped_with_its_defaults(pytester):
    """A fault test on the dev defaults joins the fault tests' group, a test asking for other Slurm defaults
    the group of those defaults, whose stack runs them (``alone_groups`` maps each group to its defaults, and
    each gets a project of its own); a cluster test that asks for neither, a test that needs no cluster and
    an unknown name get no group (the access fixture fails the last one, naming the choices)."""
    items = pytester.getitems(
        """
import pytest

@pytest.fixture
def faults():
    pass

def test_off_cluster():
    pass

@pytest.mark.integration
def test_shared():
    pass

@pytest.mark.integration
def test_fault(faults):
    pass

@pytest.mark.integration
@pytest.mark.slurm_defaults("dev")
def test_dev_named():
    pass

@pytest.mark.integration
@pytest.mark.slurm_defaults("production")
def test_production():
    pass

@pytest.mark.integration
@pytest.mark.slurm_defaults("stock")
def test_unknown():
    pass
"""
    )
    groups = {item.name: plugin_harness.alone_group(item) for item in items}
    assert groups == {
        "test_off_cluster": None,
        "test_shared": None,
        "test_fault": "slurm-cluster-alone",
        "test_dev_named": None,
        "test_production": "slurm-cluster-alone-production",
        "test_unknown": None,
    }
    assert plugin_harness.alone_groups() == {
        "slurm-cluster-alone": "dev",
        "slurm-cluster-alone-production": "production",
    }
    projects = {alone_project("p", defaults) for defaults in plugin_harness.alone_groups().values()}
    assert projects == {"p-alone", "p-alone-production"}
