"""A stack whose test session died without stopping it, with that session's jobs in its queue. Still running
(a SIGKILLed session), the next session adopts it and cancels those jobs. Stopped with the session (Docker or
the host restarted under it), it is removed and started afresh: its Slurm state holds that queue, which
slurmctld would recover and run before the start's probe job. And a probe that waited behind a queue,
whoever left it, names those jobs and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field

import pytest

from slurm_dev_cluster import ssh
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.inputs import ACCOUNTING_VAR
from slurm_dev_cluster.ssh_access import probe_job, run_probe
from slurm_dev_cluster.stack import REPO_ROOT, Stack
from slurm_dev_cluster.topology import Topology

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class LeftByADeadSession:
    stack: Stack
    said: list[str]
    jobs: list[str] = field(default_factory=list)

    def queued(self) -> list[str]:
        """The jobs pending or running (a cancelled one stays listed, CANCELLED, for MinJobAge)."""
        return self.stack.exec("slurmctld", ["squeue", "-h", "-t", "PD,R", "-o", "%i"]).split()

    def events(self) -> list[str]:
        return [event["event"] for event in self.stack.events.events()]


@pytest.fixture
def left_by_a_dead_session(slurm_container, tmp_path, monkeypatch):
    """A fresh stack, one node and no accounting (the smallest with a queue), started by a test session that
    then dies with two jobs queued: one filling the only node, one waiting behind it."""
    monkeypatch.setenv(ACCOUNTING_VAR, "0")
    project = f"slurmsdk-orphan-{uuid.uuid4().hex[:8]}"
    said: list[str] = []
    stack = Stack(
        REPO_ROOT, project=project, state_dir=tmp_path / project, say=said.append, topology=Topology(nodes=1)
    )
    session = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        stack.ensure_up("doomed-session", owner_pid=session.pid)
        left = LeftByADeadSession(stack, said)
        for options in (["--exclusive"], []):
            command = ["sbatch", "--parsable", "-o", "/dev/null", *options, "--wrap", "sleep 600"]
            left.jobs.append(stack.exec("login", command, user="sdk").strip())
        assert sorted(left.queued()) == sorted(left.jobs)
        session.kill()
        session.wait()
        assert stack.orphaned_by() == "doomed-session"
        yield left
    finally:
        session.kill()
        stack.docker.compose.down(volumes=True, remove_orphans=True, quiet=True)


def test_a_running_stack_of_a_dead_session_is_adopted_and_its_jobs_cancelled(left_by_a_dead_session):
    left = left_by_a_dead_session

    result = left.stack.ensure_up("next-session", owner_pid=os.getpid())

    assert result.action == "reused" and "adopt" in left.events()
    assert left.stack.read_state()["started_by"] == "next-session"
    assert left.queued() == []
    assert any("cancelled 2 job(s) session doomed-session left" in line for line in left.said), left.said


def test_a_stack_stopped_with_its_dead_session_starts_afresh_without_its_jobs(left_by_a_dead_session):
    left = left_by_a_dead_session
    left.stack.docker.compose.stop()  # as a Docker restart stops it: slurmctld saves its state on SIGTERM

    result = left.stack.ensure_up("next-session", owner_pid=os.getpid())

    assert result.action == "started"
    assert left.stack.read_state()["started_by"] == "next-session"
    assert not set(left.jobs) & set(left.queued()), (left.jobs, left.queued())
    events = left.events()
    first_up = events.index("compose-up")
    assert first_up < events.index("discard") < events.index("compose-up", first_up + 1), events
    assert any("its Slurm state holds that session's jobs" in line for line in left.said), left.said


def test_a_probe_that_waits_behind_the_queue_names_those_jobs_and_the_fix(left_by_a_dead_session):
    left = left_by_a_dead_session
    connection = left.stack.connect_info()
    client = ssh.connect(
        connection.host, connection.port, connection.user, connection.key_path, connection.host_key
    )
    try:
        with pytest.raises(StackError) as caught:
            run_probe(client, lambda: "(daemon logs)", probe_job(timeout=3))
    finally:
        client.close()
    message = str(caught.value)
    assert "probe job (srun true) failed or did not end within 3 s" in message
    assert f"\n{left.jobs[0]} sdk RUNNING " in message and f"\n{left.jobs[1]} sdk PENDING " in message
    assert "harness-probe" not in message  # the probe's own job is not one it waited behind
    assert "fix: wait for them, cancel them (scancel), or start from scratch" in message
