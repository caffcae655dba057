"""Harness behaviour on the real stack: what `harness down` sees as activity from outside pytest."""

from __future__ import annotations

import pytest

from slurm_dev_cluster import activity
from slurm_dev_cluster.stack import accounting_enabled

pytestmark = pytest.mark.integration


def test_activity_sees_the_job_users_jobs_and_ssh_connections(slurm_stack, login_transport):
    job_id = login_transport.run(
        "sbatch --parsable --hold -J outside-pytest -o /dev/null --wrap true"
    ).stdout.strip()
    try:
        found = activity.outside_activity(slurm_stack)  # login_transport's connection is open meanwhile
        assert f"{job_id} PENDING outside-pytest" in found.jobs, found
        assert found.connections, found
        assert not found.unknown
        lines = found.findings()
        assert "job(s) of user sdk" in lines[0] and "SSH connection(s) to the login node" in lines[1]
    finally:
        login_transport.run(f"scancel {job_id}")


def _controller_settings(slurm_stack) -> dict[str, str]:
    shown = slurm_stack.exec("slurmctld", ["scontrol", "show", "config"])
    pairs = (line.split(" = ", 1) for line in shown.splitlines() if " = " in line)
    return {key.strip(): value.strip() for key, value in pairs}


def test_cluster_tests_run_on_the_dev_defaults_unless_they_ask(slurm_stack):
    settings = _controller_settings(slurm_stack)
    assert settings["DependencyParameters"] == "kill_invalid_depend"
    assert settings["MinJobAge"] == "120 sec"
    assert "sched_interval=10" in settings["SchedulerParameters"].split(",")


@pytest.mark.slurm_defaults("production")
def test_the_production_marker_runs_the_test_on_slurms_stock_defaults(slurm_stack, login_transport):
    settings = _controller_settings(slurm_stack)
    assert settings["DependencyParameters"] == "(null)" and settings["MinJobAge"] == "300 sec"
    assert "sched_interval" not in settings["SchedulerParameters"]  # Slurm's stock 60 s
    # Accounting stays as the stack has it (switching it off live is fatal with GPU TRES).
    expected = "accounting_storage/slurmdbd" if accounting_enabled() else "accounting_storage/none"
    assert settings["AccountingStorageType"] == expected
    # Every node reads the same include: the login node's client commands see it too.
    assert "MinJobAge=300" in login_transport.run("cat /etc/slurm/faults.conf").stdout
