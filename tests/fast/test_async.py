"""Awaiting jobs: ``await job``, ``result_async``, ``as_completed`` (sync and async), on the shared watcher."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from slurm import BackendError, JobFailedError, JobTimeoutError, as_completed, as_completed_async, wait_async
from slurm import waiting as waiting_module
from slurm.awaiting import _hubs
from tests.fast import log_tasks, tasks
from tests.fast.fake_clock import FakeClock


class CallCounter:
    """Wraps a cluster's scheduler query and result-file listing; records what each call covered."""

    def __init__(self, cluster, awaited, monkeypatch) -> None:
        self.awaited = awaited
        self.queries: list[tuple[set[str], set[str]]] = []  # (ids asked, awaited ids unfinished then)
        self.listings: list[tuple[set[str], set[str]]] = []  # (result files listed, of awaited unfinished)
        self.threads: list[int] = []
        backend = cluster.backend
        statuses, check = backend.statuses, waiting_module.check_result_files

        def counted_statuses(job_ids, **options):
            unfinished = {job.job_id for job in self.awaited() if not job.last_state.is_terminal}
            self.queries.append((set(job_ids), unfinished))
            self.threads.append(threading.active_count())
            return statuses(job_ids, **options)

        def counted_check(jobs):  # a result check: one fetch of the result files that exist
            unfinished = {job._result_path for job in self.awaited() if not job.last_state.is_terminal}
            self.listings.append(({job._result_path for job in jobs}, unfinished))
            self.threads.append(threading.active_count())
            return check(jobs)

        backend.statuses = counted_statuses
        monkeypatch.setattr(waiting_module, "check_result_files", counted_check)


def test_many_awaits_share_one_batched_query_per_poll(cluster, monkeypatch, tmp_path):
    """300 awaited jobs (all cancelled by Slurm's rule for a failed afterok parent, so no process runs
    for them) and 6 that run: every scheduler query covers every awaited job still unfinished, one
    listing per round checks all result files, and no thread is started per await. The jobs wait behind a
    gate that the test opens once the watcher has asked the scheduler, so at least one query finds all
    306 unfinished (a nap guessed to outlast the submissions costs its length, and may end first)."""
    threads_before = threading.active_count()
    opened = tmp_path / "gate-open"
    gate = cluster.submit(tasks.wait_for_file, str(opened))
    doomed_parent = cluster.submit(tasks.fail.after(gate), "no")
    runs = cluster.map(tasks.square.after(gate), range(6))
    doomed = cluster.map(tasks.square.after(doomed_parent), range(300))
    awaited = [*runs, *doomed]
    counter = CallCounter(cluster, lambda: awaited, monkeypatch)

    async def open_the_gate_once_asked():
        # Bounded: with no query at all the gate opens anyway, and `assert counter.queries` says so.
        for _ in range(1000):
            if counter.queries:
                break
            await asyncio.sleep(0.01)
        opened.touch()

    async def main():
        opener = asyncio.create_task(open_the_gate_once_asked())
        outcomes = await asyncio.gather(
            *(job.result_async(timeout=120) for job in awaited), return_exceptions=True
        )
        await opener
        return outcomes

    start = time.monotonic()
    outcomes = asyncio.run(main())
    elapsed = time.monotonic() - start

    assert outcomes[:6] == [x * x for x in range(6)]
    assert all(isinstance(error, JobFailedError) for error in outcomes[6:])
    assert f"job {doomed_parent.job_id} (FAILED)" in str(outcomes[6])
    assert counter.queries, "the scheduler was never asked"
    assert len(counter.queries[0][1]) == len(awaited)  # the first query came with every job unfinished
    for asked, unfinished in counter.queries:
        assert unfinished <= asked  # one query for all of them, never one per job
    for listed, unfinished in counter.listings:
        assert unfinished <= listed  # one listing per round for all result files, never one per job
    assert len(counter.queries) <= len(counter.listings)  # at most one query per round
    assert (
        len(counter.queries) <= elapsed / cluster._watcher.first_poll + 2
    )  # the watcher's cadence, whatever N
    assert max(counter.threads) <= threads_before + 8  # the loop's executor, not a thread per await


def test_await_a_job_and_mapped_jobs(cluster):
    async def main():
        job, squares, failing = (
            cluster.submit(tasks.add, 1, 2),
            cluster.map(tasks.square, [2, 3]),
            cluster.submit(tasks.fail, "x"),
        )
        return await job, await squares, await asyncio.gather(failing.result_async(), return_exceptions=True)

    value, squares, [error] = asyncio.run(main())
    assert (value, squares) == (3, [4, 9])
    assert isinstance(error, tasks.TaskFailure) and "raise TaskFailure" in str(error.__cause__)


def test_result_async_timeout_says_what_is_known_and_stops_watching(cluster):
    job = cluster.submit(tasks.nap, 30)

    async def main():
        with pytest.raises(JobTimeoutError, match=rf"job {job.job_id} did not finish within 0.2s"):
            await job.result_async(timeout=0.2)
        hub = _hubs[asyncio.get_running_loop()]
        # The driver's next round forgets the waiter that gave up, and the driver ends: waited for (not a
        # fixed sleep), with a bound so that a driver that went on watching fails the test.
        await asyncio.wait({hub.driver}, timeout=30)
        return dict(hub.waiters), hub.driver.done()

    waiters, driver_done = asyncio.run(main())
    job.cancel()
    assert waiters == {} and driver_done


def test_as_completed_yields_each_job_once_in_the_order_they_end(cluster, tmp_path):
    gate = tmp_path / "gate"
    slow = cluster.submit(log_tasks.speak_until, [], str(gate), [])  # ends once the others were yielded
    done = cluster.submit(tasks.add, 1, 1)
    done.result(timeout=60)
    fast, pair = cluster.submit(tasks.nap, 0), cluster.map(tasks.square, [1, 2])

    order = []
    for job in as_completed([slow, fast, done, slow, pair], timeout=60):
        order.append(job)
        if len(order) == 4:
            gate.touch()

    assert order[0] is done  # already ended: first, without waiting
    assert order[-1] is slow
    assert sorted(job.job_id for job in order) == sorted(job.job_id for job in [slow, fast, done, *pair])


def test_as_completed_async_in_end_order_and_wait_async(cluster, tmp_path):
    gate = tmp_path / "gate"

    async def main():
        slow = cluster.submit(log_tasks.speak_until, [], str(gate), [])  # ends once the other was yielded
        fast = cluster.submit(tasks.nap, 0)
        order = []
        async for job in as_completed_async([slow, fast], timeout=60):
            order.append(job)
            gate.touch()
        squares = cluster.map(tasks.square, [1, 2])
        await wait_async([squares], timeout=60)
        return order, [slow, fast], squares

    order, (slow, fast), squares = asyncio.run(main())
    assert order == [fast, slow]
    assert all(job.last_state.is_terminal for job in squares)


def test_as_completed_timeouts(cluster):
    """On the waiting engine's fake clock (the job runs for real): the timeouts pass in no time."""
    cluster._watcher.clock = FakeClock()
    job = cluster.submit(tasks.nap, 30)
    with pytest.raises(JobTimeoutError, match=rf"job {job.job_id} did not finish within 0.3s"):
        list(as_completed([job], timeout=0.3))

    async def main():
        with pytest.raises(JobTimeoutError, match=rf"job {job.job_id} did not finish within 0.3s"):
            async for _ in as_completed_async([job], timeout=0.3):
                pass

    asyncio.run(main())
    job.cancel()


def failing_scheduler(cluster, monkeypatch, *, transient):
    def statuses(job_ids, **options):
        raise BackendError("squeue: error: slurm_receive_msg: Socket timed out", transient=transient)

    monkeypatch.setattr(cluster.backend, "statuses", statuses)


def test_an_await_without_timeout_ends_after_the_outage_limit(make_cluster, monkeypatch):
    cluster = make_cluster(outage_limit_seconds=1.0)
    cluster._watcher.clock = FakeClock()  # the outage lasts its second in no time
    job = cluster.submit(tasks.nap, 30)
    failing_scheduler(cluster, monkeypatch, transient=True)

    with pytest.raises(
        BackendError, match=rf"gave up waiting for job {job.job_id}: .*outage_limit_seconds=1s"
    ):
        asyncio.run(job.result_async())
    job.cancel()


def test_an_error_that_will_not_go_away_ends_every_await(cluster, monkeypatch):
    jobs = [cluster.submit(tasks.nap, 30) for _ in range(3)]
    failing_scheduler(cluster, monkeypatch, transient=False)

    async def main():
        return await asyncio.gather(*(job.result_async(timeout=60) for job in jobs), return_exceptions=True)

    errors = asyncio.run(main())
    assert all(isinstance(error, BackendError) and "Socket timed out" in str(error) for error in errors)
    for job in jobs:
        job.cancel()
