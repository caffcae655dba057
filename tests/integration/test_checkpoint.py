"""Checkpoint and requeue on the real cluster: Slurm's signal before the time limit, the runner's
`scontrol requeue` as the job's owner, a preemption through fault injection, and the resumed runs.

Each task appends the step it started from to a file on /home per run, so a test sees every run and that
none started over. The dev cluster holds a requeued job 10 s (AuthInfo=cred_expire=10, dev defaults)."""

from __future__ import annotations

import time
import uuid

import pytest

from slurm import Checkpointing, JobState
from tests.checkpoint_jobs import count_steps, run_starts

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def runs_log(slurm_cluster):
    path = f"/home/sdk/checkpoint-runs-{uuid.uuid4().hex}.log"
    yield path
    slurm_cluster.backend.transport.run(f"rm -f {path}", check=False)


def starts(cluster, path: str) -> list[int]:
    transport = cluster.backend.transport
    return run_starts(transport.read_bytes(path).decode()) if transport.exists(path) else []


def test_more_work_than_the_time_limit_finishes_after_requeues(slurm_cluster, runs_log):
    # slurmctld looks for due signals every 30 s and sends one that comes due before its next look, up to 30 s
    # early (on the dev cluster `@30` on a 1-minute job came 4-30 s into the run: at times before the first
    # save, or before the runner had its handler). With the signal due 60 s before a 2-minute limit it comes
    # 30-60 s into each run: the first run saves 30-60 of the 70 steps, so at least one requeue, and every
    # rerun resumes from a later step.
    job = slurm_cluster.submit(
        count_steps.options(time="00:02:00", checkpoint=Checkpointing(60, max_requeues=8)), 70, runs_log
    )
    assert "#SBATCH --signal=B:USR2@60" in job.script
    state = job.result(timeout=900)
    runs = starts(slurm_cluster, runs_log)
    assert state["step"] == 70 and state["runs"] == len(runs) >= 2, runs
    assert runs[0] == 0 and runs == sorted(runs) and len(set(runs)) == len(runs), runs  # every rerun resumed
    assert runs[1] >= 25, runs  # the first signal came at least ~30 s in (a step a second, less start-up)
    assert job.restarts == len(runs) - 1
    assert "job requeued (1 of max 8)" in job.stderr()  # --open-mode=append kept every run's lines


def test_preemption_requeues_beyond_max_requeues_and_resumes(slurm_cluster, faults, runs_log):
    job = slurm_cluster.submit(
        count_steps.options(time=10, checkpoint=Checkpointing(max_requeues=0)), 12, runs_log
    )
    for preemption in (1, 2):
        _wait_for(
            lambda preemption=preemption: len(starts(slurm_cluster, runs_log)) == preemption,
            f"run {preemption} started",
        )
        time.sleep(2)  # let it save a step or two
        faults.preempt(job.job_id)
    state = job.result(timeout=180)
    runs = starts(slurm_cluster, runs_log)
    assert state == {"step": 12, "runs": 3} and len(runs) == 3
    assert runs[0] == 0 < runs[1] < runs[2]  # each run resumed from the last save
    assert job.restarts == 2 and job.last_state is JobState.COMPLETED
    assert job.stderr().count("stopped by SIGTERM after saving the checkpoint") == 2


def _wait_for(predicate, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.5)
