"""The two distributions' metadata, as installed here: the SDK registers no pytest plugin, and the kit's
entry points import nothing outside the kit's declared dependencies (and theirs). The same is proven from
built wheels in fresh venvs by .ci/outsider."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_sdk_registers_no_pytest_plugin():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "pytest11" not in declared.get("entry-points", {})
    installed = metadata.distribution("slurm-sdk").entry_points
    assert [e for e in installed if e.group == "pytest11"] == []


def test_the_kit_owns_the_pytest_plugin_and_the_cli():
    entry_points = metadata.distribution("slurm-dev-cluster").entry_points
    assert {(e.group, e.value) for e in entry_points} >= {
        ("pytest11", "slurm_dev_cluster.pytest_plugin"),
        ("console_scripts", "slurm_dev_cluster.__main__:main"),
    }


def test_the_kit_pins_the_sdk_release_it_ships_the_definition_of():
    sdk = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    kit = tomllib.loads((REPO / "harness" / "pyproject.toml").read_text())["project"]
    assert f"slurm-sdk=={sdk['version']}" in kit["dependencies"]
    assert kit["version"] == sdk["version"]


def declared_closure(distribution: str) -> set[str]:
    """``distribution`` and every distribution its requirements pull in, recursively (no extras)."""
    seen: set[str] = set()
    todo = [distribution]
    while todo:
        name = normalise(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_the_kit_entry_points_import_only_declared_dependencies():
    code = (
        "import json, sys\n"
        "import slurm_dev_cluster.pytest_plugin, slurm_dev_cluster.__main__\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = json.loads(run.stdout)
    allowed = declared_closure("slurm-dev-cluster")
    own = {"slurm_dev_cluster", "cython_runtime"}  # the kit itself (editable: unmapped); Cython's runtime
    owners = metadata.packages_distributions()
    undeclared = {
        module: owners.get(module)
        for module in modules
        if module not in sys.stdlib_module_names
        and not module.startswith("_")
        and module not in own
        and not {normalise(d) for d in owners.get(module, [])} & allowed
    }
    assert undeclared == {}, f"imported but not declared by slurm-dev-cluster: {undeclared}"
