"""The import contracts (``[tool.importlinter]`` in pyproject.toml, run by ``lint-imports`` in .ci/lint) hold
for this tree, and break, naming the contract, when a forbidden import is added to a copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (dev extra)"
)


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over the SDK under ``tree``/src, with the contracts of ``tree``/pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}  # before the installed SDK on sys.path
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


def _copy_tree(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "src" / "slurm", tmp_path / "src" / "slurm", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def test_the_tree_keeps_every_contract() -> None:
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "added", "contract"),
    [
        (
            "node/layout.py",
            "import slurm.cluster",
            "The node side (slurm.node) imports only the standard library",
        ),
        ("node/atomic.py", "import yaml", "The node side (slurm.node) imports only the standard library"),
        ("transports/host.py", "import slurm.backends.slurm", "Transports do not import backends"),
        ("records.py", "from slurm import cluster", "nothing below slurm.cluster"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, added: str, contract: str
) -> None:
    tree = _copy_tree(tmp_path)
    path = tree / "src" / "slurm" / module
    path.write_text(path.read_text() + f"\n{added}  # the violation under test\n")
    run = _lint_imports(tree)
    assert run.returncode != 0, run.stdout
    broken = run.stdout.split("Broken contracts", 1)[-1]
    assert contract in " ".join(broken.split()), (
        run.stdout
    )  # lint-imports wraps long names: compare unwrapped
    assert added.split()[-1].removeprefix("slurm.") in run.stdout


def test_a_jobs_runner_loads_the_node_side_and_nothing_heavy() -> None:
    """What the contract means at run time: importing the runner (every array task does) loads the node
    package, plus what the parent package ``slurm`` loads (the ``task`` decorator and the errors), and
    none of the submitting side or of the slow standard modules."""
    probe = "import sys; before = set(sys.modules); import slurm.node.runner; print(' '.join(set(sys.modules) - before))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
        ).stdout.split()
    )
    ours = {name for name in loaded if name.split(".")[0] == "slurm"}
    assert {name for name in ours if not name.startswith("slurm.node")} == {
        "slurm",
        "slurm.task",
        "slurm.errors",
    }
    assert {"slurm.node.runner", "slurm.node.payload", "slurm.node.outcome", "slurm.node.layout"} <= ours
    assert not loaded & {
        "typing",
        "re",
        "enum",
        "dataclasses",
        "subprocess",
        "cloudpickle",
        "socket",
        "calendar",
    }
