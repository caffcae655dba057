"""Accounting, on by default (slurmdbd + MariaDB): `sacct` works and the SDK polls through it."""

from __future__ import annotations

import time

import pytest

from slurm_dev_cluster.stack import accounting_enabled

from .waiting import scheduler_knows, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TIMEOUT = 300


def test_default_stack_has_accounting_so_sacct_answers(slurm_container):
    from slurm.backends.base import JobState
    from slurm.backends.slurm import SSHBackend

    if not accounting_enabled():
        pytest.skip("SLURM_SDK_ACCOUNTING=0: this stack runs without slurmdbd")
    backend = SSHBackend(
        slurm_container.host,
        port=slurm_container.port,
        user=slurm_container.user,
        key_filename=str(slurm_container.key_path),
        known_host_key=slurm_container.host_key,
    )
    try:
        run = backend.transport.run
        job_id = run("sbatch --wait --parsable -o /dev/null --wrap true").stdout.strip()

        def state(job: str) -> str:
            return run(f"sacct -n -X -P -j {job} -o State").stdout.strip()

        # sacct itself, as a user would run it: the job is in the accounting database (its end reaches
        # slurmdbd a moment after `sbatch --wait` returns, so sacct may say RUNNING first).
        wait_until(lambda: state(job_id) == "COMPLETED", 60, lambda: f"sacct: job {job_id} {state(job_id)}")
        assert backend.states([job_id]) == {job_id: JobState.COMPLETED}
        assert backend._use_sacct, "the backend fell back to squeue although sacct works here"
        # Fake GPUs are a TRES of their own here (AccountingStorageTRES=gres/gpu, slurmdbd only).
        gpu_job = run("sbatch --wait --parsable --gres=gpu:1 -o /dev/null --wrap true").stdout.strip()

        # (Its record, like any, reaches slurmdbd a moment after the job: sacct may list nothing at first.)
        def tres() -> str:
            return run(f"sacct -n -X -P -j {gpu_job} -o AllocTRES").stdout.strip()

        wait_until(lambda: "gres/gpu=1" in tres(), 60, lambda: f"sacct: job {gpu_job}'s AllocTRES {tres()!r}")
        # A job killed for its memory (OverMemoryKill): what accounting records for it.
        hog = run(
            "sbatch --wait --parsable --mem=50M -o /dev/null --wrap "
            "'python3 -c \"import time; b = bytearray(1) * (400 << 20); time.sleep(4)\"'",
            check=False,
        ).stdout.strip()
        wait_until(
            lambda: state(hog).split() and state(hog).split()[0] in ("FAILED", "OUT_OF_MEMORY"),
            60,
            lambda: f"sacct: job {hog} {state(hog)}, not FAILED or OUT_OF_MEMORY",
        )
    finally:
        backend.close()


def test_slurmctld_is_registered_with_slurmdbd_once_the_stack_is_up(slurm_stack, slurm_container):
    """slurmctld starts alongside slurmdbd (no compose ordering) and waits for its port in the entrypoint;
    its healthcheck, hence `up --wait`, holds until it has registered, so accounting is on from the start."""
    if not accounting_enabled():
        pytest.skip("SLURM_SDK_ACCOUNTING=0: this stack runs without slurmdbd")
    config = slurm_stack.exec("slurmctld", ["scontrol", "show", "config"])
    assert "accounting_storage/slurmdbd" in config
    host = slurm_stack.exec(
        "slurmctld", ["sacctmgr", "-n", "-P", "show", "cluster", "dev", "format=controlhost"]
    )
    assert host.strip(), "slurmctld has not registered with slurmdbd"


def test_a_job_accounting_still_calls_pending_is_seen_running(slurm_cluster, faults, gate, login_transport):
    """sacct answers from slurmdbd, which hears of a job's start through slurmctld's agent queue: late on a
    busy cluster, and never when slurmctld dies before it sends it. slurmdbd's record of a running job is
    set back to PENDING here; sacct says so, and the SDK, which asks squeue about the jobs sacct calls
    PENDING, still sees it RUNNING. Before, it trusted sacct: `test_tail_of_a_running_job` failed on Slurm
    22.05 at load 20 (sacct said PENDING 2 s after the job started), and this test fails on 24.11 too."""
    from slurm import JobState

    from ..fast import log_tasks

    if not accounting_enabled():
        pytest.skip("SLURM_SDK_ACCOUNTING=0: this stack runs without slurmdbd")
    job = slurm_cluster.submit(log_tasks.speak_until, ["waiting"], gate.path, ["released"])
    assert next(job.follow_stdout(timeout=TIMEOUT)) == "waiting"
    sacct = f"sacct -n -X -P -j {job.job_id} -o State"
    wait_until(lambda: login_transport.run(sacct).stdout.split() == ["RUNNING"], 60, "sacct says RUNNING")
    faults.lose_job_start(job.job_id)
    assert login_transport.run(sacct).stdout.split() == ["PENDING"]  # the stale record, as sacct shows it
    time.sleep(slurm_cluster._watcher.first_poll)  # sooner, query_state() would repeat the last answer
    assert job.query_state() is JobState.RUNNING
    gate.open()
    assert job.result(timeout=TIMEOUT) == "released"


def test_a_job_whose_end_never_reached_accounting_ends_the_wait_as_lost(
    slurm_cluster, slurm_stack, faults, login_transport
):
    """slurmdbd never hears of a job's end when slurmctld dies before sending it: sacct says RUNNING for
    good. The SDK has squeue confirm what sacct calls live (on a wait at most every 15 s); once slurmctld
    has forgotten the job (MinJobAge, 2 s here) it is LOST, and the error says sacct still calls it
    RUNNING. Before, the wait ran until its timeout. The record is made stale only after slurmctld forgot
    the job: made stale before, on Slurm 22.05 it was FAILED again by the time the wait asked (slurmctld
    had told slurmdbd of the end once more)."""
    from slurm import JobFailedError, JobState

    from . import fault_jobs

    if not accounting_enabled():
        pytest.skip("SLURM_SDK_ACCOUNTING=0: this stack runs without slurmdbd")
    faults.forget_finished_jobs()
    job = slurm_cluster.submit(fault_jobs.vanish, 3)  # ends FAILED without a result
    sacct = f"sacct -n -X -P -j {job.job_id} -o State"
    wait_until(lambda: login_transport.run(sacct).stdout.split() == ["FAILED"], 60, "sacct says FAILED")
    wait_until(lambda: not scheduler_knows(slurm_stack, job.job_id), 90, f"slurmctld forgetting {job.job_id}")
    faults.lose_job_end(job.job_id)
    assert login_transport.run(sacct).stdout.split() == ["RUNNING"]  # the stale record, as sacct shows it
    with pytest.raises(
        JobFailedError, match="sacct still says RUNNING: slurmdbd never heard of its end"
    ) as info:
        job.result(timeout=120)
    assert info.value.state == "LOST" and job.last_state is JobState.LOST
