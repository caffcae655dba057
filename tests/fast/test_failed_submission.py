"""A submission that fails leaves nothing behind, or nothing that ``cleanup()`` keeps (LocalCommandBackend)."""

from __future__ import annotations

import os

import pytest

from slurm import SubmitError
from slurm.errors import BackendError
from slurm.node.layout import RECORDS_DIR

from . import tasks


def job_dirs(cluster) -> list[str]:
    root = cluster.resolve_job_root()
    return sorted(name for name in os.listdir(root) if name != RECORDS_DIR) if os.path.isdir(root) else []


def test_a_refused_submission_removes_its_directory(cluster):
    with pytest.raises(SubmitError, match="unknown job 999999"):
        cluster.submit(tasks.add.after("999999"), 1, 2)
    with pytest.raises(SubmitError):
        cluster.map(tasks.add.after("999999"), [1, 2, 3])
    assert job_dirs(cluster) == []
    assert cluster.submit(tasks.add, 1, 2).result(timeout=60) == 3  # the cluster is none the worse


def test_a_failed_upload_removes_what_it_wrote(cluster, monkeypatch):
    transport = cluster.backend.transport
    real = transport.write_files

    def half_then_drop(job_dir, files):
        real(job_dir, dict(list(files.items())[:1]))  # the payload lands, then the connection drops
        raise BackendError("connection dropped")

    monkeypatch.setattr(transport, "write_files", half_then_drop)
    with pytest.raises(BackendError, match="dropped"):
        cluster.submit(tasks.add, 1, 2)
    assert job_dirs(cluster) == []


def test_a_lost_answer_without_a_job_removes_its_directory(cluster, monkeypatch):
    def lost(*args, **kwargs):
        raise BackendError("sbatch's answer was lost")  # not transient: tried once, then looked up

    monkeypatch.setattr(cluster.backend, "submit", lost)
    with pytest.raises(BackendError, match="not submitted"):
        cluster.submit(tasks.add, 1, 2)
    assert job_dirs(cluster) == []


def test_when_no_one_can_tell_whether_a_job_exists_cleanup_decides_later(cluster, monkeypatch):
    """A lost answer whose look-up fails too: the directory may belong to a queued job, so it stays, without
    a record, until ``cleanup()`` finds it old and no job using it."""

    def lost(*args, **kwargs):
        raise BackendError("sbatch's answer was lost")

    def blind(script_path):
        raise BackendError("squeue does not answer either")

    monkeypatch.setattr(cluster.backend, "submit", lost)
    monkeypatch.setattr(cluster.backend, "find_submitted", blind)
    with pytest.raises(BackendError, match="does not answer"):
        cluster.submit(tasks.add, 1, 2)
    [left] = job_dirs(cluster)
    monkeypatch.undo()
    path = os.path.join(cluster.resolve_job_root(), left)
    assert cluster.cleanup("1h").unrecorded == [path]  # young: might be a submission in progress
    report = cluster.cleanup(0)
    assert report.removed_unrecorded == [path] and job_dirs(cluster) == []


def test_a_failed_removal_is_logged_and_left_to_cleanup(cluster, monkeypatch, caplog):
    import slurm.records

    def refuse(transport, root, dirs):
        raise BackendError("rm did not answer")

    monkeypatch.setattr(slurm.records, "remove_dirs", refuse)  # what Cluster uses on a failed submission
    with pytest.raises(SubmitError):
        cluster.submit(tasks.add.after("999999"), 1, 2)
    assert "could not be removed" in caplog.text and len(job_dirs(cluster)) == 1
    monkeypatch.undo()
    assert len(cluster.cleanup(0).removed_unrecorded) == 1 and job_dirs(cluster) == []
