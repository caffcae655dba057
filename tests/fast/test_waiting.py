"""The waiting engine (slurm.waiting) on a fake clock: hypothesis picks when jobs end (or that they never
do), the cadence knobs and the timeouts; hours of waiting run in milliseconds, and every scheduler query
and result-file listing is on record with the virtual time it was made at.

Properties, for the blocking waits and the asyncio awaiters alike: every wait ends by its deadline and says
why; no job is asked about more often than the watcher's cadence allows; one query serves every waiter on
a cluster, however many threads (or awaits on one event loop) wait."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Awaitable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slurm import BackendError, JobFailedError, JobState, JobTimeoutError
from slurm.awaiting import as_completed_async, wait_async
from slurm.backends.base import JobStatus
from slurm.job import Job
from slurm.node.outcome import dump_result
from slurm.waiting import FIRST_POLL, POLL_BACKOFF, as_completed, wait_all
from slurm.watcher import Watcher

from .fake_clock import FakeClock

NEVER = float("inf")


@dataclass
class Plan:
    """When (virtual seconds after the start) a job ends, and whether it leaves a result file."""

    ends_at: float
    result: bool = True


@dataclass
class FakeCluster:
    """What the engine uses of a Cluster: a backend whose transport lists result files and whose scheduler
    answers from ``plans`` at the clock's time, recording every call (time, job ids)."""

    clock: Any
    plans: dict[str, Plan]
    poll_interval_seconds: float = 30.0
    result_poll_interval_seconds: float = 1.0
    outage_limit_seconds: float = 600.0
    callbacks: list[Any] = field(default_factory=list)
    queries: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    listings: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.backend, self.start = _Backend(self), self.clock.now()
        self._watcher = Watcher(self, clock=self.clock)  # type: ignore[arg-type]
        self._lock = threading.Lock()

    def ended(self, job_id: str) -> bool:
        return self.clock.now() - self.start >= self.plans[job_id].ends_at

    def _retry(self, operation: Any) -> Any:
        return operation()

    def jobs(self) -> list[Job]:
        jobs = [
            Job(self, job_id, name="f", job_dir=f"/jobs/{job_id}", script="")  # type: ignore[arg-type]
            for job_id in self.plans
        ]
        self._watcher.add(jobs)
        return jobs


class _Transport:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def _job_of(self, path: str) -> str:
        return path.split("/")[2]

    def existing(self, paths: list[str]) -> set[str]:
        cluster = self.cluster
        with cluster._lock:
            cluster.listings.append((cluster.clock.now(), tuple(self._job_of(p) for p in paths)))
        return {p for p in paths if cluster.ended(self._job_of(p)) and cluster.plans[self._job_of(p)].result}

    def read_existing(self, paths: list[str]) -> dict[str, bytes]:
        return {p: dump_result(self._job_of(p)) for p in self.existing(paths)}

    def exists(self, path: str) -> bool:
        return False  # no log files: a job without a result "wrote nothing to stderr"


class _Backend:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster, self.transport = cluster, _Transport(cluster)

    def statuses(self, job_ids: list[str], reasons_for=(), background=False) -> dict[str, JobStatus]:
        cluster = self.cluster
        with cluster._lock:
            cluster.queries.append((cluster.clock.now(), tuple(job_ids)))
        return {
            job_id: JobStatus(
                (JobState.COMPLETED if cluster.plans[job_id].result else JobState.CANCELLED)
                if cluster.ended(job_id)
                else JobState.RUNNING
            )
            for job_id in job_ids
        }


ends = st.one_of(st.just(NEVER), st.floats(0, 200))
plans = st.lists(st.builds(Plan, ends, st.booleans()), min_size=1, max_size=6)
intervals = st.tuples(st.floats(0.5, 60), st.floats(0.2, 5))  # poll_interval_seconds, result_poll_...
timeouts = st.one_of(st.none(), st.floats(0, 150))
#: Ends a wait whose jobs never end (the scheduler always answers here, so nothing else would).
LONG = 250.0


class _RoundsInline(ThreadPoolExecutor):
    """An event loop's default executor that runs the asyncio driver's rounds at once, in the loop's own
    thread. On the fake clock a round takes no virtual time wherever it runs, and the driver awaits each
    round before it reads the jobs, so what the properties check is the same; the hop to a worker thread
    and back (two thread wake-ups per round, several hundred rounds per example) cost ~50 ms an example
    on a busy host."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to the awaiting driver, as a worker thread would
            future.set_exception(error)
        return future


def run_driver(awaitable: Awaitable[Any]) -> Any:
    """``asyncio.run`` with the driver's rounds run inline (``_RoundsInline``)."""

    async def main() -> Any:
        asyncio.get_running_loop().set_default_executor(_RoundsInline(max_workers=1))
        return await awaitable

    return asyncio.run(main())


def cluster_of(planned: list[Plan], poll: float, result_poll: float, clock: Any = None) -> FakeCluster:
    return FakeCluster(
        clock or FakeClock(),
        {str(100 + i): plan for i, plan in enumerate(planned)},
        poll_interval_seconds=poll,
        result_poll_interval_seconds=result_poll,
    )


@settings(max_examples=60)
@given(plans, intervals, timeouts)
def test_every_wait_ends_by_its_deadline_and_says_why(planned, knobs, timeout):
    if timeout is None and any(plan.ends_at == NEVER for plan in planned):
        timeout = LONG
    cluster = cluster_of(planned, *knobs)
    jobs = cluster.jobs()
    try:
        wait_all(jobs, timeout)
    except JobTimeoutError as error:
        _check_timed_out(cluster, jobs, timeout, error)
    else:
        _check_ended(cluster, jobs, timeout)


@settings(max_examples=20)  # each example runs the driver's rounds in the executor: ~0.2 s
@given(plans, intervals, timeouts)
def test_every_async_wait_ends_by_its_deadline_and_says_why(planned, knobs, timeout):
    """The asyncio driver on the same fake clock: ``wait_async`` ends as ``wait_all`` does."""
    if timeout is None and any(plan.ends_at == NEVER for plan in planned):
        timeout = LONG
    cluster = cluster_of(planned, *knobs)
    jobs = cluster.jobs()
    try:
        run_driver(wait_async(jobs, timeout))
    except JobTimeoutError as error:
        _check_timed_out(cluster, jobs, timeout, error)
    else:
        _check_ended(cluster, jobs, timeout)


def _check_timed_out(
    cluster: FakeCluster, jobs: list[Job], timeout: float | None, error: JobTimeoutError
) -> None:
    """A wait that timed out did so at its deadline, naming the first unfinished job and what is known."""
    assert timeout is not None and cluster.clock.elapsed == pytest.approx(timeout)
    unfinished = [job for job in jobs if not job.last_state.is_terminal]
    assert unfinished and error.job_id == unfinished[0].job_id
    assert error.state == unfinished[0].last_state.value in ("PENDING", "RUNNING")
    assert f"within {timeout:g}s" in str(error)
    assert "still RUNNING as of" in error.detail or "not reported by the scheduler yet" in error.detail
    _check_states(cluster, jobs)


def _check_ended(cluster: FakeCluster, jobs: list[Job], timeout: float | None) -> None:
    """A wait that returned did so once every job had ended, by its deadline, within a pause of the end."""
    last_end = max(plan.ends_at for plan in cluster.plans.values())
    assert all(job.last_state.is_terminal for job in jobs)
    assert timeout is None or cluster.clock.elapsed <= timeout + 1e-9
    # A job's end is seen within one pause of the slower cadence after it happened.
    assert cluster.clock.elapsed <= last_end + cluster.poll_interval_seconds + 1e-6
    _check_states(cluster, jobs)


def _check_states(cluster: FakeCluster, jobs: list[Job]) -> None:
    """Every state a job was seen in is the one its plan gives it at the end."""
    for job, plan in zip(jobs, cluster.plans.values(), strict=True):
        if job.last_state.is_terminal:
            assert job.last_state is (JobState.COMPLETED if plan.result else JobState.CANCELLED)
            assert cluster.ended(job.job_id)


def _ramp(first: float, backoff: float, cap: float, count: int = 2000) -> list[float]:
    """The watcher's pauses between queries after a submission: first, xbackoff, up to cap."""
    pauses, pause = [], first
    while len(pauses) < count:
        pauses.append(pause)
        pause = min(pause * backoff, max(cap, first))
    return pauses


@settings(max_examples=60)
@given(plans, intervals, timeouts)
def test_no_job_is_asked_about_more_often_than_the_cadence_allows(planned, knobs, timeout):
    cluster = cluster_of(planned, *knobs)
    jobs = cluster.jobs()
    try:
        for _ in as_completed(jobs, timeout if timeout is not None else LONG):
            pass
    except JobTimeoutError:
        pass
    _check_cadence(cluster, jobs)


@settings(max_examples=20)  # each example runs the driver's rounds in the executor: ~0.2 s
@given(plans, intervals, timeouts)
def test_no_job_awaited_is_asked_about_more_often_than_the_cadence_allows(planned, knobs, timeout):
    cluster = cluster_of(planned, *knobs)
    jobs = cluster.jobs()

    async def each_as_it_ends() -> None:
        async for _ in as_completed_async(jobs, timeout if timeout is not None else LONG):
            pass

    try:
        run_driver(each_as_it_ends())
    except JobTimeoutError:
        pass
    _check_cadence(cluster, jobs)


def _check_cadence(cluster: FakeCluster, jobs: list[Job]) -> None:
    """Queries about a job follow the watcher's ramp; result-file listings the waits' own ramp."""
    first = min(FIRST_POLL, cluster.poll_interval_seconds)
    ramp = _ramp(first, POLL_BACKOFF, cluster.poll_interval_seconds)
    for job in jobs:
        asked = [at for at, ids in cluster.queries if job.job_id in ids]
        assert not asked or asked[0] - cluster.start >= first - 1e-9  # the first query waits first_poll
        for i, (before, after) in enumerate(itertools.pairwise(asked)):
            assert after - before >= ramp[i] - 1e-6, (i, asked)
        # Result files: the pause between two listings grows from 50 ms to result_poll_interval_seconds,
        # and is cut short only when the watcher's query comes sooner (one extra listing per query).
        listed = [at for at, ids in cluster.listings if job.job_id in ids]
        pauses = [0.05 * 1.25**i for i in range(40) if 0.05 * 1.25**i < cluster.result_poll_interval_seconds]
        ramp_up = sum(pauses)
        floor = len(pauses) + max(0.0, cluster.clock.elapsed - ramp_up) / cluster.result_poll_interval_seconds
        assert len(listed) <= floor + len(cluster.queries) + 2, (len(listed), floor, len(cluster.queries))
    assert not cluster.queries or all(
        set(ids) <= set(cluster.plans) and len(ids) == len(set(ids)) for _, ids in cluster.queries
    )


class SharedClock:
    """Virtual time for several threads: ``sleep_until`` blocks until every thread taking part is asleep, then
    time jumps to the earliest wake-up (a discrete-event clock), so threads interleave as they would in
    real time, deterministically in virtual time."""

    def __init__(self, threads: int) -> None:
        self._now, self._active = 1000.0, threads
        self._wakes: dict[int, float] = {}
        self._changed = threading.Condition()

    def now(self) -> float:
        with self._changed:
            return self._now

    def sleep_until(self, moment: float) -> None:
        me = threading.get_ident()
        with self._changed:
            self._wakes[me] = max(self._now, moment)
            self._advance_if_all_asleep()
            while me in self._wakes:
                self._changed.wait()

    def leave(self) -> None:
        with self._changed:
            self._active -= 1
            self._advance_if_all_asleep()

    def _advance_if_all_asleep(self) -> None:
        if self._wakes and len(self._wakes) >= self._active:
            self._now = max(self._now, min(self._wakes.values()))
            for thread, wake in list(self._wakes.items()):
                if wake <= self._now:
                    del self._wakes[thread]
            self._changed.notify_all()


@settings(max_examples=25)
@given(plans, st.integers(2, 6), st.floats(1, 60))
def test_one_query_serves_every_waiter_on_a_cluster(planned, waiters, poll):
    clock = SharedClock(waiters)
    cluster = cluster_of(planned, poll, 1.0, clock)
    jobs = cluster.jobs()
    errors: list[BaseException] = []

    def wait(share: list[Job]) -> None:
        try:
            wait_all(share, LONG)
        except JobTimeoutError:
            pass
        except BaseException as error:
            errors.append(error)
        finally:
            clock.leave()

    # Each thread waits on its own share of the jobs (some on all of them), all at once.
    shares = [jobs[i % len(jobs) :] or jobs for i in range(waiters)]
    threads = [threading.Thread(target=wait, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and not any(thread.is_alive() for thread in threads)
    _check_one_query_serves_all(cluster, clock.now() - cluster.start, poll)


@settings(max_examples=12)  # each example runs the driver's rounds in the executor: ~0.2 s
@given(plans, st.integers(2, 6), st.floats(1, 60))
def test_one_query_serves_every_await_on_a_cluster(planned, waiters, poll):
    """Awaits on one event loop share the driver's rounds: queries as for a single waiter."""
    cluster = cluster_of(planned, poll, 1.0)
    jobs = cluster.jobs()

    async def await_all() -> None:
        # Each await has its own share of the jobs (some all of them), a mix of both awaiters.
        shares = [jobs[i % len(jobs) :] or jobs for i in range(waiters)]
        awaits = [wait_async(share, LONG) if i % 2 else _drain(share) for i, share in enumerate(shares)]
        results = await asyncio.gather(*awaits, return_exceptions=True)
        assert all(result is None or isinstance(result, JobTimeoutError) for result in results), results

    run_driver(await_all())
    _check_one_query_serves_all(cluster, cluster.clock.elapsed, poll)


async def _drain(jobs: list[Job]) -> None:
    async for _ in as_completed_async(jobs, LONG):
        pass


def _check_one_query_serves_all(cluster: FakeCluster, elapsed: float, poll: float) -> None:
    # One query at a time, never two within first_poll, each about every job of the cluster that has not
    # ended (whichever thread's share it is in), and never again about one it saw end.
    times = [at for at, _ in cluster.queries]
    assert all(b - a >= min(FIRST_POLL, poll) - 1e-6 for a, b in itertools.pairwise(times))
    seen_ended: set[str] = set()
    for at, ids in cluster.queries:
        running = {job_id for job_id, plan in cluster.plans.items() if plan.ends_at > at - cluster.start}
        assert running <= set(ids) and not seen_ended & set(ids), (at, ids)
        seen_ended |= {job_id for job_id in ids if cluster.plans[job_id].ends_at <= at - cluster.start}
    # As many queries as a single waiter would make: the ramp's count over the time waited, not x waiters.
    ramp, spent, allowed = _ramp(min(FIRST_POLL, poll), POLL_BACKOFF, poll), 0.0, 0
    while spent <= elapsed:
        spent, allowed = spent + ramp[min(allowed, len(ramp) - 1)], allowed + 1
    assert len(cluster.queries) <= allowed


class LockProbe:
    """A callback that records, for every event, whether another thread could take the job's and the
    watcher's locks at that moment (it could not if this thread held them), and what it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, bool]] = []
        self.values: dict[str, Any] = {}

    def _free(self, job: Job) -> bool:
        taken: list[bool] = []

        def probe() -> None:
            for lock in (job._lock, job.cluster._watcher._lock):
                got = lock.acquire(timeout=5)
                taken.append(got)
                if got:
                    lock.release()

        thread = threading.Thread(target=probe)
        thread.start()
        thread.join()
        return taken == [True, True]

    def on_state_change(self, job: Job, old: JobState, new: JobState) -> None:
        self.events.append((new.value, job.job_id, self._free(job)))

    def on_complete(self, job: Job, result: Any) -> None:
        self.events.append(("complete", job.job_id, self._free(job)))
        self.values[job.job_id] = result

    def on_failure(self, job: Job, error: BaseException) -> None:
        self.events.append(("failure", job.job_id, self._free(job)))
        self.values[job.job_id] = error


def test_callbacks_run_outside_every_lock_and_get_the_result_unpickled_once(monkeypatch):
    from slurm.serialization import Outcome

    unpickled: list[str] = []
    value = Outcome.value
    monkeypatch.setattr(
        Outcome, "value", lambda self, job_id: unpickled.append(job_id) or value(self, job_id)
    )
    # 100 ends with a result file (seen by a listing), 101 without one (seen by a scheduler query).
    cluster = cluster_of([Plan(3.0, True), Plan(5.0, False)], 30.0, 1.0)
    probe = LockProbe()
    cluster.callbacks.append(probe)
    first, second = cluster.jobs()
    wait_all([first, second], 60)
    assert [(event, job_id) for event, job_id, _ in probe.events] == [
        ("RUNNING", "100"),  # the first query, 1 s in
        ("RUNNING", "101"),
        ("COMPLETED", "100"),  # its result file, 3 s in
        ("complete", "100"),
        ("CANCELLED", "101"),  # the query after 5 s
        ("failure", "101"),
    ]
    assert all(free for _, _, free in probe.events)
    assert first.result() is probe.values["100"] == "100"
    assert unpickled == ["100"]  # once, for the callback and result() alike
    with pytest.raises(type(probe.values["101"]), match="ended CANCELLED without a result"):
        second.result()


class _NeverStarts(_Backend):
    """squeue says every job pends for a reason that never clears; each scancel records the id it was
    given and whether another thread could take the locks of every job and of the watcher meanwhile."""

    def __init__(self, cluster: FakeCluster, jobs: list[Job], fails: bool = False) -> None:
        super().__init__(cluster)
        self.jobs, self.fails = jobs, fails
        self.cancels: list[tuple[str, bool]] = []

    def statuses(self, job_ids: list[str], reasons_for=(), background=False) -> dict[str, JobStatus]:
        return {job_id: JobStatus(JobState.PENDING, "PartitionTimeLimit") for job_id in job_ids}

    def cancel(self, job_id: str) -> None:
        locks = [job._lock for job in self.jobs] + [self.cluster._watcher._lock]
        self.cancels.append((job_id, all(_free_elsewhere(lock) for lock in locks)))
        if self.fails:
            raise BackendError("scancel: error: Kill job error on job id 100: Access/permission denied")


def _free_elsewhere(lock: Any) -> bool:
    """Whether another thread can take ``lock`` now (it cannot while this thread holds it)."""
    got: list[bool] = []

    def take() -> None:
        got.append(lock.acquire(timeout=5))
        if got[0]:
            lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join()
    return got == [True]


@pytest.mark.parametrize("fails", [False, True])
def test_a_job_that_can_never_start_is_cancelled_once_per_array_with_no_lock_held(fails):
    cluster = cluster_of([Plan(NEVER), Plan(NEVER)], 30.0, 1.0)
    cluster.plans = {"100_0": cluster.plans["100"], "100_1": cluster.plans["101"]}
    jobs = cluster.jobs()
    cluster.backend = backend = _NeverStarts(cluster, jobs, fails)
    wait_all(jobs, LONG)  # the first query, 1 s in, finds both can never start
    assert cluster.clock.elapsed == pytest.approx(FIRST_POLL)
    assert [job.last_state for job in jobs] == [JobState.CANCELLED] * 2
    assert backend.cancels == [("100", True)]  # one scancel for the array, sent with every lock free
    for job in jobs:
        with pytest.raises(
            JobFailedError, match="PartitionTimeLimit, which no amount of waiting clears"
        ) as caught:
            job.result()
        notes = getattr(caught.value, "__notes__", [])
        assert any("Access/permission denied" in note for note in notes) is fails


def test_a_job_that_ends_while_the_caller_handles_another_is_still_yielded():
    # 100 ends by its result file 3 s in; 101 never would, but ends (as another thread's query would see it)
    # while the caller's loop body handles 100.
    cluster = cluster_of([Plan(3.0), Plan(NEVER)], 30.0, 1.0)
    first, second = cluster.jobs()
    yielded, at = [], []
    for job in as_completed([first, second], 60):
        yielded.append(job)
        at.append(cluster.clock.elapsed)
        if job is first:
            second._observe(JobStatus(JobState.CANCELLED))
    assert yielded == [first, second]
    assert 3.0 <= at[0] == at[1]  # the second without a pause first
