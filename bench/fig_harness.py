"""Harness figures: reuse overhead of a new session, edit -> run latency per packaging, test tier wall time."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid

from bench.env import BENCH_PROJECT, REPO_MOUNT, REPO_ROOT, RESULTS_DIR, BenchEnv, say
from bench.figure import Figure, Target
from bench.stats import interleave, ratio

# What a new process pays to find and reuse the running stack: interpreter start, imports, the setup
# lock and Stack.ensure_up (preflight, compose ps, key copy and, for a session not seen before, a probe).
_REUSE_SNIPPET = """
import json, sys, time
from pathlib import Path
from slurm_dev_cluster.locks import Coordinator
from slurm_dev_cluster.stack import Stack
stack = Stack(Path(sys.argv[1]), project=sys.argv[2], say=lambda message: None)
with Coordinator(stack.state_dir).exclusive():
    action = stack.ensure_up(sys.argv[3]).action
print(json.dumps({"action": action}))
"""


def _reuse_once(session: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _REUSE_SNIPPET, str(REPO_ROOT), BENCH_PROJECT, session],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"reusing the stack failed:\n{result.stderr[-3000:]}")
    action = json.loads(result.stdout.strip().splitlines()[-1])["action"]
    if action != "reused":
        raise RuntimeError(f"expected the running stack to be reused, ensure_up said {action!r}")
    return seconds


def _same_session_twice() -> float:
    """The stack remembers only the last session that probed it: prime it, then time the repeat."""
    session = f"bench-{uuid.uuid4().hex[:8]}"
    _reuse_once(session)
    return _reuse_once(session)


def harness_overhead(env: BenchEnv, repeats: int) -> Figure:
    env.ensure_up()
    series = interleave(
        repeats,
        {
            "new session (probe runs)": lambda: _reuse_once(f"bench-{uuid.uuid4().hex[:8]}"),
            "same session again (probe skipped)": _same_session_twice,
        },
        say=say,
    )
    return Figure(
        "harness",
        "Harness overhead: a fresh process reusing the running stack",
        "s",
        series,
        target=Target("new session (probe runs)", "<=", 1.0, "≤ 1 s"),
        notes=[
            "wall time of `python -c` that imports the harness, takes the setup lock and runs "
            "Stack.ensure_up() -> 'reused'",
            "a session the stack has not seen yet (every new pytest run) re-checks the stack with an SSH "
            "login and `scontrol ping` (the full probe job ran when the stack was started)",
        ],
    )


# ---- edit -> run ------------------------------------------------------------------------------------

EDIT_PROJECT = RESULTS_DIR / "edit_project"  # git-ignored, inside the repo so the nodes see it live
EDIT_MODULE = "bench_edit_probe"
_PYPROJECT = f"""[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "bench-edit-probe"
version = "0.0.1"

[tool.setuptools]
packages = ["{EDIT_MODULE}"]
"""


def _write_edit(token: str) -> None:
    """The "edit": a new constant in a module the job returns."""
    package = EDIT_PROJECT / EDIT_MODULE
    package.mkdir(parents=True, exist_ok=True)
    (EDIT_PROJECT / "pyproject.toml").write_text(_PYPROJECT)
    (package / "__init__.py").write_text(f"VALUE = {token!r}\n\n\ndef value():\n    return VALUE\n")


def _edit_module():
    _write_edit("initial")
    if str(EDIT_PROJECT) not in sys.path:
        sys.path.insert(0, str(EDIT_PROJECT))
    import importlib

    return importlib.import_module(EDIT_MODULE)


def edit_to_run(env: BenchEnv, repeats: int) -> Figure:
    module = _edit_module()
    none_cluster = env.cluster(
        {"type": "none", "pythonpath": [f"{REPO_MOUNT}/{EDIT_PROJECT.relative_to(REPO_ROOT)}"]}
    )

    def run(packaging: str) -> float:
        token = f"{packaging}-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        _write_edit(token)
        # A wheel is built once per Cluster (prepare), so a new edit means a new Cluster.
        cluster = (
            none_cluster
            if packaging == "none"
            else env.cluster({"type": "wheel", "project_dir": str(EDIT_PROJECT)})
        )
        value = cluster.submit(module.value).result(timeout=1800)
        seconds = time.perf_counter() - started
        if value != token:
            raise RuntimeError(f"packaging {packaging}: the job returned {value!r}, not the edited {token!r}")
        return seconds

    series = interleave(
        repeats,
        {"none (shared path)": lambda: run("none"), "wheel (build + upload + install)": lambda: run("wheel")},
        say=say,
    )
    none_series, wheel_series = series.values()
    return Figure(
        "edit",
        "Edit -> new code runs on the cluster: packaging none vs wheel",
        "s",
        series,
        ratios={"wheel / none": ratio(wheel_series, none_series)},
        target=Target("wheel (build + upload + install)", "<=", 2.0, "wheel ≤ 2 s; none the fastest"),
        notes=[
            "from writing the edited module to the job's result carrying the new value, for a one-module "
            "project, with a new Cluster per edit; wheel ships the SDK's own wheel too (include_sdk), built "
            "once per SDK source and reused, into a venv that an edit does not touch",
            "an edit under wheel: the last wheel patched with the edited module (the backend, through "
            "pyproject_hooks, builds only when an edit is not one a patch can express), the interpreter "
            "probed, one check of venv and layer, the layer unpacked here and written in one command; then "
            "the submission",
        ],
    )


# ---- test tiers -------------------------------------------------------------------------------------


def _pytest_once(workers: int, outcomes: dict[str, str]) -> float:
    env = os.environ | {"SLURM_SDK_PROJECT": BENCH_PROJECT, "SLURM_SDK_KEEP_CLUSTER": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/integration",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        str(workers),
    ]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    outcomes[f"-n {workers}"] = summary
    if result.returncode not in (0, 1):  # 1 = some tests failed: still a timing, reported with the outcome
        raise RuntimeError(
            f"pytest -n {workers} could not run (exit {result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return seconds


def tiers(env: BenchEnv, repeats: int) -> Figure:
    env.ensure_up()  # started outside the pytest sessions, so they reuse it and leave it up
    outcomes: dict[str, str] = {}
    series = interleave(
        repeats,
        {"-n 0": lambda: _pytest_once(0, outcomes), "-n 2": lambda: _pytest_once(2, outcomes)},
        warmup=False,
        say=say,
    )
    return Figure(
        "tiers",
        "Integration tier wall time (pytest tests/integration)",
        "s",
        series,
        ratios={"-n 0 / -n 2": ratio(series["-n 0"], series["-n 2"])},
        details={"last outcome": outcomes, "tests": _count(outcomes)},
        notes=[
            "on the bench stack, already running (SLURM_SDK_PROJECT=slurmsdk-bench); includes pytest "
            "start-up and the harness's reuse of the stack"
        ],
    )


def _count(outcomes: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for summary in outcomes.values():
        for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary):
            counts[word] = max(counts.get(word, 0), int(number))
    return counts
