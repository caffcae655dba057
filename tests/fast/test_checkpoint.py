"""Checkpoint and requeue through LocalCommandBackend: the signal before the time limit, the requeue, the
resumed run, the max_requeues limit, preemption (unlimited), and the API's validation."""

from __future__ import annotations

import os
import shlex
import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm import Checkpointing, Cluster, ResourceError, Resources, checkpoint, task
from slurm.rendering import sbatch_options
from tests.checkpoint_jobs import count_steps, run_starts
from tests.fast.test_end_to_end import wait_until

STEP = 0.02


def test_preemption_requeues_without_the_limit(cluster, tmp_path):
    log = tmp_path / "runs"
    no_time_limit_requeues = count_steps.options(time=5, checkpoint=Checkpointing(max_requeues=0))
    # The first two runs hold before their last step: each runs until it is preempted, the third finishes.
    job = cluster.submit(no_time_limit_requeues, 10, str(log), STEP, 2)
    for preemptions in (1, 2):
        # Preempt a run once it has saved a step (a run that saved nothing would just start over).
        assert wait_until(
            lambda preemptions=preemptions: log.exists() and len(run_starts(log.read_text())) == preemptions,
            timeout=20,
        )
        assert wait_until(lambda: os.path.exists(checkpoint.checkpoint_path(job.job_dir, 0)), timeout=20)
        cluster.backend.preempt(job.job_id)
    state = job.result(timeout=60)
    assert state["step"] == 10 and state["runs"] == 3
    assert job.restarts == 2
    assert "stopped by SIGTERM after saving the checkpoint" in job.stderr()


# `scontrol -o show job` lines as Slurm 24.11 prints them, cut to the fields around PreemptTime.
PREEMPTING = (
    "JobId=7 JobName=train PreemptEligibleTime=2026-12-06T21:55:20 PreemptTime=2026-12-06T21:55:24 Sus"
)
NOT_PREEMPTING = (
    "JobId=7 JobName=train PreemptEligibleTime=2026-12-06T21:55:20 PreemptTime=None SuspendTime=None"
)


@pytest.mark.parametrize(
    ("job_line", "stops_with", "requeued_by_itself"),
    [
        (PREEMPTING, "SIGUSR2 at preemption", False),
        (NOT_PREEMPTING, "time limit near: checkpoint saved, job requeued", True),
        ("", "time limit near: checkpoint saved, job requeued", True),  # no answer: the time-limit path
    ],
)
def test_usr2_is_a_preemption_when_slurmctld_is_preempting_the_job(
    tmp_path, monkeypatch, job_line, stops_with, requeued_by_itself
):
    """A site with PreemptParameters=send_user_signal and a GraceTime sends the job's USR2 at preemption: the
    run stops after its save without requeueing itself (Slurm requeues it) and without counting a requeue."""
    requeued = tmp_path / "requeued"
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    # Stand-ins for scontrol, each given the job id as its last argument: the shell and echo, where a Python
    # would cost tens of milliseconds to start. The requeue writes the id it was given to `requeued`.
    monkeypatch.setenv(
        checkpoint.REQUEUE_COMMAND_ENV, shlex.join(["sh", "-c", 'printf %s "$1" > "$0"', str(requeued)])
    )
    monkeypatch.setenv(checkpoint.JOB_QUERY_COMMAND_ENV, shlex.join(["echo", job_line]))
    monkeypatch.setenv(checkpoint.VERSION_COMMAND_ENV, shlex.join(["echo", "slurm 24.11.1"]))
    run = checkpoint._Run(str(tmp_path), 0, max_requeues=3)
    run.signalled = signal.SIGUSR2
    with pytest.raises(checkpoint.Stopped, match=stops_with):
        run.save({"step": 1})
    assert run.load(None) == {"step": 1}
    assert requeued.exists() is requeued_by_itself
    assert not requeued_by_itself or requeued.read_text() == "7"  # `scontrol requeue 7`: its own job
    assert os.path.exists(checkpoint.requeue_count_path(str(tmp_path), 0)) is requeued_by_itself


class _Slept(Exception):
    """Raised by the stand-in for the wait for Slurm's kill: the run waits instead of ending."""


@pytest.mark.parametrize(
    ("version", "waits"),
    [("slurm 22.05.8", True), ("slurm 23.11.10", True), ("slurm 24.05.0", False), ("slurm 26.05.0", False)],
)
def test_before_slurm_24_05_a_preempted_run_waits_for_slurms_kill_after_its_save(
    tmp_path, monkeypatch, version, waits
):
    """Slurm before 24.05 requeues a preempted job only when its GraceTime runs out: a run that ended sooner
    would end the job (COMPLETED, no result). So there the run saves, then waits for Slurm to stop it."""
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv(checkpoint.JOB_QUERY_COMMAND_ENV, shlex.join(["echo", PREEMPTING]))
    monkeypatch.setenv(checkpoint.VERSION_COMMAND_ENV, shlex.join(["echo", version]))

    def wait_to_be_stopped():
        raise _Slept

    monkeypatch.setattr(checkpoint, "_wait_to_be_stopped", wait_to_be_stopped)
    run = checkpoint._Run(str(tmp_path), 0, max_requeues=3)
    run.signalled = signal.SIGUSR2
    with pytest.raises(_Slept if waits else checkpoint.Stopped):
        run.save({"step": 1})
    assert run.load(None) == {"step": 1}  # saved before waiting
    assert not os.path.exists(checkpoint.requeue_count_path(str(tmp_path), 0))


def test_a_task_without_checkpointing_asks_for_no_signal(cluster):
    plain = count_steps.options(checkpoint=False)
    script = cluster.submit(plain, 0, "/dev/null", 0).script
    assert "--signal" not in script and "--max-requeues" not in script


def test_outside_a_job_save_and_load_keep_the_state_in_memory(monkeypatch):
    monkeypatch.setattr(checkpoint, "_run", checkpoint._Run(None, 0, 0))  # a task called directly, not a job
    assert checkpoint.load("default") == "default"
    checkpoint.save({"step": 3})
    assert checkpoint.load("default") == {"step": 3}


@pytest.mark.parametrize("value", ["yes", 1, {"signal": 30}])
def test_checkpoint_option_is_validated_when_the_task_is_defined(value):
    with pytest.raises(ResourceError, match="checkpoint must be True, False, Checkpointing"):
        task(checkpoint=value)(lambda: None)


def test_a_config_file_gives_checkpointing_as_a_dict(tmp_path):
    config = tmp_path / "slurm-sdk.yaml"
    config.write_text(
        f"backend: {{type: local, state_dir: {tmp_path}}}\n"
        "defaults: {time: '00:10:00', checkpoint: {signal_before: 120}}\n"
    )
    assert Cluster.from_env(str(config)).defaults.checkpoint == Checkpointing(
        signal_before=120, max_requeues=3
    )


def test_checkpoint_true_means_the_defaults():
    assert count_steps.resources.checkpoint == Checkpointing(signal_before=60, max_requeues=3)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(signal_before=0), "signal_before must be an int between 1 and 65535"),
        (dict(signal_before=70_000), "signal_before must be an int between 1 and 65535"),
        (dict(max_requeues=-1), "max_requeues must be an int >= 0"),
        (dict(max_requeues=True), "max_requeues must be an int >= 0"),
    ],
)
def test_checkpointing_bounds(options, message):
    with pytest.raises(ResourceError, match=message):
        Checkpointing(**options)


def test_the_signal_must_come_before_the_time_limit():
    with pytest.raises(
        ResourceError, match=r"signal_before=60s must be shorter than time='00:01:00' \(60s\)"
    ):
        task(time="00:01:00", checkpoint=True)(lambda: None)
    with pytest.raises(ResourceError, match="signal_before=60s must be shorter"):
        count_steps.options(time=1, checkpoint=True)  # also when an option changes one of the two


@given(before=st.integers(-10, 70_000), requeues=st.integers(-3, 50), limit=st.integers(1, 2_000))
def test_checkpointing_is_accepted_exactly_when_slurm_can_honour_it(before, requeues, limit):
    valid = 1 <= before <= 65535 and requeues >= 0 and before < limit * 60
    try:
        resources = Resources(time=limit, checkpoint=Checkpointing(before, requeues))
    except ResourceError:
        assert not valid
    else:
        assert valid
        assert ("signal", f"B:USR2@{before}") in sbatch_options(resources)


def test_signal_cannot_be_passed_through_sbatch():
    with pytest.raises(
        ResourceError, match=r"--signal cannot be passed through sbatch.*checkpoint= argument"
    ):
        task(sbatch={"signal": "USR1@30"})(lambda: None)
