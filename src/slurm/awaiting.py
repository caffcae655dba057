"""Jobs in asyncio: ``await job``, ``await job.result_async()``, ``async for job in as_completed_async(jobs)``.

One driver task per event loop watches every job awaited on that loop, in rounds, exactly as a blocking
wait does (``slurm.waiting``): per round one result-file listing per cluster and, when the cluster's
shared watcher says a query is due, one scheduler query about all of that cluster's unfinished jobs. A
round is one call in the loop's default executor, so a thousand awaits cost one thread and one poll, not
a thread or a poll each. Between rounds the driver sleeps like a wait (50 ms, x1.25, up to
``result_poll_interval_seconds``, sooner when a watcher's query or an await's deadline is due); a new
await wakes it at once. It keeps time by the jobs' clock (``slurm.waiting.Clock``): deadlines included,
so fast tests drive it on a fake clock, as they drive the blocking waits.
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

#: How long a round may still answer after a deadline it started before: then the await times out
#: whatever the round finds (a blocking wait's operations get as long: ``slurm.deadline``).
ROUND_GRACE = 0.5


class _Hub:
    """The jobs awaited on one event loop, the deadlines of those awaits, and the driver task that
    watches them. Every moment is the jobs' clock's (``slurm.waiting.Clock``), the real one or a fake one."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiters: dict[Waited, list[asyncio.Future[Any]]] = {}
        #: (moment, future): the deadline of one await, resolved by the driver once the clock reaches it.
        self.deadlines: list[tuple[float, asyncio.Future[None]]] = []
        #: An await arrived or added a deadline since the round began: the driver's sleep ends at once. The
        #: sleep is cancelled, not raced against an ``asyncio.Event``: the driver sleeps every round, and
        #: a race costs a task and two more turns of the event loop each time.
        self.woken = False
        self.sleeper: asyncio.Task[None] | None = None
        self.driver: asyncio.Task[None] | None = None

    def ended(self, job: J) -> asyncio.Future[J]:
        """A future that resolves to ``job`` once it has ended (or fails with the wait's error)."""
        future: asyncio.Future[J] = self.loop.create_future()
        if job.last_state.is_terminal:
            future.set_result(job)
            return future
        self.waiters.setdefault(job, []).append(future)
        self._wake()
        if self.driver is None or self.driver.done():
            self.driver = self.loop.create_task(self._drive(), name="slurm-sdk job watcher")
        return future

    def expiry(self, moment: float) -> asyncio.Future[None]:
        """A future the driver resolves once the clock has reached ``moment``: an await's deadline."""
        future: asyncio.Future[None] = self.loop.create_future()
        self.deadlines.append((moment, future))
        self._wake()  # the driver's sleep may have to end sooner
        return future

    def _wake(self) -> None:
        self.woken = True
        if self.sleeper is not None:
            self.sleeper.cancel()

    async def _drive(self) -> None:
        wait: waiting.Wait | None = None  # the hub's own wait: no deadline (each await has its own)
        while self._prune():
            self.woken = False  # an await arriving during the round wakes the next sleep at once
            jobs = list(self.waiters)
            wait = wait or waiting.Wait(waiting.clock_of(jobs), None)
            checked = self.loop.run_in_executor(None, _round, jobs, wait)
            await self._until_done(checked, wait.clock)
            try:
                checked.result()
            except Exception as error:  # one that will not go away (authentication, ...): tell every waiter
                self._settle(jobs, error)
                continue
            self._settle([job for job in jobs if job.last_state.is_terminal], None)
            self._check_outage(wait)
            self._expire(wait.clock.now())
            running = [job for job in self.waiters if not job.last_state.is_terminal]
            if not running:
                continue
            # The pause is the wait's (it paces like a blocking one), cut short by the next deadline.
            moment = min([wait.next_check_at(running), *(moment for moment, _ in self.deadlines)])
            if await self._sleep_until(wait.clock, moment):
                wait.restart()  # new jobs to watch: check soon, like a new wait would

    async def _until_done(self, checked: asyncio.Future[None], clock: waiting.Clock) -> None:
        """Wait for a round; a deadline that passes meanwhile ends its await on time (a round may take
        up to ``ROUND_LIMIT`` s against a frozen login node), after ``ROUND_GRACE`` s for its answer."""
        while not checked.done():
            soonest = min((moment for moment, _ in self.deadlines), default=None)
            limit = None if soonest is None else max(0.0, soonest - clock.now()) + ROUND_GRACE
            await asyncio.wait({checked}, timeout=limit)
            if not checked.done():
                self._expire(clock.now())

    async def _sleep_until(self, clock: waiting.Clock, moment: float) -> bool:
        """Sleep on ``clock`` until ``moment``; True when a new await woke the driver sooner."""
        if self.woken:
            return True
        self.sleeper = self.loop.create_task(clock.sleep_until_async(moment))
        try:
            await self.sleeper
        except asyncio.CancelledError:
            driver = asyncio.current_task()
            if driver is not None and driver.cancelling():
                raise  # the driver itself is cancelled (its loop is closing)
            return True  # ``_wake`` cancelled the sleep
        finally:
            self.sleeper = None
        return False

    def _prune(self) -> bool:
        """Forget waiters (and deadlines) of awaits that ended or gave up; True while any waiter remains."""
        for job, futures in list(self.waiters.items()):
            futures[:] = [future for future in futures if not future.done()]
            if not futures:
                del self.waiters[job]
        self.deadlines = [(moment, future) for moment, future in self.deadlines if not future.done()]
        return bool(self.waiters)

    def _expire(self, now: float) -> None:
        """End the awaits whose deadline the clock has reached."""
        for moment, future in self.deadlines:
            if moment <= now and not future.done():
                future.set_result(None)

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
    ``JobTimeoutError`` once ``timeout`` s have passed (on the jobs' clock) with jobs unfinished."""
    hub = _hub()
    awaited = list(dict.fromkeys(waiting.each_job(jobs)))
    pending = {hub.ended(job): job for job in awaited}
    clock = waiting.clock_of(awaited)
    expired = None if timeout is None else hub.expiry(clock.now() + timeout)
    try:
        while pending:
            ended = [future for future in pending if future.done()]  # in the order awaited
            if not ended:
                watched: list[asyncio.Future[Any]] = [*pending, *([expired] if expired else [])]
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                ended = [future for future in pending if future.done()]
            for future in ended:
                del pending[future]
                yield future.result()  # or the error that ended the wait
            if pending and expired is not None and expired.done():
                raise _timeout(list(pending.values()), timeout)
    finally:
        # A caller that stopped early (or timed out) no longer costs the driver.
        given_up: list[asyncio.Future[Any]] = [*pending, *([expired] if expired else [])]
        for future in given_up:
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
