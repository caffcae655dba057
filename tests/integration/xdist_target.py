"""Run only by test_xdist_lifecycle.py in a nested ``pytest -n 4`` (the name keeps it out of normal
collection). Every test proves the stack is up by running a job, then records that it finished."""

from __future__ import annotations

import os

import pytest

from harness import ssh

pytestmark = pytest.mark.integration


def _job_on_stack(stack, connection) -> None:
    client = ssh.connect(
        connection.host, connection.port, connection.user, connection.key_path, connection.host_key
    )
    try:
        code, _out, err = ssh.run(client, "sbatch --wait --parsable -o /dev/null --wrap 'sleep 1'")
    finally:
        client.close()
    assert code == 0, err
    stack.events.record("test-done", worker=os.environ.get("PYTEST_XDIST_WORKER", "-"))


@pytest.mark.parametrize("n", range(7))
def test_job_while_other_workers_run(slurm_stack, slurm_container, n):
    _job_on_stack(slurm_stack, slurm_container)


def test_worker_crash_does_not_stop_the_stack(slurm_stack, slurm_container):
    _job_on_stack(slurm_stack, slurm_container)
    os._exit(17)  # a hard crash: no pytest teardown, no unregistration
