"""Run only by test_xdist_lifecycle.py in a nested ``pytest -n 4`` (the name keeps it out of normal
collection). Every test proves the stack is up by running a job, then records that it finished. With
accounting (the default) the job must also be in `sacct`: the stack was started moments ago, and
slurmctld must have reached slurmdbd from its very start (a missed first connection costs minutes)."""

from __future__ import annotations

import os

import pytest

from slurm_dev_cluster import ssh
from slurm_dev_cluster.stack import accounting_enabled

pytestmark = pytest.mark.integration


def _job_on_stack(stack, connection) -> None:
    client = ssh.connect(
        connection.host, connection.port, connection.user, connection.key_path, connection.host_key
    )
    try:
        code, out, err = ssh.run(client, "sbatch --wait --parsable -o /dev/null --wrap 'sleep 1'")
        assert code == 0, err
        if accounting_enabled():
            assert _sacct_state(client, out.strip()) == "COMPLETED"
    finally:
        client.close()
    stack.events.record("test-done", worker=os.environ.get("PYTEST_XDIST_WORKER", "-"))


@pytest.mark.parametrize("n", range(7))
def test_job_while_other_workers_run(slurm_stack, slurm_container, n):
    _job_on_stack(slurm_stack, slurm_container)


def test_worker_crash_does_not_stop_the_stack(slurm_stack, slurm_container):
    _job_on_stack(slurm_stack, slurm_container)
    os._exit(17)  # a hard crash: no pytest teardown, no unregistration


def _sacct_state(client, job_id: str, attempts: int = 300) -> str:
    """The job's state in the accounting database; slurmctld sends it asynchronously, so it may take a
    moment after `sbatch --wait` returns (seconds under load, with four workers' jobs on a stack started
    moments ago: up to 60 s here, the bound the other tests give slurmdbd). Empty when sacct never lists it."""
    script = (
        f"for _ in $(seq {attempts}); do s=$(sacct -n -X -P -j {job_id} -o State); "
        '[ "$s" = COMPLETED ] && break; sleep 0.2; done; echo "$s"'
    )
    code, out, err = ssh.run(client, script)
    assert code == 0, err
    return out.strip()
