"""The wheel path still works end to end: build here, unpack beside a venv on the cluster, run from it."""

from __future__ import annotations

import platform
import re

import pytest

from slurm_dev_cluster.stack import SDK_MOUNT

pytestmark = [pytest.mark.integration, pytest.mark.wheel_packaging, pytest.mark.slow]


def test_job_runs_the_sdk_from_the_uploaded_wheel(slurm_cluster, cluster_mode, login_transport):
    assert cluster_mode == "wheel"

    # The wheel holds only the SDK: test code (tests/) is not importable on the nodes in wheel mode, and
    # by-value code only loads on this process's Python minor version, which the nodes need not run. So
    # the task is a stdlib function, and the evidence is what the job's runner says about itself: its
    # stderr header names the file its `slurm` package was imported from, in the process that ran the task.
    job = slurm_cluster.submit(platform.python_version)
    node_python = job.result(timeout=600)
    header = re.search(r"\[slurm-sdk\] job .* Python (\S+) .*, slurm from (\S+), job dir", job.stderr())
    assert header, job.stderr()
    assert header[1] == node_python
    slurm_file = header[2]
    packaging = slurm_cluster.packaging  # the venv (dependencies) and the wheel's layer, on the shared home
    assert slurm_file.startswith(packaging.layer + "/"), slurm_file
    assert not slurm_file.startswith(SDK_MOUNT)
    assert login_transport.exists(packaging.env + "/.ready") and login_transport.exists(
        packaging.layer + "/.ready"
    )
