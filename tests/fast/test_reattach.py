"""Reattach from a new process, the job listing, records on disk, and cleanup (LocalCommandBackend)."""

from __future__ import annotations

import json
import os
import stat
import string
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm import Job, JobState, MappedJobs, UnknownJobError
from slurm.durations import parse_duration
from slurm.node.layout import RECORDS_DIR, record_path
from slurm.records import SubmissionRecord, _checked_dir, parse_job_id

from . import log_tasks, tasks
from .conftest import REPO
from .settle import settle

TIMEOUT = 60


def run_in_new_process(cluster, code: str) -> dict:
    """Run ``code`` in a fresh interpreter with ``cluster`` rebuilt there from the same state dir and job
    root; the code leaves what it found in ``out`` (a dict), printed back as JSON."""
    program = (
        textwrap.dedent(f"""
        import json, sys
        from slurm import Cluster
        from slurm.backends.local import LocalCommandBackend
        cluster = Cluster(LocalCommandBackend({cluster.backend.state_dir!r}),
                          {{"type": "none", "pythonpath": [{REPO!r}], "python": sys.executable}},
                          job_root={cluster.resolve_job_root()!r})
        out = {{}}
    """)
        + textwrap.dedent(code)
        + "\nprint(json.dumps(out))\n"
    )
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_new_process_gets_result_state_and_logs_by_id(cluster):
    job = cluster.submit(log_tasks.speak, ["hello from the job"])
    found = run_in_new_process(
        cluster,
        f"""
        job = cluster.job({job.job_id!r})
        out["result"] = job.result(timeout={TIMEOUT})
        out["state"] = job.query_state().value
        out["stdout"] = job.stdout()
        out["name"] = job.name
        out["script_ok"] = job.script.startswith("#!/bin/bash")
    """,
    )
    assert found == {
        "result": 1,
        "state": "COMPLETED",
        "stdout": "hello from the job\n",
        "name": "speak",
        "script_ok": True,
    }
    assert job.result(timeout=TIMEOUT) == 1  # the submitting handle agrees


def test_a_new_process_gets_map_results_and_single_tasks(cluster):
    squares = cluster.map(tasks.square, range(5))
    [array_id] = squares.array_ids
    found = run_in_new_process(
        cluster,
        f"""
        whole = cluster.job({array_id!r})
        out["kind"] = type(whole).__name__
        out["results"] = whole.results(timeout={TIMEOUT})
        out["third"] = cluster.job("{array_id}_3").result()
    """,
    )
    assert found == {"kind": "MappedJobs", "results": [0, 1, 4, 9, 16], "third": 9}


def test_a_new_process_cancels_a_running_job(cluster):
    job = cluster.submit(log_tasks.snooze, 600)
    run_in_new_process(cluster, f"cluster.job({job.job_id!r}).cancel()")
    assert job.wait(timeout=TIMEOUT) is JobState.CANCELLED


def test_a_task_that_raised_raises_again_after_reattach(cluster):
    job = cluster.submit(log_tasks.refuse, "no thanks")
    job.wait(timeout=TIMEOUT)
    with pytest.raises(log_tasks.Refused, match="no thanks"):
        cluster.job(job.job_id).result()


def test_handles_have_the_submitted_shape(cluster):
    single = cluster.submit(tasks.add, 1, 2)
    array = cluster.map(tasks.square, [1, 2])
    [array_id] = array.array_ids
    assert isinstance(cluster.job(single.job_id), Job)
    assert isinstance(cluster.job(int(single.job_id)), Job)
    assert isinstance(cluster.job(array_id), MappedJobs)
    task = cluster.job(f"{array_id}_1")
    assert (task.job_id, task.job_dir, task.log_path("stderr")) == (
        array[1].job_id,
        array[1].job_dir,
        array[1].log_path("stderr"),
    )
    array.wait(timeout=TIMEOUT)
    single.wait(timeout=TIMEOUT)


def test_unknown_malformed_and_out_of_range_ids_name_the_fix(cluster):
    single = cluster.submit(tasks.add, 1, 2)
    array = cluster.map(tasks.square, [1, 2])
    [array_id] = array.array_ids
    with pytest.raises(UnknownJobError, match=r"no SDK job 999 under .*jobs list"):
        cluster.job("999")
    for bad in ("../../etc", "12x", "", "1_2_3", "-1"):
        with pytest.raises(UnknownJobError, match="malformed job id"):
            cluster.job(bad)
    with pytest.raises(UnknownJobError, match=f"{array_id}_0 to {array_id}_1"):
        cluster.job(f"{array_id}_2")
    with pytest.raises(UnknownJobError, match="not an array job"):
        cluster.job(f"{single.job_id}_0")
    array.wait(timeout=TIMEOUT)
    single.wait(timeout=TIMEOUT)


def test_jobs_lists_name_state_and_submit_time_in_submit_order(cluster):
    before = datetime.now(UTC)
    done = cluster.submit(tasks.add, 2, 3)
    settle(cluster, done)
    sleeping = cluster.submit(log_tasks.snooze, 600)
    squares = cluster.map(tasks.square, range(3))
    settle(cluster, squares)
    infos = cluster.list_jobs()
    assert [(i.job_id, i.name, i.array, i.tasks) for i in infos] == [
        (done.job_id, "add", False, 1),
        (sleeping.job_id, "snooze", False, 1),
        (squares.array_ids[0], "square", True, 3),
    ]
    assert infos[0].state is JobState.COMPLETED and infos[0].results == 1
    assert infos[1].state in (JobState.PENDING, JobState.RUNNING) and infos[1].results == 0
    assert infos[2].state is JobState.COMPLETED and infos[2].results == 3
    assert all(before <= info.submitted_at <= datetime.now(UTC) for info in infos)
    assert infos[0].task == "tests.fast.tasks.add"
    sleeping.cancel()


def test_a_missing_job_root_lists_nothing(cluster):
    assert not os.path.exists(cluster.resolve_job_root())
    assert cluster.list_jobs() == []


def test_job_files_are_private_and_one_record_per_array(cluster):
    array = cluster.map(tasks.square, range(4))  # one record, not one per task
    array.wait(timeout=TIMEOUT)
    root = cluster.resolve_job_root()
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert os.listdir(os.path.join(root, RECORDS_DIR)) == [f"{array.array_ids[0]}.json"]
    record = record_path(root, array.array_ids[0])
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o600
    assert SubmissionRecord.from_json(open(record).read()).job_dir == array[0].job_dir


def test_a_record_write_failure_does_not_fail_the_submission(cluster, monkeypatch, caplog):
    import slurm.records

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(slurm.records, "write_record", broken)  # what Cluster writes the record with
    job = cluster.submit(tasks.add, 1, 1)
    assert job.result(timeout=TIMEOUT) == 2
    assert "cannot find it by id" in caplog.text and "disk full" in caplog.text
    with pytest.raises(UnknownJobError):
        cluster.job(job.job_id)


# --- cleanup ---------------------------------------------------------------------------------------


def test_cleanup_removes_old_ended_jobs_and_never_unfinished_ones(cluster):
    finished = cluster.submit(tasks.add, 1, 2)
    failed = cluster.submit(log_tasks.refuse, "x")
    running = cluster.submit(log_tasks.snooze, 600)
    settle(cluster, finished, failed)
    root = cluster.resolve_job_root()
    stray = os.path.join(root, "20200101-000000-stray-00000000")  # no record: e.g. its clean-up failed too
    mine = os.path.join(root, "notes")  # not a name the SDK gives: never removed
    os.makedirs(stray)
    os.makedirs(mine)

    assert cluster.cleanup("1h").removed == []  # nothing that old
    preview = cluster.cleanup(0, dry_run=True)
    assert sorted(preview.removed) == sorted([finished.job_dir, failed.job_dir])
    assert preview.removed_unrecorded == [] and preview.unrecorded == [mine]  # stray went with the 1h run
    assert os.path.isdir(finished.job_dir)  # a dry run removes nothing

    report = cluster.cleanup(timedelta(0))
    assert sorted(report.removed) == sorted([finished.job_dir, failed.job_dir])
    assert report.kept_unfinished == [running.job_dir] and report.unrecorded == [mine]
    assert not os.path.exists(finished.job_dir) and not os.path.exists(failed.job_dir)
    assert os.path.isdir(running.job_dir) and not os.path.exists(stray) and os.path.isdir(mine)
    assert os.listdir(os.path.join(cluster.resolve_job_root(), RECORDS_DIR)) == [f"{running.job_id}.json"]
    with pytest.raises(UnknownJobError, match="cleaned up"):
        cluster.job(finished.job_id)
    assert cluster.job(running.job_id).query_state() in (JobState.PENDING, JobState.RUNNING)
    running.cancel()


def test_cleanup_drops_records_of_directories_removed_by_hand(cluster):
    import shutil

    job = cluster.submit(tasks.add, 1, 2)
    job.wait(timeout=TIMEOUT)
    shutil.rmtree(job.job_dir)
    cluster.cleanup("1d")
    assert os.listdir(os.path.join(cluster.resolve_job_root(), RECORDS_DIR)) == []


@given(st.one_of(st.integers(0, 10**7), st.floats(0, 1e7, allow_nan=False)))
def test_ages_in_seconds(seconds):
    assert parse_duration(seconds) == timedelta(seconds=seconds)


@given(st.integers(0, 10**5), st.sampled_from(["s", "m", "h", "d", "w", ""]))
def test_ages_as_text(amount, unit):
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "": 1}[unit]
    assert parse_duration(f"{amount}{unit}") == timedelta(seconds=amount * factor)


@pytest.mark.parametrize("bad", ["", "soon", "7 days", "-1", "1y", -5])
def test_bad_ages_say_what_is_accepted(bad):
    with pytest.raises(ValueError, match=r"'7d'|0 or more"):
        parse_duration(bad)


# --- records ---------------------------------------------------------------------------------------

# The strings of the regex [A-Za-z0-9_.-]{1,40}, drawn as text: from_regex costs three times as much per example.
_names = st.text(alphabet=string.ascii_letters + string.digits + "_.-", min_size=1, max_size=40)


@given(
    job_id=st.integers(1, 10**9).map(str),
    name=_names,
    tasks=st.integers(1, 1001),
    array=st.booleans(),
    when=st.datetimes(timezones=st.just(UTC)),
    task=st.text(max_size=80),
    workflow=st.booleans(),
)
def test_records_survive_their_json_line(job_id, name, tasks, array, when, task, workflow):
    record = SubmissionRecord(
        job_id=job_id,
        name=name,
        job_dir=f"/root/jobs/{name}",
        submitted_at=when,
        array=array,
        tasks=tasks,
        task=task,
        workflow=workflow,
    )
    line = record.to_json()
    assert "\n" not in line and line.startswith("{")  # the listing splits on lines and spots "{"
    assert SubmissionRecord.from_json(line) == record


@given(st.integers(0, 10**9), st.one_of(st.none(), st.integers(0, 10**6)))
def test_job_ids_parse_back(base, index):
    text = str(base) if index is None else f"{base}_{index}"
    assert parse_job_id(text) == (str(base), index)


@pytest.mark.parametrize(
    "job_dir",
    [
        "/elsewhere/x",
        "/root/jobs",
        "/root/jobs/../etc",
        "/root/jobs/a/b",
        "/root/jobs/records",
        "/root/jobs/..",
    ],
)
def test_records_never_point_outside_the_job_root(job_dir):
    with pytest.raises(ValueError, match="not a directory of the SDK"):
        _checked_dir("/root/jobs", job_dir)


def test_a_damaged_record_is_skipped_and_its_directory_goes_only_once_its_job_ended(cluster, caplog):
    ended = cluster.submit(tasks.add, 1, 2)
    running = cluster.submit(log_tasks.snooze, 600)
    settle(cluster, ended)
    for job in (ended, running):
        with open(record_path(cluster.resolve_job_root(), job.job_id), "w") as handle:
            handle.write('{"job_id": "oops"\n')
    assert cluster.list_jobs() == [] and "damaged record" in caplog.text
    young = cluster.cleanup("1h")
    assert young.removed_unrecorded == [] and sorted(young.unrecorded) == sorted(
        [ended.job_dir, running.job_dir]
    )
    report = cluster.cleanup(0)  # both old enough; the scheduler still has the running one
    assert report.removed_unrecorded == [ended.job_dir] and report.unrecorded == [running.job_dir]
    assert not os.path.exists(ended.job_dir) and os.path.isdir(running.job_dir)
    running.cancel()
