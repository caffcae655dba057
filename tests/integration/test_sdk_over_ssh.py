"""The SDK against real Slurm over real SSH: results, errors, arrays, dependencies, cancel, logs, workflows."""

from __future__ import annotations

import time
import uuid

import pytest

from slurm import JobFailedError, JobState

from . import jobs

pytestmark = pytest.mark.integration
TIMEOUT = 300


def test_task_runs_on_a_compute_node_and_returns_its_result(slurm_cluster, cluster_mode, compute_nodes):
    assert cluster_mode == "ssh"
    job = slurm_cluster.submit(jobs.where, 21)
    value, host, slurm_job_id = job.result(timeout=TIMEOUT)
    assert value == 21
    assert host in compute_nodes
    assert slurm_job_id == job.job_id
    assert job.last_state is JobState.COMPLETED


def test_remote_exception_comes_back_with_its_traceback(slurm_cluster):
    job = slurm_cluster.submit(jobs.explode, "boom on the node")
    with pytest.raises(jobs.IntentionalError, match="boom on the node") as raised:
        job.result(timeout=TIMEOUT)
    remote = str(raised.value.__cause__)
    assert "explode" in remote and "IntentionalError" in remote, remote
    assert job.last_state is JobState.FAILED


def test_array_runs_across_nodes(slurm_cluster, compute_nodes, login_transport):
    # Two CPUs each on four-CPU nodes: at most two run per node at a time, so three running at once span
    # two nodes. The tasks wait for three of them to have started: tasks that each end at once could
    # otherwise all run two by two on one node while another test's job (pytest -n 2) fills the other.
    together = 3 if len(compute_nodes) >= 2 else 1
    folder = f"{login_transport.home()}/spread-{uuid.uuid4().hex}"
    spread = jobs.where_together.options(cpus=2)
    try:
        array = slurm_cluster.map(spread, [(x, folder, together) for x in range(6)])
        results = array.results(timeout=TIMEOUT)
    finally:
        login_transport.run(f"rm -rf {folder}", check=False)
    assert [value for value, _, _ in results] == list(range(6))
    hosts = {host for _, host, _ in results}
    assert hosts <= set(compute_nodes) and len(hosts) >= min(2, len(compute_nodes)), hosts


def test_dependency_runs_after_its_parent(slurm_cluster, login_transport):
    marker = f"{login_transport.home()}/dependency-{uuid.uuid4().hex}.txt"
    try:
        first = slurm_cluster.submit(jobs.sleep_then_return.options(), 3)
        second = slurm_cluster.submit(jobs.write_marker.after(first), marker, "second")
        assert second.result(timeout=TIMEOUT) == "second"
        assert first.last_state is JobState.COMPLETED or first.query_state() is JobState.COMPLETED
        assert login_transport.read_bytes(marker).decode() == "second\n"
    finally:
        login_transport.run(f"rm -f {marker}")


def test_dependency_on_a_failed_job_never_runs(slurm_cluster, login_transport):
    marker = f"{login_transport.home()}/never-{uuid.uuid4().hex}.txt"
    failing = slurm_cluster.submit(jobs.explode, "parent fails")
    dependent = slurm_cluster.submit(jobs.write_marker.after(failing), marker, "must not run")
    with pytest.raises(jobs.IntentionalError):
        failing.result(timeout=TIMEOUT)
    # afterok can never be satisfied: Slurm cancels the dependent (or leaves it pending); cancel to be sure.
    dependent.cancel()
    assert dependent.wait(timeout=TIMEOUT) is JobState.CANCELLED
    assert not login_transport.exists(marker)


def test_cancel_a_running_job(slurm_cluster):
    job = slurm_cluster.submit(jobs.sleep_then_return, 600)
    deadline = time.monotonic() + TIMEOUT
    while job.query_state() is not JobState.RUNNING:
        assert not job.last_state.is_terminal, f"job ended before it could be cancelled: {job.last_state}"
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.5)
    job.cancel()
    assert job.wait(timeout=TIMEOUT) is JobState.CANCELLED
    with pytest.raises(JobFailedError):
        job.result(timeout=TIMEOUT)


def test_stdout_and_stderr_are_read_back(slurm_cluster):
    job = slurm_cluster.submit(jobs.chatty, "hello")
    assert job.result(timeout=TIMEOUT) == 5
    assert "stdout says hello" in job.stdout()
    assert "stderr says hello" in job.stderr()


def test_nested_workflow_children_and_grandchild_finish(slurm_cluster, compute_nodes):
    job = slurm_cluster.submit(jobs.parent_level, 3)
    result = job.result(timeout=TIMEOUT)
    assert result["plain"] == 6
    assert result["nested"]["grandchild"] == 8
    assert result["nested"]["host"] in compute_nodes


def test_each_array_task_reads_only_its_own_item_of_the_payload(slurm_cluster):
    # Six items of 200 KB: a task that read the whole payload would read 1.2 MB.
    items = [bytes([i]) * 200_000 for i in range(6)]
    array = slurm_cluster.map(jobs.byte_sum, items)
    assert array.results(timeout=TIMEOUT) == [sum(item) for item in items]
    read = [job._outcome.fields["payload_bytes_read"] for job in array]
    assert all(200_000 < count < 201_000 for count in read), read  # its item, the header and two offsets
