"""The SDK under injected faults, on the dev defaults and on Slurm's production defaults.

Each test asserts what the SDK reports (error type and message), that no task ran twice unless a requeue
was allowed and reported (tasks append one line per run to a file), and that the wait ended within the
caller's timeout plus a generous margin (a bound on the wait, not a speed goal). The ``faults`` fixture
gives the test the cluster to itself and undoes every fault afterwards.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from slurm import Cluster, JobFailedError, JobState, JobTimeoutError
from slurm_dev_cluster.pytest_plugin import packaging_for, ssh_backend
from slurm_dev_cluster.stack import StackError

from . import fault_jobs, jobs
from .defaults_modes import MODES
from .waiting import scheduler_knows, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
#: What a wait may overrun its timeout by here: a busy 2-core host, SSH setup, one slow query.
MARGIN = 15.0


@pytest.fixture
def runs_file(slurm_stack):
    """A file on the shared /home where the task logs each run; read through docker exec, which works
    whatever the SSH fault."""
    path = f"/home/sdk/fault-runs-{uuid.uuid4().hex}.log"
    yield path
    slurm_stack.exec("login", ["rm", "-f", path])


def runs(slurm_stack, path: str) -> list[str]:
    return slurm_stack.exec("login", ["sh", "-c", f"cat {path} 2>/dev/null || true"]).splitlines()


class Requeues:
    """Callback recording on_requeue and the outcome."""

    def __init__(self) -> None:
        self.requeued: list[tuple[str, int]] = []
        self.failures: list[str] = []

    def on_requeue(self, job, count):
        self.requeued.append((job.job_id, count))

    def on_failure(self, job, error):
        self.failures.append(type(error).__name__)


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except Exception as exc:  # returned, so the test can assert on it and on the time it took
        return exc, time.monotonic() - started


# ---- Slurm forgets a finished job -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_forgotten_job_without_result_raises_job_failed(slurm_cluster, slurm_stack, faults, mode):
    faults.forget_finished_jobs()
    job = slurm_cluster.submit(fault_jobs.vanish, 3)
    wait_until(
        lambda: not scheduler_knows(slurm_stack, job.job_id), 90, f"slurmctld forgetting job {job.job_id}"
    )

    outcome, elapsed = timed(lambda: job.result(timeout=60))
    assert isinstance(outcome, JobFailedError), outcome
    # Without accounting the job is gone from Slurm; with it (the default) sacct still says how it ended.
    assert ("unknown to the scheduler" in str(outcome) and "no result" in str(outcome)) or (
        "without a result" in str(outcome)
    ), str(outcome)
    assert job.job_id in str(outcome)
    assert elapsed < 60 + MARGIN


# ---- a dependency that can never be met ------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_dependent_of_a_failed_parent_fails_naming_the_parent(
    slurm_cluster, slurm_stack, faults, runs_file, mode
):
    parent = slurm_cluster.submit(jobs.explode, "parent fails")
    child = slurm_cluster.submit(fault_jobs.logged_nap.after(parent), runs_file, 0, "must not run")

    outcome, elapsed = timed(lambda: child.result(timeout=60))
    assert isinstance(outcome, JobFailedError), outcome
    if mode == "production":  # pending forever in Slurm (DependencyNeverSatisfied): the SDK cancels it
        assert f"dependency afterok on job {parent.job_id}" in str(outcome), str(outcome)
        assert "DependencyNeverSatisfied" in str(outcome)
    assert child.last_state is JobState.CANCELLED
    assert elapsed < 60 + MARGIN
    assert runs(slurm_stack, runs_file) == []


# ---- the connection drops during sbatch ------------------------------------------------------------


def test_sbatch_whose_answer_is_lost_submits_exactly_once(slurm_cluster, slurm_stack, faults, runs_file):
    faults.drop_ssh_after_sbatch(times=1)  # the job is queued, then the connection dies before the id is sent
    job, _elapsed = timed(lambda: slurm_cluster.submit(fault_jobs.logged_nap, runs_file, 0, "once"))
    assert not isinstance(job, Exception), job
    assert faults.queued_by_sbatch() == [job.job_id]  # found, not submitted again
    assert job.result(timeout=60) == "once"
    assert len(runs(slurm_stack, runs_file)) == 1


def test_sbatch_answer_cut_from_outside_after_queueing_submits_exactly_once(
    slurm_cluster, slurm_stack, faults, runs_file
):
    faults.slow_sbatch(4)  # the job is queued, the answer waits 4 s: time for the drop to land
    cutter = threading.Timer(2.0, faults.drop_ssh)
    cutter.start()
    try:
        job = slurm_cluster.submit(fault_jobs.logged_nap, runs_file, 0, "once")
    finally:
        cutter.join()
    assert faults.queued_by_sbatch() == [job.job_id]
    assert job.result(timeout=60) == "once"
    assert len(runs(slurm_stack, runs_file)) == 1


# ---- outages and frozen channels -------------------------------------------------------------------


def test_a_slurmctld_outage_longer_than_40s_while_the_job_completes(
    slurm_cluster, slurm_stack, faults, runs_file
):
    job = slurm_cluster.submit(fault_jobs.logged_nap, runs_file, 45, "survived")
    wait_until(lambda: runs(slurm_stack, runs_file), 60, "the task starting")
    faults.pause("slurmctld")  # down for the whole rest of the job (45 s) and past its end
    outcome, elapsed = timed(lambda: job.result(timeout=120))
    still_down = "slurmctld paused" in faults.active()
    faults.unpause("slurmctld")
    assert outcome == "survived"
    assert still_down, (
        "result() returned only after slurmctld came back: the result file should have ended it"
    )
    assert elapsed < 120 + MARGIN
    assert len(runs(slurm_stack, runs_file)) == 1


def test_a_frozen_login_node_cannot_hold_result_past_its_timeout(
    slurm_cluster, slurm_stack, faults, runs_file
):
    job = slurm_cluster.submit(fault_jobs.logged_nap, runs_file, 300, "never waited for")
    wait_until(lambda: runs(slurm_stack, runs_file), 60, "the task starting")
    faults.pause("login")
    outcome, elapsed = timed(lambda: job.result(timeout=20))
    faults.unpause("login")
    assert isinstance(outcome, JobTimeoutError), outcome
    assert "did not finish within 20s" in str(outcome), str(outcome)
    assert elapsed < 20 + MARGIN, f"result(timeout=20) took {elapsed:.0f} s"
    job.cancel()


# ---- a compute node fails ----------------------------------------------------------------------------


def test_node_failure_requeues_the_job_and_says_so(
    slurm_container, sdk_on_cluster, slurm_stack, faults, runs_file, request
):
    requeues = Requeues()
    with _cluster(request, slurm_container, sdk_on_cluster, requeues) as cluster:
        job = cluster.submit(fault_jobs.logged_nap, runs_file, 20, "ran twice, reported", 0)  # rerun at once
        fail_the_node_running(slurm_stack, faults, runs_file)
        wait_until(
            lambda: job.query_state() is JobState.REQUEUED or requeues.requeued,
            60,
            "the SDK seeing the requeue",
        )
        faults.release_requeued(job.job_id)  # skip Slurm's ~2 min hold of a requeued batch job
        outcome, elapsed = timed(lambda: job.result(timeout=120))
        # Slurm's own count, the truth the SDK's must match: usually 1, but a launch on the dead node before
        # slurmctld marked it down is a further requeue, with no further run of the script.
        shown = cluster.backend.transport.run(f"scontrol show job -o {job.job_id}").stdout
    restarts = int(re.search(r"\bRestarts=(\d+)", shown)[1])
    lines = runs(slurm_stack, runs_file)
    seen = [count for _, count in requeues.requeued]
    facts = (
        f"on_requeue counts {seen}, job.restarts {job.restarts}, Slurm's Restarts={restarts}, runs {lines}"
    )
    assert outcome == "ran twice, reported"
    assert restarts >= 1 and seen == sorted(set(seen)) and seen[-1:] == [restarts], facts
    assert {job_id for job_id, _ in requeues.requeued} == {job.job_id} and job.restarts == restarts, facts
    assert len(lines) == 2 and lines[1].endswith(f"restart={restarts}"), facts  # twice, and the SDK said so
    assert elapsed < 120 + MARGIN


def test_node_failure_with_requeue_off_fails_the_job(
    slurm_container, sdk_on_cluster, slurm_stack, faults, runs_file, request
):
    requeues = Requeues()
    with _cluster(request, slurm_container, sdk_on_cluster, requeues) as cluster:
        job = cluster.submit(fault_jobs.logged_nap_no_requeue, runs_file, 60, "must not finish")
        fail_the_node_running(slurm_stack, faults, runs_file)
        outcome, elapsed = timed(lambda: job.result(timeout=60))
    assert isinstance(outcome, JobFailedError), outcome
    assert "NODE_FAIL" in str(outcome), str(outcome)
    assert requeues.requeued == [] and requeues.failures == ["JobFailedError"]
    assert len(runs(slurm_stack, runs_file)) == 1
    assert elapsed < 60 + MARGIN


# ---- the login node restarts -------------------------------------------------------------------------


def test_login_restart_keeps_the_port_and_a_waiting_client_gets_its_result(
    slurm_container, sdk_on_cluster, slurm_stack, faults, gate, request
):
    """A real login node comes back where it was: so does the dev cluster's (the stack keeps the port it
    was first given), and a client waiting in ``result()`` across the restart reconnects by itself. The
    job waits for a gate opened only after the restart, so the wait surely spans it."""
    from ..fast import log_tasks

    before = slurm_stack.published_port()
    with _cluster(request, slurm_container, sdk_on_cluster) as cluster, ThreadPoolExecutor(1) as pool:
        job = cluster.submit(log_tasks.speak_until, ["waiting"], gate.path, ["released"])
        waiting = pool.submit(job.result, timeout=240)
        again = faults.restart("login")
        assert again.port == before == slurm_stack.published_port()
        assert not waiting.done()
        gate.open()
        assert waiting.result(timeout=260) == "released"
        assert cluster.submit(jobs.double, 21).result(timeout=60) == 42
    reused = slurm_stack.ensure_up(session=f"fault-test-{uuid.uuid4().hex[:6]}")
    assert reused.action == "reused" and reused.connection.port == before


def test_a_login_port_taken_meanwhile_is_said_at_once(slurm_stack, faults):
    """Login is stopped and something else takes its port: restarting login, and a new session's `up`,
    fail at once naming the port and its holder (not a login on another port, nor a wait for health)."""
    port = slurm_stack.published_port()
    slurm_stack.docker.container.stop(slurm_stack.container_names()["login"], time=1)
    try:
        with socket.socket() as holder:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind(("127.0.0.1", port))
            holder.listen()
            said = rf"keeps 127\.0\.0\.1:{port}, the port the stack was first given, but process"
            started = time.monotonic()
            with pytest.raises(StackError, match=said):
                faults.restart("login")
            with pytest.raises(StackError, match=said):
                slurm_stack.ensure_up(session=f"fault-test-{uuid.uuid4().hex[:6]}")
            assert time.monotonic() - started < 30
    finally:
        assert faults.restart("login").port == port  # the port free again: login back where it was


def fail_the_node_running(slurm_stack, faults, runs_file: str) -> None:
    """Once the task has started, its node dies (the first run's line names the host)."""
    first = wait_until(lambda: runs(slurm_stack, runs_file), 60, "the task starting")
    faults.stop_node(first[0].split()[0])


def _cluster(request, connection, sdk_path, *callbacks) -> Cluster:
    from slurm_dev_cluster.pytest_plugin import test_import_roots

    packaging = packaging_for("ssh", sdk_path, test_import_roots(request, sdk_path))
    return Cluster(backend=ssh_backend(connection), packaging=packaging, callbacks=callbacks)
