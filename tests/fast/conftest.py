"""Fast-tier fixtures: a Cluster on a LocalCommandBackend in a temporary directory."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm import Cluster
from slurm.backends.local import LocalCommandBackend

REPO = str(Path(__file__).resolve().parents[2])


class Recorder:
    """Callback that records every event as a tuple."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_submit(self, job):
        self.events.append(("submit", job.job_id))

    def on_state_change(self, job, old, new):
        self.events.append(("state", job.job_id, old.value, new.value))

    def on_complete(self, job, result):
        self.events.append(("complete", job.job_id, result))

    def on_failure(self, job, error):
        self.events.append(("failure", job.job_id, type(error).__name__))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def local_cluster(root: Path, *, max_array_size: int = 1001, **options) -> Cluster:
    """A cluster on a LocalCommandBackend whose state and jobs live under ``root``."""
    backend = LocalCommandBackend(str(root / "state"), max_array_size=max_array_size)
    packaging = {"type": "none", "pythonpath": [REPO], "python": sys.executable}
    # A quicker cadence than a local cluster's default (0.2 s for both). Result files every 10 ms: a wait
    # sees a job's end within ~10 ms (at 0.05 s it lost ~25 ms on average, in every wait of hundreds of local
    # jobs), for a stat per job. The scheduler every 50 ms: a local query reads every unfinished job's state
    # file, which at 10 ms cost a 300-job wait ~0.8 CPU-s more. A test may set its own.
    options = {"poll_interval_seconds": 0.05, "result_poll_interval_seconds": 0.01, **options}
    return Cluster(backend, packaging, job_root=str(root / "jobs"), **options)


def cancel_unfinished(cluster: Cluster) -> None:
    backend = cluster.backend
    for job_id, state in backend.states(backend.job_ids()).items():
        if not state.is_terminal:
            backend.cancel(job_id)


@pytest.fixture
def make_cluster(tmp_path):
    """Factory for local clusters sharing one state dir; unfinished jobs are cancelled at teardown."""
    clusters: list[Cluster] = []

    def make(**options) -> Cluster:
        clusters.append(local_cluster(tmp_path, **options))
        return clusters[-1]

    yield make
    for cluster in clusters:
        cancel_unfinished(cluster)


@pytest.fixture
def cluster(make_cluster) -> Cluster:
    return make_cluster()


@pytest.fixture
def memory_tmp_path(tmp_path) -> Iterator[Path]:
    """A fresh directory in memory (tmpfs, ``/dev/shm``) where there is one, else ``tmp_path``; removed after
    the test. For tests that make thousands of small files: on this host's disk 3,000 of them cost 0.1 to 1.7
    system CPU-seconds (the journal is shared with every other process writing), on tmpfs 0.05."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK | os.X_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="slurm-sdk-test-", dir=shm))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A throwaway OpenSSH server on 127.0.0.1 (one per test module), for the SSH transport's tests."""
    from .test_ssh_transport import SSHD_

    server = SSHD_(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def transport(sshd):
    """An SSHTransport to ``sshd``, closed after the test."""
    t = sshd.transport()
    yield t
    t.close()


@pytest.fixture(scope="module")
def shared_transport(sshd):
    """One SSHTransport to ``sshd`` for a module's tests that only run commands and move files: each
    connection costs an sshd fork and a key exchange (~0.2 s). A test that drops, closes or reconnects its
    connection, or checks what a new one does, takes ``transport``; a patch goes through ``monkeypatch``,
    undone before the next test."""
    t = sshd.transport()
    yield t
    t.close()
