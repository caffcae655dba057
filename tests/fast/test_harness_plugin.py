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
