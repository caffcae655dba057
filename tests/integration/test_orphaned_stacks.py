"""A stack whose test session died without stopping it. Stopped with it (Docker or the host restarted under
the session), it is removed and started afresh: its Slurm state holds the dead session's queue, which
slurmctld would recover and run before the start's probe job. (Still running, it is adopted: see
tests/fast/test_harness_faults.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from slurm_dev_cluster.inputs import ACCOUNTING_VAR
from slurm_dev_cluster.stack import REPO_ROOT, Stack
from slurm_dev_cluster.topology import Topology

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_stack_stopped_with_its_dead_session_starts_afresh_without_that_sessions_jobs(
    slurm_container, tmp_path, monkeypatch
):
    monkeypatch.setenv(ACCOUNTING_VAR, "0")  # the smallest stack that has a queue: slurmctld and one node
    project = f"slurmsdk-orphan-{uuid.uuid4().hex[:8]}"
    said: list[str] = []
    stack = Stack(
        REPO_ROOT, project=project, state_dir=tmp_path / project, say=said.append, topology=Topology(nodes=1)
    )
    session = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # the doomed owner
    try:
        stack.ensure_up("doomed-session", owner_pid=session.pid)

        def submit(*options: str) -> str:
            command = ["sbatch", "--parsable", "-o", "/dev/null", *options, "--wrap", "sleep 600"]
            return stack.exec("login", command, user="sdk").strip()

        # The dead session's queue: a job that fills the only node, and one that waits behind it.
        left = [submit("--exclusive"), submit()]
        session.kill()
        session.wait()
        stack.docker.compose.stop()  # as a Docker restart stops it: slurmctld saves its state on SIGTERM
        assert stack.orphaned_by() == "doomed-session"

        result = stack.ensure_up("next-session", owner_pid=os.getpid())

        assert result.action == "started"
        queue = stack.exec("slurmctld", ["squeue", "-h", "-o", "%i"]).split()
        assert not set(left) & set(queue), (left, queue)
        events = [event["event"] for event in stack.events.events()]
        first_up = events.index("compose-up")
        assert first_up < events.index("discard") < events.index("compose-up", first_up + 1), events
        assert any("its Slurm state holds that session's jobs" in line for line in said), said
        assert stack.read_state()["started_by"] == "next-session"
    finally:
        session.kill()
        stack.docker.compose.down(volumes=True, remove_orphans=True, quiet=True)
