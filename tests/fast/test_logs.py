"""Following logs while jobs run: liveness, completeness, tail, bounded reads, pacing of state polls."""

from __future__ import annotations

from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

import slurm.logs
from slurm import JobState, JobTimeoutError
from slurm.logs import LineSplitter, follow

from . import log_tasks
from .fake_clock import FakeClock

TIMEOUT = 60


def test_follow_yields_lines_while_the_job_runs_then_ends_with_it(cluster, tmp_path):
    gate = tmp_path / "gate"
    job = cluster.submit(log_tasks.speak_until, ["one", "two"], str(gate), ["three"])
    lines = job.follow_stdout(timeout=TIMEOUT)
    assert [next(lines), next(lines)] == ["one", "two"]
    # The job is still waiting on the gate: these lines came live, not after the end.
    assert job.query_state() is JobState.RUNNING
    gate.touch()
    assert list(lines) == ["three"]
    assert job.last_state is JobState.COMPLETED  # the follow only ended once the job had


def test_follow_from_a_reattached_handle(cluster, tmp_path):
    gate = tmp_path / "gate"
    job = cluster.submit(log_tasks.speak_until, ["a"], str(gate), ["b", "c"])
    again = cluster.job(job.job_id)
    lines = again.follow_stdout(timeout=TIMEOUT)
    assert next(lines) == "a"
    gate.touch()
    assert list(lines) == ["b", "c"]


def test_tail_starts_with_the_last_lines_then_follows(cluster, tmp_path):
    gate = tmp_path / "gate"
    job = cluster.submit(log_tasks.speak_until, [f"line {i}" for i in range(20)], str(gate), ["after"])
    seen = job.follow_stdout(timeout=TIMEOUT)
    for _ in range(20):
        next(seen)  # the job has printed all 20 and now waits on the gate
    tail = job.tail(3, timeout=TIMEOUT)
    assert [next(tail) for _ in range(3)] == ["line 17", "line 18", "line 19"]
    gate.touch()
    assert list(tail) == ["after"]
    assert list(job.tail(2, follow=False)) == ["line 19", "after"]


def test_a_log_that_starts_over_is_followed_from_its_new_start(cluster, tmp_path):
    gate = tmp_path / "gate"
    job = cluster.submit(
        log_tasks.speak_then_start_over,
        [f"first run, line {i}" for i in range(10)],
        str(gate),
        ["second run"],
    )
    lines = job.follow_stdout(timeout=TIMEOUT)
    assert [next(lines) for _ in range(10)][-1] == "first run, line 9"
    gate.touch()
    assert list(lines) == ["second run"]  # not lost behind the old offset


def test_stderr_follows_too(cluster):
    job = cluster.submit(log_tasks.speak, ["err 1", "err 2"], stream="stderr")
    lines = list(job.follow_stderr(timeout=TIMEOUT))
    assert lines[0].startswith("[slurm-sdk] job")  # the runner's header goes to stderr first
    assert lines[1:] == ["err 1", "err 2"]
    assert list(job.tail(1, stream="stderr", follow=False)) == ["err 2"]


def test_a_follow_that_outlasts_its_timeout_says_so(cluster):
    cluster._watcher.clock = FakeClock()  # the job runs for real; its follow's half second passes in no time
    job = cluster.submit(log_tasks.snooze, 600)
    with pytest.raises(JobTimeoutError, match=f"job {job.job_id} did not finish within 0.5s"):
        list(job.follow_stdout(timeout=0.5))
    job.cancel()


def test_big_logs_arrive_whole_in_bounded_reads(cluster, monkeypatch):
    monkeypatch.setattr(slurm.logs, "CHUNK", 7)  # every line spans several reads
    text = [f"ünïcödé ✓ line {i} " * 3 for i in range(40)]
    job = cluster.submit(log_tasks.speak, text)
    assert list(job.follow_stdout(timeout=TIMEOUT)) == text


def test_unknown_streams_are_refused(cluster):
    job = cluster.submit(log_tasks.speak, [])
    with pytest.raises(ValueError, match="valid: stdout, stderr"):
        next(follow(job, ("stdlog",)))
    with pytest.raises(ValueError, match="valid: stdout, stderr"):
        job.tail(3, stream="stdlog", follow=False)
    with pytest.raises(ValueError, match="0 or more"):
        job.tail(-1)
    job.wait(timeout=TIMEOUT)


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300),
    st.lists(st.integers(1, 12), max_size=60),
)
def test_line_splitting_does_not_depend_on_how_bytes_are_cut(text, cuts):
    data = text.encode()
    splitter, lines, start = LineSplitter(), [], 0
    for cut in cuts:
        lines += splitter.feed(data[start : start + cut])
        start += cut
    lines += splitter.feed(data[start:]) + splitter.close()
    expected = text.split("\n")
    assert lines == (expected[:-1] if expected[-1] == "" else expected)


class _QuietCluster:
    """A cluster whose one job runs with an empty log for ``quiet`` seconds (virtual time), then ends
    without a result file; it counts scheduler queries and log reads."""

    callbacks: ClassVar[list[object]] = []

    def __init__(self, clock: FakeClock, quiet: float) -> None:
        from slurm.backends.base import JobStatus
        from slurm.watcher import Watcher

        self.poll_interval_seconds, self.result_poll_interval_seconds = 30.0, 1.0  # the SSH defaults
        self.outage_limit_seconds = 600.0
        self.queries = self.reads = 0
        cluster = self

        class Transport:
            def read_from(self, path, offset, limit):
                cluster.reads += 1
                return b"", 0

            def read_existing(self, paths):
                return {}

        class Backend:
            transport = Transport()

            def statuses(self, job_ids, reasons_for=(), background=False):
                cluster.queries += 1
                state = JobState.RUNNING if clock.now() < quiet else JobState.CANCELLED
                return {job_id: JobStatus(state) for job_id in job_ids}

        self.backend = Backend()
        self._watcher = Watcher(self, clock=clock)

    def _retry(self, operation):
        return operation()


def test_following_a_quiet_log_asks_the_scheduler_only_on_the_watchers_cadence(monkeypatch):
    from slurm.job import Job

    clock = FakeClock(0.0)
    cluster = _QuietCluster(clock, quiet=600.0)
    job = Job(cluster, "7", name="quiet", job_dir="/jobs/quiet", script="")
    assert list(follow(job)) == []
    assert job.last_state is JobState.CANCELLED
    # Ten minutes: the watcher's ramp (1 s, x1.5, up to 30 s) is ~8 queries in the first minute, then
    # ~2 a minute: about 26 in all. Log reads back off to result_poll_interval_seconds (1 s): ~620.
    assert 20 <= cluster.queries <= 30, cluster.queries
    assert cluster.reads <= 650, cluster.reads
    assert 600 <= clock.now() <= 631
