"""`pytest -n 4` on a fresh stack: one process runs compose up, the others wait and reuse it; a crashed
worker stops nothing; the stack goes down once, after the last worker is done.

The nested run gets its own project name and state directory, so it starts a *fresh* stack with four
workers racing for it (reusing this session's stack would only show that nobody needed to start one).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from slurm_dev_cluster.locks import EventLog
from slurm_dev_cluster.stack import REPO_ROOT, Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TARGET = Path(__file__).with_name("xdist_target.py")


def _nested_env(project: str, state_home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTEST_") and k not in ("SLURM_SDK_KEEP_CLUSTER", "SLURM_SDK_SSH_PORT")
    }
    env.update(SLURM_SDK_PROJECT=project, SLURM_SDK_STATE_HOME=str(state_home))
    return env


def test_pytest_n4_runs_compose_up_once_and_tears_down_after_the_last_worker(slurm_container, tmp_path):
    project = f"slurmsdk-xdist-{uuid.uuid4().hex[:8]}"
    state_home = tmp_path / "state"
    stack = Stack(REPO_ROOT, project=project, state_dir=state_home / project, say=lambda _: None)
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-n",
                "4",
                "-p",
                "no:cacheprovider",
                "-o",
                "addopts=",
                "--max-worker-restart",
                "2",
                "-q",
                str(TARGET),
            ],
            cwd=REPO_ROOT,
            env=_nested_env(project, state_home),
            capture_output=True,
            text=True,
            timeout=900,
        )
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
        assert re.search(r"\b1 failed, 7 passed\b", summary), run.stdout[-3000:] + run.stderr[-3000:]
        assert "crashed" in run.stdout

        events = EventLog(state_home / project / "events.log").events()
        names = [e["event"] for e in events]
        assert names.count("compose-up") == 1, names
        assert names.count("compose-down") == 1, names
        assert names.count("test-done") == 8, names
        up = names.index("compose-up")
        assert names.count("reuse") >= 2 and names.index("reuse") > up, names
        # The teardown is the last thing: after every test and every (surviving) worker finished.
        down = names.index("compose-down")
        assert down == len(names) - 1, names
        # Every worker that ran tests finished (user-done) before the teardown, except the one that crashed.
        tested = {e["pid"] for e in events if e["event"] == "test-done"}
        finished = {e["pid"] for e in events if e["event"] == "user-done"}
        assert len(tested - finished) == 1 and finished <= tested, (tested, finished)
        # ... and the controller, a process that ran no test, tore it down.
        assert events[down]["pid"] not in tested | {e["pid"] for e in events if e["event"] == "compose-up"}
        assert project not in {p.name for p in stack.docker.compose.ls(all=True)}
    finally:
        stack.docker.compose.down(volumes=True, remove_orphans=True, quiet=True)
