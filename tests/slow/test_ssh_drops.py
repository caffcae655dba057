"""The SSH connection dropped at any byte of an upload or a result fetch (hypothesis picks the byte; the cut
is tests/ssh_cuts.py's transport hook), against the real throwaway sshd of test_ssh_transport: every run
ends with the right data, or with one transient ``SSHError`` that the SDK retries; never a tarfile, pickle
or EOFError, never a half-written job directory, never a second sbatch."""

from __future__ import annotations

import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import tenacity
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slurm import CommandError, SSHError, retrying, task
from tests import ssh_cuts
from tests.fast.scripted_slurm import run_on_node, scripted_cluster
from tests.fast.test_ssh_transport import SSHD

pytestmark = pytest.mark.skipif(
    not os.path.exists(SSHD), reason="needs OpenSSH server (apt-get install -y openssh-server)"
)
EXAMPLES = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
UPLOAD = "tar -xf -"  # the command write_files runs
FETCH = "tar -cf -"  # the command read_existing runs
#: How long a command the drop interrupted may take to clean up after itself on the server.
CLEANED_WITHIN = 30.0


def tar_size(paths: list[str]) -> int:
    """Bytes of the stream read_existing gets for ``paths`` (GNU tar, as on the server: same host)."""
    out = subprocess.run(["tar", "-cf", "-", "-P", *paths], capture_output=True, check=True).stdout
    return len(out)


def upload_size(files: dict[str, tuple[bytes, int]]) -> int:
    """Bytes of the stream write_files sends for ``files`` (tarfile, as write_files builds it)."""
    size = tarfile.RECORDSIZE  # tarfile pads to whole records: at most this much past the members
    return size + sum(
        tarfile.BLOCKSIZE + -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        for data, _ in files.values()
    )


def leftovers(directory: Path) -> list[str]:
    """Temporary names a cut upload left beside the job directories, once the server cleaned up."""
    end = time.monotonic() + CLEANED_WITHIN
    while True:
        found = sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.05)


# ---- the transport alone ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, bytes]:
    """Result files as a map leaves them: a big one (more than an SSH window and a tar record), an empty
    one, small ones; one asked for is missing."""
    directory = tmp_path_factory.mktemp("results")
    contents = [os.urandom(1_500_000), b"", os.urandom(700), os.urandom(70_000)]
    files = {}
    for index, data in enumerate(contents):
        path = str(directory / f"result-{index}.pkl")
        Path(path).write_bytes(data)
        files[path] = data
    return files


@pytest.mark.slow
@EXAMPLES
@given(offset=st.integers(0, 1_700_000), noticed=st.booleans())
@example(offset=0, noticed=True).via("the first byte")
@example(offset=512, noticed=True).via("between a tar header and its data")
@example(offset=1_500_000, noticed=True).via("inside the big file")
@example(offset=200_000, noticed=False).via("paramiko not yet aware of the drop")
@example(offset=50_196, noticed=False).via("a read's window adjustment failing (paramiko lost its bytes)")
def test_a_fetch_cut_at_any_byte_fails_transiently_and_the_next_one_is_whole(
    transport, results, monkeypatch, offset, noticed
):
    paths = [*results, str(Path(next(iter(results))).parent / "result-9.pkl")]
    assert tar_size(list(results)) < 1_700_000  # the strategy spans the whole stream, and past its end
    with monkeypatch.context() as patch:
        cut = ssh_cuts.install(
            patch,
            ssh_cuts.Cut("stdout", offset, lambda command: FETCH in command, wait_until_noticed=noticed),
        )
        try:
            first = transport.read_existing(paths)
        except SSHError as error:
            assert error.transient, error
            assert "dropped during the fetch of 5 file(s)" in str(error), error
            first = None
    assert cut.dropped_at is not None
    if first is not None:  # the cut came after the whole stream had arrived
        assert first == results and offset > tar_size(list(results)) - ssh_cuts.IN_FLIGHT
    assert transport.read_existing(paths) == results


@pytest.mark.slow
@EXAMPLES
@given(offset=st.integers(0, 1_020_000), noticed=st.booleans())
@example(offset=0, noticed=True).via("the first byte")
@example(offset=2048, noticed=True).via("the payload header")
@example(offset=500_000, noticed=False).via("paramiko not yet aware of the drop")
@example(offset=10**9, noticed=True).via("everything sent, the answer lost")
def test_an_upload_cut_at_any_byte_is_all_or_nothing_and_can_be_repeated(
    transport, tmp_path_factory, monkeypatch, offset, noticed
):
    root = tmp_path_factory.mktemp("jobs")
    target = root / "job"
    files = {
        "payload.pkl": (os.urandom(1_000_000), 0o600),
        "cluster.json": (b"{}", 0o600),
        "job.sh": (b"#!/bin/sh\n", 0o700),
    }
    assert upload_size(files) < 1_020_000  # the strategy spans the whole stream, and past its end
    with monkeypatch.context() as patch:
        cut = ssh_cuts.install(
            patch,
            ssh_cuts.Cut("stdin", offset, lambda command: UPLOAD in command, wait_until_noticed=noticed),
        )
        try:
            transport.write_files(str(target), files)
            written = True
        except SSHError as error:
            assert error.transient, error
            assert "dropped during the upload of" in str(error), error
            written = False
    assert cut.dropped_at is not None
    if offset < upload_size(files) - tarfile.RECORDSIZE:  # the drop cut the archive itself
        assert not written
    # Never half a directory: there is none yet, or a whole one (the drop hit after the rename).
    if target.exists():
        assert {p.name: p.read_bytes() for p in target.iterdir()} == {n: d for n, (d, _) in files.items()}
    else:
        assert not written
    transport.write_files(str(target), files)  # the retry: writes it, or finds it written
    assert {p.name: p.read_bytes() for p in target.iterdir()} == {n: d for n, (d, _) in files.items()}
    assert os.stat(target / "job.sh").st_mode & 0o777 == 0o700
    assert leftovers(root) == []


def test_an_upload_never_merges_into_a_directory_it_did_not_complete(transport, tmp_path):
    target = tmp_path / "job"
    target.mkdir()
    (target / "payload.pkl").write_bytes(b"half")  # as if another writer had been there
    with pytest.raises(CommandError, match="Directory not empty") as caught:  # the server said no
        transport.write_files(str(target), {"payload.pkl": (b"whole payload", 0o600)})
    assert not caught.value.transient
    assert (target / "payload.pkl").read_bytes() == b"half" and leftovers(tmp_path) == []


# ---- the SDK over SSH: submit, result, map --------------------------------------------------------------


#: sbatch as these tests need it, run by the submission's own remote command: a new id per call (from 100),
#: each call logged beside it.
@pytest.fixture
def cluster(sshd, tmp_path, monkeypatch):
    monkeypatch.setattr(retrying, "_BACKOFF", tenacity.wait_none())  # retries at once: seconds per example
    cluster = scripted_cluster(sshd, tmp_path, outage_limit_seconds=60)
    yield cluster
    cluster.close()


@task
def echo(value):
    return value


BLOB = os.urandom(1_200_000)
#: A map's items: its results come back in one stream (the collection a drop may cut).
ITEMS = [os.urandom(400_000), b"", os.urandom(300_000), os.urandom(5)]


@pytest.mark.slow
@EXAMPLES
@given(upload_at=st.integers(0, 1_300_000), fetch_at=st.integers(0, 1_300_000), noticed=st.booleans())
@example(upload_at=10**9, fetch_at=10**9, noticed=True).via("both answers lost after the whole stream")
def test_submit_and_result_survive_a_drop_at_any_byte(cluster, monkeypatch, upload_at, fetch_at, noticed):
    transport = cluster.backend.transport
    sbatch_before = len(transport.sbatch_calls)
    with monkeypatch.context() as patch:
        cut = ssh_cuts.install(
            patch,
            ssh_cuts.Cut("stdin", upload_at, lambda command: UPLOAD in command, wait_until_noticed=noticed),
        )
        job = cluster.submit(echo, BLOB)
    assert cut.dropped_at is not None
    assert len(transport.sbatch_calls) == sbatch_before + 1  # the upload was retried, sbatch never
    run_on_node(job)
    with monkeypatch.context() as patch:
        cut = ssh_cuts.install(
            patch,
            ssh_cuts.Cut("stdout", fetch_at, lambda command: FETCH in command, wait_until_noticed=noticed),
        )
        assert job.result(timeout=60) == BLOB
    assert cut.dropped_at is not None
    assert leftovers(Path(cluster.resolve_job_root())) == []


@pytest.mark.slow
@EXAMPLES
@given(upload_at=st.integers(0, 800_000), fetch_at=st.integers(0, 800_000))
def test_a_map_and_its_results_survive_a_drop_at_any_byte(cluster, monkeypatch, upload_at, fetch_at):
    transport = cluster.backend.transport
    sbatch_before = len(transport.sbatch_calls)
    with monkeypatch.context() as patch:
        cut = ssh_cuts.install(patch, ssh_cuts.Cut("stdin", upload_at, lambda command: UPLOAD in command))
        jobs = cluster.map(echo, ITEMS)
    assert cut.dropped_at is not None
    assert len(transport.sbatch_calls) == sbatch_before + 1
    for index, job in enumerate(jobs):
        run_on_node(job, index)
    jobs.wait(timeout=60)  # every result file seen (the listing is not cut): collection fetches them all
    for job in jobs:
        job._outcome = None  # the wait's own fetch: forgotten, so results() fetches them in one stream
    with monkeypatch.context() as patch:
        cut = ssh_cuts.install(patch, ssh_cuts.Cut("stdout", fetch_at, lambda command: FETCH in command))
        assert jobs.results(timeout=60) == ITEMS
    assert cut.dropped_at is not None
    assert leftovers(Path(cluster.resolve_job_root())) == []
