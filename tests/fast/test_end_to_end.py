"""End to end through LocalCommandBackend: the same rendered scripts and runner as on a real cluster."""

from __future__ import annotations

import itertools
import time

import pytest

from slurm import JobFailedError, JobState, JobTimeoutError, workflow
from tests.fast import tasks


def wait_until(condition, timeout=10.0):
    """Whether ``condition()`` came true within ``timeout`` s. Looks every 10 ms: the conditions are a file or
    two (a job's log, a state), and each look later than needed delays the test by that much."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(") ", 1)[1][0] != "Z"  # a zombie is dead, just not reaped yet
    except FileNotFoundError:
        return False


def test_submit_returns_result_and_logs(cluster):
    job = cluster.submit(tasks.add, 2, b=3)
    assert job.result(timeout=30) == 5
    assert job.query_state() is JobState.COMPLETED
    assert "#SBATCH --time=00:01:00" in job.script
    assert f"job {job.job_id} task 0" in job.stderr()  # the runner's header
    assert job.stdout() == ""


def test_exception_reraised_with_remote_traceback(cluster):
    job = cluster.submit(tasks.fail, "broken on purpose")
    with pytest.raises(tasks.TaskFailure, match="broken on purpose") as info:
        job.result(timeout=30)
    assert job.last_state is JobState.FAILED
    remote = info.value.__cause__
    assert "Traceback" in str(remote) and "raise TaskFailure(message)" in str(remote)
    assert any(job.job_id in note for note in info.value.__notes__)


def test_job_dying_without_result_raises_job_failed_with_stderr(cluster):
    job = cluster.submit(tasks.exit_hard, 3)
    with pytest.raises(JobFailedError, match="ended FAILED without a result") as info:
        job.result(timeout=30)
    assert info.value.job_id == job.job_id
    assert "[slurm-sdk] job" in str(info.value)  # stderr tail included


def test_map_splits_into_chunks_of_max_array_size(make_cluster):
    cluster = make_cluster(max_array_size=3)
    jobs = cluster.map(tasks.square, range(7))
    assert len(jobs.array_ids) == 3
    first, second, third = jobs.array_ids
    assert [job.job_id for job in jobs] == [f"{first}_{i}" for i in range(3)] + [
        f"{second}_{i}" for i in range(3)
    ] + [f"{third}_0"]
    assert jobs.results(timeout=60) == [x * x for x in range(7)]


def test_array_tasks_see_their_index(cluster):
    jobs = cluster.map(tasks.slurm_environment.options(cpus=2), [None, None], max_parallel=1)
    environments = jobs.results(timeout=60)
    assert [env["SLURM_ARRAY_TASK_ID"] for env in environments] == ["0", "1"]
    assert {env["SLURM_ARRAY_JOB_ID"] for env in environments} == {jobs.array_ids[0]}
    assert environments[0]["SLURM_CPUS_PER_TASK"] == "2"


def test_dependency_orders_jobs(cluster, tmp_path):
    path = tmp_path / "order.txt"
    first = cluster.submit(tasks.append_after_pause, str(path), "a", 0.5)
    second = cluster.submit(tasks.append_after_pause.after(first), str(path), "b", 0)
    assert second.result(timeout=30) == "b"
    assert path.read_text() == "ab"


def test_dependency_on_a_whole_array(cluster, tmp_path):
    path = tmp_path / "order.txt"
    items = cluster.map(tasks.square, range(3))
    later = cluster.submit(tasks.append_after_pause.after(items), str(path), "done", 0)
    later.wait(timeout=30)
    assert all(state is JobState.COMPLETED for state in items.wait(timeout=0))
    assert later.result() == "done"


def test_failed_dependency_cancels_dependent(cluster):
    bad = cluster.submit(tasks.fail, "no")
    dependent = cluster.submit(tasks.add.after(bad), 1, 2)
    assert dependent.wait(timeout=30) is JobState.CANCELLED
    with pytest.raises(JobFailedError, match="DependencyNeverSatisfied"):
        dependent.result()
    anyway = cluster.submit(tasks.add.after(bad, dependency_type="afterany"), 1, 2)
    assert anyway.result(timeout=30) == 3


def test_cancel_running_job_kills_it(cluster, tmp_path):
    pid_path = tmp_path / "pid"
    job = cluster.submit(tasks.sleep_and_record_pid, str(pid_path), 60)
    assert wait_until(pid_path.exists), "the task never started"
    job.cancel()
    assert job.wait(timeout=10) is JobState.CANCELLED
    assert wait_until(lambda: not pid_alive(int(pid_path.read_text()))), "the cancelled task still runs"
    with pytest.raises(JobFailedError, match="CANCELLED"):
        job.result()


def test_cancel_pending_job_never_runs_it(cluster, tmp_path):
    pid_path = tmp_path / "pid"
    blocker = cluster.submit(tasks.sleep_and_record_pid, str(tmp_path / "blocker"), 60)
    pending = cluster.submit(tasks.sleep_and_record_pid.after(blocker), str(pid_path), 0)
    pending.cancel()
    assert pending.wait(timeout=10) is JobState.CANCELLED
    blocker.cancel()
    assert blocker.wait(timeout=10) is JobState.CANCELLED
    assert not pid_path.exists()


def test_result_timeout_names_job_and_state(cluster, tmp_path):
    job = cluster.submit(tasks.sleep_and_record_pid, str(tmp_path / "pid"), 60)
    with pytest.raises(JobTimeoutError) as info:
        job.result(timeout=0.05)  # any timeout the 60 s job outlasts
    assert info.value.job_id == job.job_id
    assert info.value.state in ("PENDING", "RUNNING")
    assert f"job {job.job_id}" in str(info.value) and info.value.state in str(info.value)


def test_workflow_children_submit_grandchildren(cluster):
    job = cluster.submit(tasks.fan_out, 3)
    result = job.result(timeout=90)
    assert result["squares"] == [0, 1, 4]
    assert [nested["sum"] for nested in result["nested"]] == [100, 101]
    # The workflow's own SLURM_* job variables are gone (the SDK's settings, SLURM_SDK_*, may be inherited
    # from the shell that runs the tests).
    assert {k for k in result["parent_env"] if not k.startswith("SLURM_SDK_")} <= {"SLURM_CONF"}
    grandchild_env = result["nested"][0]["child_env"]
    assert grandchild_env["SLURM_JOB_ID"] not in (job.job_id, "")
    backend = cluster.backend
    assert len(backend.job_ids()) >= 1 + 1 + 2 + 2 * 2  # workflow, array, 2 nested, 2 grandchildren each


def test_workflow_children_inherit_packaging_and_backend(cluster):
    @workflow
    def describe(child_cluster):
        return (
            child_cluster.packaging.to_config(),
            child_cluster.backend.to_config(),
            child_cluster.resolve_job_root(),
        )

    packaging, backend, job_root = cluster.submit(describe).result(timeout=30)
    assert packaging == cluster.packaging.to_config()
    assert backend == cluster.backend.to_config()
    assert job_root == cluster.resolve_job_root()


def test_callbacks_fire_in_documented_order_once(make_cluster, recorder):
    cluster = make_cluster(callbacks=[recorder])
    job = cluster.submit(tasks.add, 1, 2)
    assert job.result(timeout=30) == 3
    job.wait()
    job.result()
    assert job.query_state() is JobState.COMPLETED
    events = recorder.events
    assert events[0] == ("submit", job.job_id)
    assert events[-1] == ("complete", job.job_id, 3)
    changes = events[1:-1]
    assert changes and all(event[0] == "state" for event in changes)
    assert changes[0][2] == "PENDING" and changes[-1][3] == "COMPLETED"
    assert all(earlier[3] == later[2] for earlier, later in itertools.pairwise(changes))


def test_failure_callback_and_raising_callback(make_cluster, recorder, caplog):
    class Broken:
        def on_state_change(self, job, old, new):
            raise RuntimeError("callback bug")

    cluster = make_cluster(callbacks=[Broken(), recorder])
    job = cluster.submit(tasks.fail, "x")
    with pytest.raises(tasks.TaskFailure):
        job.result(timeout=30)
    assert recorder.events[-1] == ("failure", job.job_id, "TaskFailure")
    assert [event[0] for event in recorder.events].count("failure") == 1
    assert "callback bug" in caplog.text


def test_map_fires_callbacks_per_element(make_cluster, recorder):
    cluster = make_cluster(callbacks=[recorder])
    jobs = cluster.map(tasks.square, [2, 3])
    jobs.results(timeout=30)
    completes = [event for event in recorder.events if event[0] == "complete"]
    assert sorted(completes) == sorted(("complete", job.job_id, job.result()) for job in jobs)
    assert [event for event in recorder.events if event[0] == "submit"] == [
        ("submit", job.job_id) for job in jobs
    ]


def test_calling_a_task_directly_runs_it_here():
    assert tasks.add(1, 2) == 3
