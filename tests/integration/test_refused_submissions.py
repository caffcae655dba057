"""Submissions sbatch refuses leave nothing behind on the cluster: no job directory, no record."""

from __future__ import annotations

import uuid

import pytest

from slurm import Cluster, SubmitError

from . import jobs

pytestmark = pytest.mark.integration

REFUSED = {
    "gpus=99": lambda: jobs.double.options(gpus=99),
    "partition nope": lambda: jobs.double.options(partition="nope"),
    "after 999999": lambda: jobs.double.after("999999"),
}


@pytest.fixture
def private_root(slurm_cluster):
    """The session's cluster with a job root of its own, so what is left in it is this test's doing."""
    root = f"~/.slurm-sdk/refused-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(slurm_cluster.backend, slurm_cluster.packaging, job_root=root)
    yield cluster
    cluster.backend.transport.run(f"rm -rf {cluster.resolve_job_root()}")


def left_behind(cluster) -> list[str]:
    root = cluster.resolve_job_root()
    out = cluster.backend.transport.run(f"cd {root} && find . -mindepth 1 ! -path ./records").stdout
    return sorted(out.split())


@pytest.mark.parametrize("how", sorted(REFUSED))
def test_a_refused_submission_leaves_nothing(private_root, how):
    with pytest.raises(SubmitError):
        private_root.submit(REFUSED[how](), 21)
    with pytest.raises(SubmitError):
        private_root.map(REFUSED[how](), [1, 2, 3])
    assert left_behind(private_root) == []
    report = private_root.cleanup(0)
    assert (report.removed, report.removed_unrecorded, report.unrecorded) == ([], [], [])


def test_cleanup_removes_old_unrecorded_directories_but_not_a_queued_jobs(private_root):
    """A directory without a record goes once old, unless squeue still has a job running its script (a
    submission whose record could not be written)."""
    cluster = private_root
    running = cluster.submit(jobs.sleep_then_return, 300)
    root = cluster.resolve_job_root()
    stray = f"{root}/20200101-000000-stray-00000000"  # a failed submission whose removal failed too
    cluster.backend.transport.run(f"mkdir -p {stray} && rm {root}/records/{running.job_id}.json")
    try:
        report = cluster.cleanup(0)
        assert report.removed_unrecorded == [stray] and report.unrecorded == [running.job_dir]
        assert left_behind(cluster)[0].startswith(f"./{running.job_dir.rsplit('/', 1)[1]}")
    finally:
        running.cancel()
