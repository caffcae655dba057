"""A failing integration test carries the tail of the compose logs and the Slurm daemon logs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from slurm_dev_cluster.stack import REPO_ROOT

pytestmark = pytest.mark.integration
TARGET = Path(__file__).with_name("failing_target.py")


def test_failed_test_report_has_compose_and_daemon_logs(slurm_stack):
    # Same project and state as this session: the nested run reuses the running stack and, not having
    # started it, leaves it up.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(SLURM_SDK_PROJECT=slurm_stack.project, SLURM_SDK_STATE_HOME=str(slurm_stack.state_dir.parent))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q", str(TARGET)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "1 failed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    assert "compose logs (last 50 lines per service)" in run.stdout
    assert re.search(r"^login-1\s+\| ", run.stdout, re.M)  # compose log lines, prefixed by service
    assert "slurm daemon logs" in run.stdout
    assert (
        "slurmctld:/var/log/slurm/slurmctld.log" in run.stdout
        and "c2:/var/log/slurm/slurmd.log" in run.stdout
    )
    assert slurm_stack.status().up, "the nested session stopped a stack it did not start"
