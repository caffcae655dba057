"""Local jobs that wait for real time limits, which is why they live in the slow tier (seconds each): the
checkpoint signal before the limit, the requeue and the resumed run, each task of a map on its own, the
max_requeues limit, and a job without checkpointing ending TIMEOUT. The rest of checkpointing through
LocalCommandBackend (preemption, validation) is in tests/fast/test_checkpoint.py."""

from __future__ import annotations

import pytest

from slurm import Checkpointing, JobFailedError, JobState
from tests.checkpoint_jobs import count_steps, count_steps_of, run_starts
from tests.fast import tasks
from tests.fast.conftest import cancel_unfinished, local_cluster

pytestmark = pytest.mark.slow

STEP = 0.02
# Local time limits are exact (Slurm's may signal up to 60 s early): 2 s per run, the signal 1 s before. The
# runner notes the signal from its start, well inside that first second (before it even loads the task), and
# a save plus the requeue command take a fraction of the 1 s lead.
SHORT_LIMIT = dict(time="0:02", checkpoint=Checkpointing(signal_before=1, max_requeues=3))
SHORT = count_steps.options(**SHORT_LIMIT)
# count_steps' held_runs: how many runs never take their last step, so only a stop signal ends them.
HOLD_FIRST_RUN = 1


# The time-limit tests wait for real limits (seconds each, two runs for max_requeues): their jobs are
# submitted side by side when the first of them starts, and they run as one xdist group, on one worker.
TIME_LIMITS = pytest.mark.xdist_group("checkpoint-time-limits")


@pytest.fixture(scope="module")
def time_limited(tmp_path_factory):
    """The time-limit tests' jobs, all submitted at once, with the log of each run: ``rerun`` (its first run
    holds before its last step, so only the signal 1 s before its limit ends it; the rerun finishes what is
    left), ``map`` (two such tasks of one array, each requeued on its own) and ``never_enough`` (too many
    steps for two runs, max_requeues=1)."""
    root = tmp_path_factory.mktemp("time-limits")
    cluster = local_cluster(root)
    logs = {name: str(root / f"runs-{name}") for name in ("rerun", "map-0", "map-1", "never_enough")}
    never_enough = SHORT.options(checkpoint=Checkpointing(signal_before=1, max_requeues=1))
    jobs = {
        "rerun": cluster.submit(SHORT, 40, logs["rerun"], STEP, HOLD_FIRST_RUN),
        "map": cluster.map(
            count_steps_of.options(**SHORT_LIMIT),
            [(44, logs[f"map-{index}"], STEP, HOLD_FIRST_RUN) for index in range(2)],
        ),
        "never_enough": cluster.submit(never_enough, 10_000, logs["never_enough"], STEP),
    }
    yield jobs, logs
    cancel_unfinished(cluster)


@TIME_LIMITS
def test_time_limit_signal_requeues_and_the_rerun_resumes(time_limited):
    jobs, logs = time_limited
    job = jobs["rerun"]
    assert "#SBATCH --signal=B:USR2@1" in job.script
    state = job.result(timeout=60)
    starts = run_starts(open(logs["rerun"]).read())
    assert state["step"] == 40
    assert state["runs"] == len(starts) >= 2
    assert starts == sorted(starts) and starts[0] == 0 and starts[-1] > 0  # each run resumed, none restarted
    assert job.restarts == len(starts) - 1 <= 3
    assert "time limit near: checkpoint saved, job requeued (1 of max 3)" in job.stderr()


@TIME_LIMITS
def test_each_task_of_a_map_checkpoints_and_requeues_on_its_own(time_limited):
    jobs, logs = time_limited
    assert [state["step"] for state in jobs["map"].results(timeout=60)] == [44, 44]
    for index, job in enumerate(jobs["map"]):  # requeued as "<array>_<index>": each task on its own
        starts = run_starts(open(logs[f"map-{index}"]).read())
        assert len(starts) >= 2 and starts == sorted(starts) and job.restarts == len(starts) - 1


@TIME_LIMITS
def test_time_limit_requeues_stop_at_max_requeues(time_limited):
    jobs, logs = time_limited
    with pytest.raises(JobFailedError, match="max_requeues=1 reached") as info:
        jobs["never_enough"].result(timeout=60)
    assert info.value.state == JobState.TIMEOUT.value
    assert len(run_starts(open(logs["never_enough"]).read())) == 2  # the first run and one requeue


def test_time_limit_ends_job_as_timeout(cluster, tmp_path):
    job = cluster.submit(tasks.sleep_and_record_pid.options(time="0:01"), str(tmp_path / "pid"), 60)
    assert job.wait(timeout=30) is JobState.TIMEOUT
    with pytest.raises(JobFailedError, match="ended TIMEOUT without a result"):
        job.result()
