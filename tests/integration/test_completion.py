"""How waits end on the real cluster (no fault injection: see the fault tests for outages and restarts)."""

from __future__ import annotations

import re
import time

import pytest

from slurm import JobFailedError, JobState, JobTimeoutError
from slurm.waiting import FIRST_POLL, POLL_BACKOFF

from . import completion_jobs as jobs

pytestmark = pytest.mark.integration
TIMEOUT = 120


@pytest.mark.parametrize("code", [0, 7])
def test_sys_exit_in_a_task_is_a_failed_job_with_its_code(slurm_cluster, code):
    job = slurm_cluster.submit(jobs.exit_with, code)
    with pytest.raises(JobFailedError, match=rf"called sys.exit\({code}\)") as info:
        job.result(timeout=TIMEOUT)
    assert info.value.exit_code == code
    assert job.last_state is JobState.FAILED


def test_requeue_off_reaches_slurm(slurm_cluster):
    job = slurm_cluster.submit(jobs.no_requeue_nap, 1)
    assert "#SBATCH --no-requeue" in job.script
    shown = slurm_cluster.backend.transport.run(f"scontrol show job {job.job_id}").stdout
    assert re.search(r"\bRequeue=0\b", shown), shown
    assert job.result(timeout=TIMEOUT) == 1


@pytest.mark.slow
def test_waiting_spares_the_scheduler_and_times_out_truthfully(slurm_cluster):
    backend = slurm_cluster.backend
    asked = []
    original = backend.statuses

    def counting(job_ids, **kwargs):
        asked.append((round(time.monotonic() - submitted, 1), list(job_ids)))
        return original(job_ids, **kwargs)

    backend.statuses = counting
    try:
        submitted = time.monotonic()
        job = slurm_cluster.submit(jobs.no_requeue_nap, 12)
        with pytest.raises(
            JobTimeoutError, match=r"did not finish within 3s: still (PENDING|RUNNING) as of \d+s ago"
        ):
            job.result(timeout=3)
        assert job.result(timeout=TIMEOUT) == 12
        waited = time.monotonic() - submitted
    finally:
        del backend.statuses
    # Scheduler queries at ~1, 2.5, 4.8, 8.1 s (then 13, 21, 32 s...): the end itself is seen through the
    # result file. At most one more than the cadence has for the time the job took: 6 for a job done in
    # ~14 s on a quiet host; a job pending behind other tests' jobs (pytest -n 2) takes longer, not more often.
    due, pause = [FIRST_POLL], FIRST_POLL
    while due[-1] <= waited:
        pause = min(pause * POLL_BACKOFF, slurm_cluster.poll_interval_seconds)
        due.append(due[-1] + pause)
    assert 2 <= len(asked) <= len(due), (round(waited, 1), asked)


def test_a_dependent_of_a_failed_job_names_its_parent(slurm_cluster):
    """Dev defaults (kill_invalid_depend): Slurm cancels the dependent itself; the error still says why.
    Under Slurm's stock defaults the SDK cancels it (see the fault tests' production-defaults mode)."""
    parent = slurm_cluster.submit(jobs.exit_with, 3)
    child = slurm_cluster.submit(jobs.no_requeue_nap.after(parent), 1)
    with pytest.raises(
        JobFailedError,
        match=rf"job {child.job_id} \(no_requeue_nap\) can never start: its dependency "
        rf"afterok on job {parent.job_id} \(FAILED\) cannot be satisfied",
    ):
        child.result(timeout=TIMEOUT)
    assert child.last_state is JobState.CANCELLED


def test_a_lost_sbatch_answer_finds_the_queued_job_instead_of_submitting_again(slurm_cluster):
    """The connection drops after sbatch ran (simulated: its answer is thrown away): the SDK must find
    the job through squeue by its script path, and the task must run once."""
    from slurm import SSHError

    transport = slurm_cluster.backend.transport
    sbatch_calls = []
    # Over SSH, sbatch runs in the command that sends the job's files (write_files_then); else on its own.
    name = "write_files_then" if transport.remote else "run"
    real = getattr(transport, name)

    def drop_after_sbatch(*args, **kwargs):
        result = real(*args, **kwargs)
        if transport.remote or "sbatch" in args[0].split("; ")[-1]:
            sbatch_calls.append(result.stdout.strip())
            raise SSHError("connection dropped while running sbatch (simulated)", transient=True)
        return result

    setattr(transport, name, drop_after_sbatch)
    try:
        job = slurm_cluster.submit(jobs.no_requeue_nap, 2)
    finally:
        delattr(transport, name)
    assert sbatch_calls == [job.job_id]  # sbatch ran once and the id it printed was found again
    assert job.result(timeout=TIMEOUT) == 2


@pytest.mark.slow
def test_a_requeue_is_reported_and_the_rerun_returns(slurm_cluster, tmp_path):
    """`scontrol requeue` (what a node failure or preemption does): the job runs again, and the SDK says so."""
    import uuid

    requeues = []

    class OnRequeue:
        def on_requeue(self, job, count):
            requeues.append((job.job_id, count))

    slurm_cluster.callbacks.append(OnRequeue())
    runs = f"{slurm_cluster.backend.transport.home()}/requeue-{uuid.uuid4().hex}.txt"
    job = slurm_cluster.submit(jobs.count_runs_then_nap, runs, 8)
    deadline = time.monotonic() + TIMEOUT
    while slurm_cluster.backend.transport.run(f"cat {runs} 2>/dev/null || true").stdout.count("run") < 1:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.5)
    # A requeued job waits for a BeginTime some minutes ahead; the owner may make it eligible at once.
    slurm_cluster.backend.transport.run(
        f"scontrol requeue {job.job_id} && sleep 1 && scontrol update JobId={job.job_id} StartTime=now"
    )
    assert job.result(timeout=TIMEOUT) == 2  # ran twice: once before the requeue, once after
    assert requeues == [(job.job_id, 1)] and job.restarts == 1
