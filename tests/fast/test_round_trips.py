"""What a submission and a result check cost over SSH, counted with the transport's own counters (remote
commands, SFTP operations) against the real throwaway sshd, with a fake sbatch on the login side: one
command per submission (files, sbatch and record together), one per result check, no SFTP."""

from __future__ import annotations

import os
import string
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurm import SubmitError, as_completed, task
from slurm.records import SubmissionRecord, read_record, record_command, utc_now
from slurm.transports.host import HostTransport
from tests.fast.scripted_slurm import run_on_node, scripted_cluster, scripted_transport
from tests.fast.test_ssh_transport import SSHD

pytestmark = pytest.mark.skipif(
    not os.path.exists(SSHD), reason="needs OpenSSH server (apt-get install -y openssh-server)"
)


@task
def square(x):
    return x * x


@pytest.fixture(scope="module")
def transport(sshd, tmp_path_factory):
    """One connection for the module's clusters (each new one costs an sshd fork and a key exchange); the
    tests count the commands each cluster's calls add to its counters."""
    transport = scripted_transport(sshd, tmp_path_factory.mktemp("scripted") / "bin")
    yield transport
    transport.close()


@pytest.fixture
def cluster(sshd, tmp_path, transport):
    cluster = scripted_cluster(sshd, tmp_path, transport=transport)
    cluster.submit(square, 0)  # the first submission also makes the job root private (one more command)
    return cluster  # not closed: that would close the module's connection


def counts(transport) -> tuple[int, int]:
    return transport.commands, transport.sftp_operations


def test_a_submission_is_one_remote_command_and_leaves_its_record(cluster):
    transport = cluster.backend.transport
    before, sbatched = counts(transport), len(transport.sbatch_calls)
    job = cluster.submit(square, 7)
    assert counts(transport) == (before[0] + 1, before[1])  # files, sbatch and record: one command
    record, script = read_record(transport, cluster.resolve_job_root(), job.job_id)
    assert (record.job_id, record.job_dir, record.tasks, record.array) == (job.job_id, job.job_dir, 1, False)
    assert record.task.endswith("square") and script.startswith("#!")
    assert len(transport.sbatch_calls) == sbatched + 1


def test_a_result_check_is_one_remote_command(cluster):
    transport = cluster.backend.transport
    job = cluster.submit(square, 7)
    run_on_node(job)
    before = counts(transport)
    assert job.result(timeout=30) == 49
    assert counts(transport) == (before[0] + 1, before[1])  # found and fetched together


def test_a_three_task_map_costs_one_command_to_submit_and_one_to_collect(cluster):
    transport = cluster.backend.transport
    before = counts(transport)
    jobs = cluster.map(square, [1, 2, 3])
    assert counts(transport) == (before[0] + 1, before[1])
    record, _ = read_record(transport, cluster.resolve_job_root(), jobs.array_ids[0])
    assert (record.tasks, record.array) == (3, True)
    for index, job in enumerate(jobs):
        run_on_node(job, index)
    before = counts(transport)
    assert jobs.results(timeout=30) == [1, 4, 9]
    assert counts(transport) == (before[0] + 1, before[1])


def test_a_check_sends_back_only_the_results_not_fetched_yet(cluster, monkeypatch):
    transport = cluster.backend.transport
    jobs = cluster.map(square, range(4))
    fetched: list[list[str]] = []
    read_existing = transport.read_existing

    def fetch(paths):
        found = read_existing(paths)
        fetched.append(sorted(found))
        return found

    monkeypatch.setattr(transport, "read_existing", fetch)
    run_on_node(jobs[0], 0)
    run_on_node(jobs[2], 2)
    seen = []
    for job in as_completed([jobs], timeout=30):
        seen.append(job._index)
        if len(seen) == 2:
            run_on_node(jobs[1], 1)
            run_on_node(jobs[3], 3)
    paths = [job._result_path for job in jobs]
    assert fetched[0] == sorted([paths[0], paths[2]])
    assert sorted(p for batch in fetched for p in batch) == sorted(paths)  # each result fetched once


def test_a_check_costs_what_appeared_not_what_was_fetched_before(cluster, monkeypatch):
    """Half of a 200-task map fetched, one more result appears: the next check is one command whose request
    names the unfinished tasks as one numbered run (not 100 names) and whose answer is that one file."""
    from slurm.waiting import check_result_files

    transport = cluster.backend.transport
    jobs = list(cluster.map(square, range(200)))
    for index in range(100):
        run_on_node(jobs[index], index)
    check_result_files(jobs)
    assert [job._index for job in jobs if job._outcome is not None] == list(range(100))
    run_on_node(jobs[150], 150)
    sent: list[tuple[bytes, object]] = []
    exec_ = transport._exec

    def counted(command, timeout, consume, stdin=None, **kwargs):
        answer = exec_(command, timeout, consume, stdin, **kwargs)
        sent.append((stdin or b"", answer[1]))
        return answer

    monkeypatch.setattr(transport, "_exec", counted)
    before = counts(transport)
    check_result_files([job for job in jobs if job._outcome is None])
    assert counts(transport) == (before[0] + 1, before[1])
    [(request, files)] = sent
    assert request.count(b"\n") == 1 and b"\t100\t199\t" in request  # the 100 unfinished tasks, one line
    assert list(files) == [jobs[150]._result_path] and jobs[150].result(timeout=0) == 150 * 150


# ---- the record written by the submission's shell, whatever the names ---------------------------------

#: Names and directories with what a shell could trip over: quotes, $, backticks, spaces, backslashes.
ODD = st.text(string.ascii_letters + string.digits + " '\"$`\\;|&*?!#(){}[]<>~%é", min_size=1, max_size=20)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=ODD, root_name=ODD, job_id=st.integers(1, 10**9))
def test_the_record_command_writes_the_record_read_back_for_any_name_and_root(
    tmp_path_factory, name, root_name, job_id
):
    root = str(tmp_path_factory.mktemp("root") / root_name)
    os.makedirs(root)
    record = SubmissionRecord(
        job_id="", name=name, job_dir=f"{root}/20260101-x-00ff", submitted_at=utc_now(), task=name
    )
    os.makedirs(record.job_dir)
    with open(f"{record.job_dir}/job.sh", "w") as script:
        script.write("#!/bin/sh\n")
    command = f"id={job_id}; {record_command(root, record)}"
    subprocess.run(["sh", "-c", command], check=True)
    written, _ = read_record(HostTransport(), root, str(job_id))
    assert written.job_id == str(job_id) and written.name == name and written.task == name
    assert written.job_dir == record.job_dir


# ---- sbatch once per job directory, whatever is repeated ----------------------------------------------


def submit_again(cluster, job_dir: str) -> tuple[str, bool]:
    files = {"job.sh": (b"#!/bin/sh\n", 0o700)}
    return cluster.backend.submit_with_files(job_dir, files, f"{job_dir}/job.sh", record="")


def test_a_repeated_submission_gives_the_first_answer_without_a_second_sbatch(cluster):
    """What the retry after a lost answer does when the look-up found nothing (the first attempt's sbatch
    may still be on its way): the same command again, which finds sbatch's answer kept beside the job."""
    transport = cluster.backend.transport
    job_dir = f"{cluster.resolve_job_root()}/20260101-x-0001"
    calls = len(transport.sbatch_calls)
    first = submit_again(cluster, job_dir)
    assert submit_again(cluster, job_dir) == first
    assert len(transport.sbatch_calls) == calls + 1


def test_a_refused_sbatch_frees_the_job_for_the_next_attempt(cluster):
    transport = cluster.backend.transport
    sbatch = transport.bin_dir / "sbatch"
    working = sbatch.read_text()
    sbatch.write_text(
        "#!/bin/sh\necho 'sbatch: error: Socket timed out on send/recv operation' >&2\nexit 1\n"
    )
    job_dir = f"{cluster.resolve_job_root()}/20260101-x-0002"
    try:
        with pytest.raises(SubmitError, match="Socket timed out") as refused:
            submit_again(cluster, job_dir)
    finally:
        sbatch.write_text(working)  # the module's other tests share this sbatch
    assert refused.value.transient
    job_id, _ = submit_again(cluster, job_dir)  # the refusal left no claim: sbatch runs
    assert job_id.isdigit()
