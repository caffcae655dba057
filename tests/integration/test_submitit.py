"""A real client on the default stack: submitit, run from the login node as a user would, with
its whole workflow: a task, an array, a task that raises, a cancelled job it must notice (submitit asks
sacct, so this needs the default stack's accounting), checkpoint and requeue, and a client asking for
--mem=2G, four cores and the shared /scratch directory. The script it runs is submitit_client.py."""

from __future__ import annotations

import json
import uuid

import pytest

from slurm_dev_cluster.kit import PROJECT_MOUNT

from .client_sites import SUBMITIT, client_site

# The module fixture runs the client's whole workflow, its longest wait: one xdist group keeps the module on
# one worker under --dist loadgroup, so it runs once, not once on each worker that takes one of its tests.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("submitit-client")]
CLIENT = f"{PROJECT_MOUNT}/tests/integration/submitit_client.py"


@pytest.fixture(scope="module")
def submitit_site(login_transport) -> str:
    """submitit importable as sdk on every node (installed as tests/integration/client_sites.py does)."""
    return client_site(login_transport, "submitit", (SUBMITIT,), "submitit")


@pytest.fixture(scope="module")
def report(login_transport, submitit_site) -> dict:
    run_id = uuid.uuid4().hex[:8]
    folder = f"{login_transport.home()}/submitit-{run_id}"
    scratch = f"/scratch/submitit-{run_id}.txt"
    try:
        run = login_transport.run(
            f"mkdir -p {folder} && cd {folder} && PYTHONPATH={submitit_site} python3 {CLIENT} {folder} {scratch}",
            timeout=1800,
        )
    finally:
        login_transport.run(f"rm -rf {folder} {scratch}", check=False)
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_task_and_an_array(report):
    assert report["task"] == 5
    assert report["array"] == [0, 1, 4, 9]


def test_a_task_that_raises_comes_back_as_its_error(report):
    raised = report["raises"]
    assert raised.get("type") == "FailedJobError", raised
    assert "boom from a submitit task" in raised["message"] and "ValueError" in raised["message"], raised


def test_a_cancelled_job_is_detected(report):
    cancelled = report["cancelled"]
    assert cancelled.get("type") == "UncompletedJobError", cancelled
    assert cancelled["state"].startswith("CANCELLED"), cancelled  # what sacct said


def test_a_preempted_checkpointable_job_is_requeued_and_resumes(report):
    resumed = report["checkpoint"]
    assert resumed == {"starts": 2, "restart_count": "1"}, resumed


def test_memory_cores_and_shared_scratch(report):
    granted = report["resources"]
    assert granted.get("SLURM_MEM_PER_NODE") == "2048", granted
    assert granted["SLURM_CPUS_PER_TASK"] == "4", granted
    assert granted["scratch"].startswith("written on c"), granted  # read back on the login node
