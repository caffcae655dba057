"""The import contracts (``[tool.importlinter]`` in pyproject.toml, run by ``lint-imports`` in .ci/lint) hold
for this tree, and break, naming the contract, when a forbidden import is added to a copy of it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import slurm

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
#: The contracts that count type-only imports too.
TYPED = ".ci/typed-imports.toml"

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (dev extra)"
)


#: A process that imports import-linter once (its CLI's imports are most of a run's CPU: rich, click, grimp)
#: and runs each lint in a fork of itself: the fork starts as a fresh ``lint-imports`` process would, having
#: imported none of the SDK, so the SDK it finds is the one first on its path, the tree's. Requests are JSON
#: lines (working directory, SDK source directory, arguments, output files); each answer is the exit code.
LINT_SERVER = """
import json, os, signal, sys, traceback

from importlinter.cli import lint_imports_command

for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        signal.alarm(120)  # a wedged lint ends, as under subprocess.run(timeout=120)
        os.chdir(request["cwd"])
        sys.path.insert(0, request["src"])  # as PYTHONPATH would: before the installed SDK
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        try:
            lint_imports_command.main(request["args"], prog_name="lint-imports")
            code = 0
        except SystemExit as exited:
            code = exited.code if isinstance(exited.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class LintImports:
    """``lint-imports --no-cache [config]`` over the SDK under a tree's src, with the contracts of the
    tree's pyproject.toml (or of the ``config`` file named), each run a fork of one ``LINT_SERVER``."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.runs = 0
        self.server = subprocess.Popen(
            [sys.executable, "-c", LINT_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=scratch,
        )

    def __call__(self, tree: Path, *config: str) -> subprocess.CompletedProcess[str]:
        self.runs += 1
        out, err = self.scratch / f"{self.runs}.out", self.scratch / f"{self.runs}.err"
        request = {
            "cwd": str(tree),
            "src": str(tree / "src"),
            "args": ["--no-cache", *config],
            "stdout": str(out),
            "stderr": str(err),
        }
        assert self.server.stdin is not None and self.server.stdout is not None
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        answer = self.server.stdout.readline()
        assert answer, "the lint server ended"
        return subprocess.CompletedProcess(
            ["lint-imports", *request["args"]], int(answer), out.read_text(), err.read_text()
        )

    def close(self) -> None:
        assert self.server.stdin is not None
        self.server.stdin.close()
        self.server.wait(timeout=60)


@pytest.fixture(scope="module")
def lint_imports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LintImports]:
    linter = LintImports(tmp_path_factory.mktemp("lint-imports"))
    yield linter
    linter.close()


def _copy_tree(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / TYPED, tmp_path / TYPED)
    shutil.copytree(
        ROOT / "src" / "slurm", tmp_path / "src" / "slurm", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def test_the_tree_keeps_every_contract(lint_imports: LintImports) -> None:
    for config in [(), (TYPED,)]:
        run = lint_imports(ROOT, *config)
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
    lint_imports: LintImports, tmp_path: Path, module: str, added: str, contract: str
) -> None:
    tree = _copy_tree(tmp_path)
    path = tree / "src" / "slurm" / module
    path.write_text(path.read_text() + f"\n{added}  # the violation under test\n")
    run = lint_imports(tree)
    assert run.returncode != 0, run.stdout
    broken = run.stdout.split("Broken contracts", 1)[-1]
    assert contract in " ".join(broken.split()), (
        run.stdout
    )  # lint-imports wraps long names: compare unwrapped
    assert added.split()[-1].removeprefix("slurm.") in run.stdout


def test_a_jobs_runner_loads_the_node_side_and_nothing_heavy() -> None:
    """What the contract means at run time: importing the runner (every array task does) loads the node
    package, plus what the parent package ``slurm`` loads (the ``task`` decorator), and
    none of the submitting side or of the slow standard modules (not even the C pickler: a plain task's
    runner never loads it)."""
    probe = "import sys; before = set(sys.modules); import slurm.node.runner; print(' '.join(set(sys.modules) - before))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
        ).stdout.split()
    )
    ours = {name for name in loaded if name.split(".")[0] == "slurm"}
    assert {name for name in ours if not name.startswith("slurm.node")} == {"slurm", "slurm.task"}
    assert {"slurm.node.runner", "slurm.node.payload", "slurm.node.outcome", "slurm.node.layout"} <= ours
    assert not loaded & {
        "_pickle",  # only a task that is not plain needs it (slurm.node.plain); on 3.13 it loads functools
        "functools",
        "collections",
        "typing",
        "re",
        "enum",
        "dataclasses",
        "subprocess",
        "cloudpickle",
        "socket",
        "calendar",
    }


def test_the_package_exports_every_public_error_of_slurm_errors_on_first_use() -> None:
    """``slurm`` names its errors without importing ``slurm.errors`` (a job's runner needs none of them), so
    its list is a second one: it must stay the errors module's own, less the node side's internal ones."""
    import slurm.errors

    lazy = {name for name, module in slurm._EXPORTS.items() if module == "slurm.errors"}
    errors = {name for name in slurm.errors.__all__ if isinstance(getattr(slurm.errors, name), type)}
    assert lazy == errors - {"RankTerminated", "RemoteTraceback"}
    assert all(getattr(slurm, name) is getattr(slurm.errors, name) for name in lazy)


def test_the_local_launcher_loads_no_checkpoint_runtime_and_no_typing() -> None:
    """The local backend starts one launcher process per submission (hundreds in the fast tier): it loads the
    standard library's light modules and the SDK's local-state modules, not the checkpoint runtime
    (dataclasses, inspect) for the one variable it sets, nor typing for annotations."""
    probe = (
        "import sys; before = set(sys.modules); import slurm.backends.local_launcher; "
        "print(' '.join(set(sys.modules) - before))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-S", "-c", probe],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**os.environ, "PYTHONPATH": str(Path(slurm.__file__).parent.parent)},
        ).stdout.split()
    )
    assert "slurm.backends.local_launcher" in loaded and "slurm.node.slurm_commands" in loaded
    assert not loaded & {"slurm.node.checkpoint", "dataclasses", "inspect", "typing", "slurm.backends.base"}


#: The names (as lint-imports prints them) of the two contracts in .ci/typed-imports.toml.
LAYERED = "Cluster above submission, Job above its state machine, the waiting engine below them"
ACYCLIC = "No import cycle in the SDK, type-only imports counted"


#: Type-only imports that close a circle: (module, what it imports, the typed contracts each one breaks).
TYPE_ONLY_CIRCLES = [
    ("waiting.py", "slurm.job", [LAYERED, ACYCLIC]),
    ("watcher.py", "slurm.cluster", [LAYERED, ACYCLIC]),
    ("job.py", "slurm.callbacks", [LAYERED, ACYCLIC]),  # Callback names Job
    ("job.py", "slurm.cluster", [LAYERED, ACYCLIC]),  # the circle Job <-> Cluster once was
    ("dataflow.py", "slurm.task", [LAYERED, ACYCLIC]),
    ("backends/base.py", "slurm.backends.slurm", [ACYCLIC]),  # in no layer: only the cycle is caught
]


def _add_type_only_import(tree: Path, module: str, imported: str) -> None:
    path = tree / "src" / "slurm" / module
    added = f"\nif TYPE_CHECKING:  # the violation under test\n    import {imported}\n"
    text = path.read_text()
    if "from typing import TYPE_CHECKING" not in text:
        added = "\nfrom typing import TYPE_CHECKING" + added
    path.write_text(text + added)


def test_the_main_contracts_leave_type_only_imports_out(lint_imports: LintImports, tmp_path: Path) -> None:
    """Every type-only import below at once, and the main contracts still hold: they leave ``if
    TYPE_CHECKING:`` imports out. One run shows it for each of them alone too: every contract here
    (forbidden, layers, acyclic) is broken by some chain of imports, so adding imports never mends one."""
    tree = _copy_tree(tmp_path)
    for module, imported, _ in TYPE_ONLY_CIRCLES:
        _add_type_only_import(tree, module, imported)
    run = lint_imports(tree)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize(("module", "imported", "contracts"), TYPE_ONLY_CIRCLES)
def test_a_type_only_import_that_closes_a_circle_breaks_its_contract(
    lint_imports: LintImports, tmp_path: Path, module: str, imported: str, contracts: list[str]
) -> None:
    """The main contracts leave ``if TYPE_CHECKING:`` imports out; these count them: the waiting engine
    names neither Job nor Cluster, even for a type checker, Job names neither Cluster nor Callback, and no
    module imports one that imports it back."""
    tree = _copy_tree(tmp_path)
    _add_type_only_import(tree, module, imported)
    run = lint_imports(tree, TYPED)
    assert run.returncode != 0, run.stdout
    broken = " ".join(run.stdout.split("Broken contracts", 1)[-1].split())
    assert [name for name in (LAYERED, ACYCLIC) if name in broken] == contracts, run.stdout
    if LAYERED in contracts:
        assert f"{module.removesuffix('.py')} is not allowed to import {imported}" in broken, run.stdout
