"""The SDK's SSH connection dropped by the login node (``faults.drop_ssh``: its sessions killed) at a byte of
a 20 MB upload, a 20 MB result fetch and a map's result collection that hypothesis picks. The transport hook
of tests/ssh_cuts.py holds the stream at that byte while the drop lands. Every run ends with the right data
(the SDK retries the transfer as a whole); never a tarfile, pickle or EOFError, never a duplicate job, never
a temporary directory left behind."""

from __future__ import annotations

import hashlib
import random
import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slurm import JobState
from tests import ssh_cuts

from . import fault_jobs
from .test_faults import runs
from .waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MB = 1 << 20
SIZE = 20 * MB
#: Past the end of every stream here: the drop comes after the whole stream, before the answer.
PAST_THE_END = 10**10
#: Few examples: each moves 40 MB or more through a 2-core host's containers.
EXAMPLES = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
UPLOAD = "tar -xf -"  # write_files
FETCH = "tar -cf -"  # read_existing


def login_drops(faults):
    """The cut's drop: the login node kills the job user's SSH sessions, as a network cut would end them."""
    return lambda channel: faults.drop_ssh()


def no_temporaries(slurm_stack, job_dir: str) -> None:
    listing = f"ls -d {job_dir}.tmp-* 2>/dev/null || true"
    wait_until(
        lambda: not slurm_stack.exec("login", ["sh", "-c", listing]).split(),
        30,
        f"the interrupted uploads' temporary directories beside {job_dir} removed",
    )


def test_a_20mb_upload_dropped_at_any_byte_queues_one_job_with_the_whole_payload(
    slurm_cluster, slurm_stack, faults, monkeypatch
):
    logs: list[str] = []  # one per example, on the shared /home: a line per run of its job

    @EXAMPLES
    @given(offset=st.integers(0, SIZE + MB))
    @example(offset=PAST_THE_END).via("the whole upload sent, its answer lost")
    def upload_cut_at(offset):
        blob = random.Random(offset).randbytes(SIZE)
        log = f"/home/sdk/transfer-runs-{uuid.uuid4().hex}.log"
        logs.append(log)
        with monkeypatch.context() as patch:
            cut = ssh_cuts.install(
                patch, ssh_cuts.Cut("stdin", offset, lambda c: UPLOAD in c, drop=login_drops(faults))
            )
            job = slurm_cluster.submit(fault_jobs.logged_digest, log, blob)
        assert cut.dropped_at is not None
        assert cut.attempts >= 2 or offset >= SIZE  # a cut upload was sent again, whole
        assert job.result(timeout=120) == hashlib.sha256(blob).hexdigest()
        assert len(runs(slurm_stack, log)) == 1  # queued once: the upload was retried, sbatch was not
        no_temporaries(slurm_stack, job.job_dir)

    try:
        upload_cut_at()
    finally:
        slurm_stack.exec("login", ["rm", "-f", *logs])


def test_a_20mb_result_fetch_dropped_at_any_byte_returns_the_whole_result(slurm_cluster, faults, monkeypatch):
    job = slurm_cluster.submit(fault_jobs.seeded_bytes, (7, SIZE))
    assert job.wait(timeout=120) is JobState.COMPLETED
    expected = random.Random(7).randbytes(SIZE)

    @EXAMPLES
    @given(offset=st.integers(0, SIZE + MB))
    @example(offset=PAST_THE_END).via("the whole result sent, the exit status lost")
    def fetch_cut_at(offset):
        handle = slurm_cluster.job(job.job_id)  # a new handle: its result not fetched yet
        with monkeypatch.context() as patch:
            cut = ssh_cuts.install(
                patch, ssh_cuts.Cut("stdout", offset, lambda c: FETCH in c, drop=login_drops(faults))
            )
            assert handle.result(timeout=120) == expected
        assert cut.dropped_at is not None
        assert cut.attempts >= 2 or offset > SIZE - ssh_cuts.IN_FLIGHT  # a cut fetch was repeated

    fetch_cut_at()


def test_a_maps_result_collection_dropped_at_any_byte_returns_every_result(
    slurm_cluster, faults, monkeypatch
):
    specs = [(seed, 5 * MB) for seed in range(4)]  # 20 MB in one stream
    jobs = slurm_cluster.map(fault_jobs.seeded_bytes, specs)
    assert jobs.wait(timeout=120) == [JobState.COMPLETED] * len(specs)
    expected = [random.Random(seed).randbytes(size) for seed, size in specs]

    @EXAMPLES
    @given(offset=st.integers(0, SIZE + MB))
    @example(offset=PAST_THE_END).via("every result sent, the exit status lost")
    def collection_cut_at(offset):
        handle = slurm_cluster.job(jobs.array_ids[0])  # a new handle: no result fetched yet
        with monkeypatch.context() as patch:
            cut = ssh_cuts.install(
                patch, ssh_cuts.Cut("stdout", offset, lambda c: FETCH in c, drop=login_drops(faults))
            )
            assert handle.results(timeout=120) == expected
        assert cut.dropped_at is not None
        assert cut.attempts >= 2 or offset > SIZE - ssh_cuts.IN_FLIGHT  # a cut collection was repeated

    collection_cut_at()
