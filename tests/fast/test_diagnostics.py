"""slurm.diagnostics.node_info (used by `slurm-dev-cluster smoke`) reports the job's host, id and SDK."""

import os
import socket

import slurm
from slurm import Cluster
from slurm.diagnostics import node_info


def test_node_info_reports_where_the_job_ran(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with Cluster() as cluster:
        job = cluster.submit(node_info)
        info = job.result(timeout=60)
    assert info["host"] == socket.gethostname()
    assert info["job_id"] == job.job_id
    assert info["sdk"] == os.path.dirname(slurm.__file__)
