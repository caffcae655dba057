"""Harness behaviour on the real stack: what `harness down` sees as activity from outside pytest."""

from __future__ import annotations

import pytest

from harness import activity

pytestmark = pytest.mark.integration


def test_activity_sees_the_job_users_jobs_and_ssh_connections(slurm_stack, login_transport):
    job_id = login_transport.run("sbatch --parsable --hold -J outside-pytest -o /dev/null --wrap true").stdout.strip()
    try:
        found = activity.outside_activity(slurm_stack)  # login_transport's connection is open meanwhile
        assert f"{job_id} PENDING outside-pytest" in found.jobs, found
        assert found.connections, found
        assert not found.unknown
        lines = found.findings()
        assert "job(s) of user sdk" in lines[0] and "SSH connection(s) to the login node" in lines[1]
    finally:
        login_transport.run(f"scancel {job_id}")
