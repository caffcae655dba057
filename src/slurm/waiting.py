"""The waiting engine: how every wait of the SDK paces itself, learns that jobs ended, and stops.

``Job.wait``/``result``, ``as_completed``, the asyncio awaiters (``slurm.awaiting``) and log following
(``slurm.logs``) all wait through a ``Wait``: result files on the shared file system are checked often (from
``FIRST_RESULT_CHECK``, x``RESULT_CHECK_BACKOFF`` per check, up to the cluster's
``result_poll_interval_seconds``: they cost the login node a listing, slurmctld nothing), and the scheduler
only when the cluster's one ``Watcher`` says its query is due (``slurm.watcher``: one query serves every
waiter on the cluster). A wait ends by its deadline (``JobTimeoutError`` saying what is known), or without
one after ``outage_limit_seconds`` of silence from the scheduler or the login node (``BackendError``).

Time comes from a ``Clock`` (the cluster watcher's ``clock``): the real one by default, a fake one in fast
tests, which then run hours of waiting in milliseconds and can count every query against the cadence.

The engine sits below ``Job`` and ``Cluster``: what it needs of them is typed here as Protocols (``Waited``,
``WaitedCluster``, ``Watch``), so neither module is imported, not even for type checking (the import
contract ``sdk-jobs-below-cluster`` in ``.ci/typed-imports.toml``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from slurm import timing
from slurm.backends.base import JobState
from slurm.deadline import bounded
from slurm.errors import BackendError, JobTimeoutError, SerializationError
from slurm.serialization import Outcome

if TYPE_CHECKING:
    from slurm.backends.base import Backend, JobStatus

# --- the cadence: every pause and grace period of waiting, in one place -------------------------------

#: First pause between a wait's result-file checks; it grows by RESULT_CHECK_BACKOFF per check up to the
#: cluster's result_poll_interval_seconds. Gentle, so a job that ends at 0.7 s is seen within ~0.15 s.
FIRST_RESULT_CHECK = 0.05
RESULT_CHECK_BACKOFF = 1.25
#: First pause between two scheduler queries of a cluster's watcher after a submission; it grows by
#: POLL_BACKOFF per query up to the cluster's poll_interval_seconds (queries at ~1, 2.5, 4.8, 8.1, 13 s...).
#: Also the least time between two queries, however many callers ask.
FIRST_POLL = 1.0
POLL_BACKOFF = 1.5
#: A job the scheduler does not list is declared lost only when a second query, at least this long after
#: the first, still does not list it and no result file appeared meanwhile (covers accounting lag and a
#: result file that is still on its way through the shared file system).
LOST_AFTER = 2.0
#: A preempted job that may be requeued is PENDING again as soon as it has ended; one still PREEMPTED after
#: this long was not requeued (requeue=False, or the partition's PreemptMode cancels).
PREEMPTED_FINAL_AFTER = 10.0
#: Longest one round of checks of the asyncio driver may take (each SSH command, read or scheduler query
#: within it is cut short), so a frozen login node cannot hold the event loop's executor (or exit) longer.
ROUND_LIMIT = 30.0


class Clock(Protocol):
    """Where waits get the time: ``now()`` in monotonic seconds; ``sleep_until(moment)`` pauses until
    ``now()`` has reached ``moment`` (a moment, not a length, so a fake clock lands exactly on a deadline
    or a planned query instead of a rounding error short of it); ``sleep_until_async`` is that pause for
    the asyncio driver (``slurm.awaiting``), which must not block its event loop."""

    def now(self) -> float: ...

    def sleep_until(self, moment: float) -> None: ...

    async def sleep_until_async(self, moment: float) -> None: ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``time.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, moment: float) -> None:
        time.sleep(max(0.0, moment - time.monotonic()))

    async def sleep_until_async(self, moment: float) -> None:
        import asyncio  # only ever called on a running event loop: asyncio is imported already

        await asyncio.sleep(max(0.0, moment - time.monotonic()))


SYSTEM_CLOCK: Clock = SystemClock()


# --- what waiting needs of a job, its cluster and the cluster's watcher (``slurm.job``, ``slurm.cluster``,
# ``slurm.watcher`` provide them; typed here so that the engine imports none of them) ---------------------

T = TypeVar("T")


class Watch(Protocol):
    """A cluster's scheduler watcher as waits use it (``slurm.watcher.Watcher``)."""

    @property
    def clock(self) -> Clock: ...
    @property
    def next_query_at(self) -> float: ...
    @property
    def failing_since(self) -> float | None: ...
    @property
    def last_error(self) -> BackendError | None: ...
    def query(
        self, jobs: Sequence[Waited] = (), *, raise_errors: bool = True, background: bool = False
    ) -> None: ...
    def query_if_due(self, jobs: Sequence[Waited]) -> None: ...
    def silence(self, now: float) -> str | None: ...


class WaitedCluster(Protocol):
    """A job's cluster as waits use it (``slurm.cluster.Cluster``)."""

    @property
    def backend(self) -> Backend: ...
    @property
    def _watcher(self) -> Watch: ...
    @property
    def poll_interval_seconds(self) -> float: ...
    @property
    def result_poll_interval_seconds(self) -> float: ...
    @property
    def outage_limit_seconds(self) -> float: ...
    def _retry(self, operation: Callable[[], T]) -> T: ...


class Waited(Protocol):
    """A job as waits use it (``slurm.job.Job``): its state, its result file and outcome, its events."""

    #: The outcome read from its result file, set by ``fetch_outcomes``.
    _outcome: Outcome | None

    @property
    def cluster(self) -> WaitedCluster: ...
    @property
    def job_id(self) -> str: ...
    @property
    def depends_on(self) -> tuple[str, ...]: ...
    @property
    def last_state(self) -> JobState: ...
    @property
    def _result_path(self) -> str: ...
    @property
    def _outcome_pending(self) -> bool: ...
    def log_path(self, stream: str = "stdout") -> str: ...
    def _observe(self, status: JobStatus) -> None: ...
    def _finish_from_outcome(self) -> None: ...
    def _deliver_events(self) -> None: ...
    def _timeout_detail(self, now: float) -> str: ...
    def _ended_result(self) -> Any: ...


#: A job of the caller's own type (``Job``), handed back as it ends.
J = TypeVar("J", bound=Waited)


def result_check_pauses(limit: float = 1.0) -> Iterator[float]:
    """The pauses between a wait's result-file checks: FIRST_RESULT_CHECK, then xRESULT_CHECK_BACKOFF each, up
    to ``limit`` (the cluster's ``result_poll_interval_seconds``). Benchmarks poll their raw baselines on this
    same cadence."""
    pause = FIRST_RESULT_CHECK
    while True:
        yield pause
        pause = min(pause * RESULT_CHECK_BACKOFF, limit)


def has_ended(state: JobState) -> bool:
    """Whether a job is over: a final state, or UNKNOWN: in neither the queue nor accounting, which Slurm
    only lets happen to jobs that ended (MinJobAge ago, without accounting)."""
    return state.is_terminal or state is JobState.UNKNOWN


# --- jobs, grouped by cluster ----------------------------------------------------------------------


def each_job(items: Iterable[J | Sequence[J]]) -> Iterator[J]:
    """Every job of ``items``, a ``MappedJobs`` (a sequence of jobs) standing for each of its tasks."""
    for item in items:
        if isinstance(item, Sequence):
            yield from item
        else:
            yield item


def by_cluster(jobs: Sequence[J]) -> list[tuple[WaitedCluster, list[J]]]:
    if not jobs:
        return []
    first = jobs[0].cluster
    if all(job.cluster is first for job in jobs):  # the usual case, on every check of a wait: no grouping
        return [(first, list(jobs))]
    groups: dict[int, list[J]] = {}
    for job in jobs:
        groups.setdefault(id(job.cluster), []).append(job)
    return [(group[0].cluster, group) for group in groups.values()]


def clock_of(jobs: Sequence[Waited]) -> Clock:
    """The clock a wait on ``jobs`` keeps time by: their (first) cluster's."""
    return jobs[0].cluster._watcher.clock if jobs else SYSTEM_CLOCK


def poll(jobs: Sequence[Waited]) -> None:
    """One scheduler round trip per cluster for all of ``jobs`` (and the clusters' other unfinished jobs)."""
    for cluster, group in by_cluster(jobs):
        cluster._watcher.query(group)


# --- result files ----------------------------------------------------------------------------------


def fetch_outcomes(jobs: Sequence[Waited], *, retry: bool = True) -> None:
    """Load the result files of many jobs in one transfer per cluster instead of a round trip per job."""
    for cluster, group in by_cluster([job for job in jobs if job._outcome is None]):
        paths = [job._result_path for job in group]
        transport = cluster.backend.transport
        with timing.phase("fetch"):
            if retry:
                files = cluster._retry(functools.partial(transport.read_existing, paths))
            else:
                files = transport.read_existing(paths)
        for job in group:
            if job._result_path in files:
                job._outcome = _load(job, files[job._result_path])


def _load(job: Waited, data: bytes) -> Outcome:
    """The outcome in a result file fetched whole (the transport checks sizes; the runner writes it by
    rename): a file that does not parse was damaged on the cluster, which a retry does not mend."""
    try:
        return Outcome.load(data)
    except Exception as exc:
        raise SerializationError(
            f"the result file {job._result_path} of job {job.job_id} ({len(data):,} bytes) is damaged: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def check_result_files(jobs: Sequence[Waited]) -> None:
    """End every job whose result file exists: one command per cluster fetches the result files not fetched
    yet (the transport sends back only those that exist), no scheduler query. Callbacks of the jobs that
    ended run here, after their outcomes were fetched and outside every lock."""
    fetch_outcomes(jobs, retry=False)  # a failed check is retried by the next one
    done = [job for job in jobs if job._outcome is not None]
    for job in done:
        job._finish_from_outcome()
    for job in done:
        job._deliver_events()


# --- one wait --------------------------------------------------------------------------------------


class Silence:
    """Since when checks keep failing (login node frozen or gone): for messages and the outage limit."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.since: float | None = None
        self.error: BackendError | None = None

    def failed(self, error: BackendError) -> None:
        self.since, self.error = self.since or self.clock.now(), error

    def describe(self, now: float) -> str | None:
        if self.since is None:
            return None
        return f"the login node has not answered for {now - self.since:.0f}s (last error: {self.error})"


class Wait:
    """One caller's wait: its deadline, the pace of its checks, and the truth about why it stopped.

    ``check(running)`` looks once (result files, then the scheduler if the watcher says a query is due);
    ``stop_if_over(waiting)`` raises ``JobTimeoutError`` past the deadline, or ``BackendError`` past the
    outage limit when there is no deadline; ``pause(running)`` is how long to sleep before the next check
    (never past the deadline, sooner when a watcher's query comes first) and grows the pace by one step;
    ``sleep(running)`` sleeps that long on the clock."""

    def __init__(self, clock: Clock, timeout: float | None) -> None:
        self.clock, self.timeout = clock, timeout
        self.deadline = None if timeout is None else clock.now() + timeout
        self.delay = FIRST_RESULT_CHECK
        self.login = Silence(clock)

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock.now()

    def check(self, running: Sequence[Waited]) -> None:
        """One look at ``running``, bounded by the deadline. Transient errors are recorded, not raised."""
        with bounded(self.left()):
            try:
                check_result_files(running)
                self.login.since = None
            except BackendError as error:
                if not error.transient:
                    raise
                self.login.failed(error)
            for cluster, group in by_cluster([job for job in running if not job.last_state.is_terminal]):
                cluster._watcher.query_if_due(group)

    def stop_if_over(self, waiting: Sequence[Waited]) -> None:
        now = self.clock.now()
        if self.deadline is not None and now >= self.deadline:
            raise self.timeout_error(waiting[0], now)
        if self.deadline is None:
            for job in waiting:
                check_outage(job, self.login, now)

    def timeout_error(self, job: Waited, now: float) -> JobTimeoutError:
        return timeout_error(job, self.timeout or 0, now, self.login)

    def next_check_at(self, running: Sequence[Waited]) -> float:
        """When to check next (the clock's time); the pause after it is one step longer."""
        now = self.clock.now()
        moment = now + self.delay
        if self.deadline is not None:
            moment = min(moment, self.deadline)
        limit = 0.0
        for cluster, _ in by_cluster(running):  # once per cluster, not per job: called on every check
            moment = min(moment, cluster._watcher.next_query_at)
            limit = max(limit, cluster.result_poll_interval_seconds)
        self.delay = min(self.delay * RESULT_CHECK_BACKOFF, limit)
        return max(now, moment)

    def pause(self, running: Sequence[Waited]) -> float:
        """Seconds to sleep before the next check (see ``next_check_at``)."""
        return self.next_check_at(running) - self.clock.now()

    def sleep(self, running: Sequence[Waited]) -> None:
        self.clock.sleep_until(self.next_check_at(running))

    def restart(self) -> None:
        """Something new happened (output flowing, a new waiter): check again soon."""
        self.delay = FIRST_RESULT_CHECK


def timeout_error(job: Waited, timeout: float, now: float, login: Silence | None = None) -> JobTimeoutError:
    """``JobTimeoutError`` for ``job``, with what is known: its last state, and who has been silent."""
    detail = job._timeout_detail(now)
    silent_login = login.describe(now) if login is not None else None
    if silent_login and job.cluster._watcher.failing_since is None:
        detail = f"{detail}; {silent_login}"
    return JobTimeoutError(job.job_id, job.last_state.value, timeout, detail)


def check_outage(job: Waited, login: Silence, now: float) -> None:
    """Without a timeout a wait must still end: give up after ``outage_limit_seconds`` s of silence."""
    watcher, limit = job.cluster._watcher, job.cluster.outage_limit_seconds
    if watcher.failing_since is not None and now - watcher.failing_since > limit:
        raise BackendError(
            f"gave up waiting for job {job.job_id}: {watcher.silence(now)}; the SDK stops "
            f"retrying after outage_limit_seconds={limit:g}s without an answer (state when last "
            f"seen: {job.last_state.value})"
        ) from watcher.last_error
    if login.since is not None and now - login.since > limit:
        raise BackendError(
            f"gave up waiting for job {job.job_id}: {login.describe(now)}; the SDK stops "
            f"retrying after outage_limit_seconds={limit:g}s without an answer"
        ) from login.error


def as_completed(jobs: Iterable[J | Sequence[J]], timeout: float | None = None) -> Iterator[J]:
    """Each job (every task of a MappedJobs) once, as soon as it is seen to end, in the order they end.

    Costs what one wait on all of them costs (see ``wait_all``): one result-file listing per cluster per
    check, and the clusters' shared watchers for the scheduler. ``JobTimeoutError`` once ``timeout`` s
    have passed with jobs still unfinished (the time spent by the caller's loop body counts too)."""
    waiting = list(dict.fromkeys(each_job(jobs)))
    wait = Wait(clock_of(waiting), timeout)
    while waiting:
        running = [job for job in waiting if not job.last_state.is_terminal]
        if running:
            wait.check(running)
        ended = [job for job in waiting if job.last_state.is_terminal]
        if ended:  # most checks end nothing: the list still waiting is then the same
            yield from ended
            # Only those yielded leave: one that ended while the caller's loop body ran (seen by another
            # thread's query) is yielded next time round, not dropped.
            yielded = {id(job) for job in ended}
            waiting = [job for job in waiting if id(job) not in yielded]
            if not waiting:
                return
            if any(job.last_state.is_terminal for job in waiting):
                continue  # no pause before yielding it
        wait.stop_if_over(waiting)
        wait.sleep(waiting)


def wait_all(jobs: Iterable[Waited | Sequence[Waited]], timeout: float | None = None) -> None:
    """Wait until every job has ended: result files are checked often (from 50 ms, x1.25, up to the
    cluster's ``result_poll_interval_seconds``), the scheduler on the watcher's slower cadence. Transient errors
    are retried until ``timeout`` (``JobTimeoutError``, saying what was last known) or, without one, until
    the cluster's ``outage_limit_seconds`` (the last ``BackendError``)."""
    with timing.phase("wait"):
        for _ in as_completed(jobs, timeout):
            pass
