"""Jobs in asyncio: ``await job``, ``await job.result_async()``, ``async for job in as_completed_async(jobs)``.

One driver task per event loop watches every job awaited on that loop, in rounds, exactly as a blocking
wait does (``slurm.waiting``): per round one result-file listing per cluster and, when the cluster's
shared watcher says a query is due, one scheduler query about all of that cluster's unfinished jobs. A
round is one call in the loop's default executor, so a thousand awaits cost one thread and one poll, not
a thread or a poll each. Between rounds the driver sleeps like a wait (50 ms, x1.25, up to
``result_poll_interval_seconds``, sooner when a watcher's query is due); a new await wakes it at once.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from slurm import waiting
from slurm.deadline import bounded
from slurm.errors import BackendError, JobTimeoutError
from slurm.waiting import J, Waited


class _Hub:
    """The jobs awaited on one event loop, and the driver task that watches them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiters: dict[Waited, list[asyncio.Future[Any]]] = {}
        self.wake = asyncio.Event()
        self.driver: asyncio.Task[None] | None = None

    def ended(self, job: J) -> asyncio.Future[J]:
        """A future that resolves to ``job`` once it has ended (or fails with the wait's error)."""
        future: asyncio.Future[J] = self.loop.create_future()
        if job.last_state.is_terminal:
            future.set_result(job)
            return future
        self.waiters.setdefault(job, []).append(future)
        self.wake.set()
        if self.driver is None or self.driver.done():
            self.driver = self.loop.create_task(self._drive(), name="slurm-sdk job watcher")
        return future

    async def _drive(self) -> None:
        wait: waiting.Wait | None = None  # the hub's own wait: no deadline (each await has its own)
        while self._prune():
            self.wake.clear()  # an await arriving during the round wakes the next sleep at once
            jobs = list(self.waiters)
            wait = wait or waiting.Wait(waiting.clock_of(jobs), None)
            try:
                await self.loop.run_in_executor(None, _round, jobs, wait)
            except Exception as error:  # one that will not go away (authentication, ...): tell every waiter
                self._settle(jobs, error)
                continue
            self._settle([job for job in jobs if job.last_state.is_terminal], None)
            self._check_outage(wait)
            running = [job for job in self.waiters if not job.last_state.is_terminal]
            if not running:
                continue
            try:  # the pause is the wait's (it paces like a blocking one), slept on the event loop
                await asyncio.wait_for(self.wake.wait(), wait.pause(running))
                wait.restart()  # new jobs to watch: check soon, like a new wait would
            except TimeoutError:
                pass

    def _prune(self) -> bool:
        """Forget waiters that gave up (their await timed out or was cancelled); True while any remain."""
        for job, futures in list(self.waiters.items()):
            futures[:] = [future for future in futures if not future.done()]
            if not futures:
                del self.waiters[job]
        return bool(self.waiters)

    def _settle(self, jobs: Sequence[Waited], error: BaseException | None) -> None:
        for job in jobs:
            for future in self.waiters.pop(job, []):
                if future.done():
                    continue
                if error is None:
                    future.set_result(job)
                else:
                    future.set_exception(error)

    def _check_outage(self, wait: waiting.Wait) -> None:
        """An await without a timeout still ends: the ``outage_limit_seconds`` of ``wait_all`` applies per job."""
        now = wait.clock.now()
        for job in list(self.waiters):
            try:
                waiting.check_outage(job, wait.login, now)
            except BackendError as error:
                self._settle([job], error)


def _round(jobs: list[Waited], wait: waiting.Wait) -> None:
    """One check of every awaited job, in the executor. Bounded, so a frozen login node holds the driver
    (and the interpreter's exit, which waits for the executor) for ``ROUND_LIMIT`` s at most: what times
    out is a transient error, recorded for the outage limit and tried again next round."""
    with bounded(waiting.ROUND_LIMIT):
        wait.check([job for job in jobs if not job.last_state.is_terminal])


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hub] = weakref.WeakKeyDictionary()


def _hub() -> _Hub:
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = _Hub(loop)
    return _hubs[loop]


async def wait_async(jobs: Iterable[Waited | Sequence[Waited]], timeout: float | None = None) -> None:
    """``wait_all`` for asyncio: returns once every job has ended; ``JobTimeoutError`` after ``timeout`` s."""
    async for _ in as_completed_async(jobs, timeout):
        pass


async def as_completed_async(
    jobs: Iterable[J | Sequence[J]], timeout: float | None = None
) -> AsyncIterator[J]:
    """Each job (every task of an MappedJobs) once, as it ends: ``async for job in as_completed_async(jobs)``.
    ``JobTimeoutError`` once ``timeout`` s have passed with jobs unfinished."""
    hub = _hub()
    pending = {hub.ended(job): job for job in dict.fromkeys(waiting.each_job(jobs))}
    deadline = None if timeout is None else hub.loop.time() + timeout
    try:
        for next_one in asyncio.as_completed(pending):
            left = None if deadline is None else max(0.0, deadline - hub.loop.time())
            try:
                job = await asyncio.wait_for(next_one, left)
            except TimeoutError:
                raise _timeout(
                    [job for future, job in pending.items() if not future.done()], timeout
                ) from None
            yield job
    finally:
        for future in pending:  # a caller that stopped early (or timed out) no longer costs the driver
            if not future.cancel() and not future.cancelled():
                future.exception()  # retrieved: no "exception was never retrieved" for the others


def _timeout(unfinished: list[Waited], timeout: float | None) -> JobTimeoutError:
    job = unfinished[0]
    return waiting.timeout_error(job, timeout or 0, waiting.clock_of(unfinished).now())


async def result_async(job: Waited, timeout: float | None = None) -> Any:
    """``job.result()`` for asyncio (see ``Job.result_async``)."""
    await wait_async([job], timeout)
    if job._outcome is not None:  # read with the other results of its round: nothing left to fetch
        return job._ended_result()
    return await asyncio.get_running_loop().run_in_executor(None, job._ended_result)


async def results_async(
    jobs: Sequence[Waited], results: Callable[[], list[Any]], timeout: float | None = None
) -> list[Any]:
    """``MappedJobs.results()`` for asyncio: once ``jobs`` have ended, ``results()`` (the results in item
    order) in one executor call."""
    await wait_async(jobs, timeout)
    return await asyncio.get_running_loop().run_in_executor(None, results)
