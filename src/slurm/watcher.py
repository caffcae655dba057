"""One watcher per ``Cluster``: asks the scheduler about all of its unfinished jobs in one query, rarely.

Cadence (what slurmctld sees from one waiting client): the first query comes ``first_poll`` (1 s) after a
submission, then the pause grows by ``backoff`` (x1.5) per query up to ``poll_interval_seconds`` (30 s): queries
at about 1, 2.5, 4.8, 8.1, 13, 21, 32, 49 s, then every 25-30 s, so about 8 queries in the first minute and
2 a minute afterwards, however many jobs and threads wait. A new submission restarts the ramp. Each query
is one ``sacct`` (answered by slurmdbd, not slurmctld) when accounting is present, plus one ``squeue``, for
all of them at once, when sacct does not list some jobs or says they were requeued, and at most once per
``CONFIRM_LIVE_EVERY`` (15 s) to confirm the jobs sacct says pend or run (slurmdbd hears of starts and ends
late or never, and squeue says why a job pends; see ``SlurmBackend._query``): so a waiting client asks
slurmctld no more often than one without accounting would, and 3 times instead of 8 in its first minute.

Job ends are mostly seen without the scheduler: waits look for result files on the shared file system
(see ``slurm.waiting``, which also holds the cadence constants). The scheduler is needed for jobs that end without one (cancelled, killed,
time limit, out of memory, node failure), for requeues and for dependencies that can never be met.

A query that fails transiently (slurmctld restarting, the login node unreachable) is recorded, not
raised: the next one follows the same cadence, and a wait's timeout message says how long the scheduler
has been silent.

Callbacks never run under the watcher's lock: the states a query reveals are recorded under it, and the
callbacks they call for run once it is released, after one transfer has read the result files of the jobs
whose ``on_complete``/``on_failure`` is due.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

from slurm.errors import BackendError, SSHError
from slurm.waiting import FIRST_POLL, POLL_BACKOFF, SYSTEM_CLOCK, Clock, Waited, fetch_outcomes

if TYPE_CHECKING:
    from slurm.backends.base import Backend, JobStatus


class Watched(Protocol):
    """The cluster a watcher asks about (``slurm.cluster.Cluster``), typed here so that the watcher
    imports neither it nor ``slurm.job`` (the jobs it watches are ``slurm.waiting.Waited``)."""

    @property
    def backend(self) -> Backend: ...
    @property
    def poll_interval_seconds(self) -> float: ...


class Watcher:
    """The scheduler side of waiting for one cluster; ``clock`` is the time every wait on it keeps."""

    def __init__(
        self,
        cluster: Watched,
        *,
        first_poll: float = FIRST_POLL,
        backoff: float = POLL_BACKOFF,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.cluster, self.clock = cluster, clock
        self.first_poll, self.backoff = min(first_poll, cluster.poll_interval_seconds), backoff
        self._jobs: dict[str, Waited] = {}  # unfinished jobs, by id
        self._lock = threading.RLock()  # one query at a time; threads waiting meanwhile share its answer
        self._pause = self.first_poll
        self.next_query_at = 0.0
        self._last_query_at: float | None = None
        #: Monotonic time of the last query the scheduler answered (None: never asked or never answered).
        self.last_answer_at: float | None = None
        #: The error of the last query, while the scheduler keeps failing (None once it answers again).
        self.last_error: BackendError | None = None
        self.failing_since: float | None = None
        #: Job ids the SDK cancels -> the error, if any, once the scancel has answered.
        self._cancelled: dict[str, Future[BackendError | None]] = {}
        self._cancelling = threading.Lock()  # guards ``_cancelled`` only, never held while a scancel runs
        self._parents: dict[tuple[str, ...], str] = {}

    def cancel_once(self, job_id: str) -> BackendError | None:
        """Cancel ``job_id`` unless this watcher already did (the tasks of one array share one scancel);
        the error, if it failed. The scancel runs with no lock held: a caller meanwhile waits for it."""
        with self._cancelling:
            cancel = self._cancelled.get(job_id)
            mine = cancel is None
            if cancel is None:
                cancel = self._cancelled[job_id] = Future()
        if mine:
            try:
                self.cluster.backend.cancel(job_id)
                cancel.set_result(None)
            except BackendError as error:
                cancel.set_result(error)
            except BaseException as error:
                cancel.set_exception(error)
                raise
        return cancel.result()

    def describe_parents(self, parents: tuple[str, ...]) -> str:
        """ "job 10 (FAILED), job 11 (COMPLETED)": the parents and their states (best effort, asked once)."""
        with self._lock:
            if parents not in self._parents:
                try:
                    states = self.cluster.backend.states(list(parents))
                except BackendError:
                    states = {}
                self._parents[parents] = (
                    ", ".join(
                        f"job {parent} ({states[parent].value})" if parent in states else f"job {parent}"
                        for parent in parents
                    )
                    or "its parents"
                )
            return self._parents[parents]

    def add(self, jobs: Sequence[Waited]) -> None:
        """Watch newly submitted jobs; the cadence starts again from ``first_poll`` (never later than the
        query already planned, so a stream of submissions cannot starve the jobs already waited on)."""
        with self._lock:
            self._jobs.update((job.job_id, job) for job in jobs)
            self._pause = self.first_poll
            soon = self.clock.now() + self.first_poll
            self.next_query_at = soon if self._last_query_at is None else min(self.next_query_at, soon)

    def query_if_due(self, jobs: Sequence[Waited]) -> None:
        """Ask the scheduler if the cadence says it is time (about ``jobs`` and every other unfinished job)."""
        self._query_and_deliver(jobs, raise_errors=False, background=True, only_if_due=True)

    def query(
        self, jobs: Sequence[Waited] = (), *, raise_errors: bool = True, background: bool = False
    ) -> None:
        """One round trip for ``jobs`` and all other unfinished jobs of the cluster; updates their state.
        At most one per ``first_poll`` (1 s): a caller asking sooner gets the last answer. Transient
        errors are recorded (and raised only if ``raise_errors``); others always raise. ``background``:
        a wait's query on the cadence (see ``Backend.statuses``). The callbacks it calls for run after
        the lock is released."""
        self._query_and_deliver(jobs, raise_errors=raise_errors, background=background, only_if_due=False)

    def _query_and_deliver(
        self, jobs: Sequence[Waited], *, raise_errors: bool, background: bool, only_if_due: bool
    ) -> None:
        watched = self._query_locked(
            jobs, raise_errors=raise_errors, background=background, only_if_due=only_if_due
        )
        due = [job for job in watched if job._outcome_pending]
        if due:
            try:  # one transfer for every on_complete/on_failure due; each job fetches its own on failure
                fetch_outcomes(due)
            except BackendError:
                pass
        for job in watched:
            job._deliver_events()

    def _query_locked(
        self, jobs: Sequence[Waited], *, raise_errors: bool, background: bool, only_if_due: bool
    ) -> list[Waited]:
        """The query itself, under the lock; returns the jobs whose state it may have changed."""
        with self._lock:
            if only_if_due and self.clock.now() < self.next_query_at:
                return []
            for job in jobs:
                self._jobs.setdefault(job.job_id, job)
            watched = [job for job in self._jobs.values() if not job.last_state.is_terminal]
            self._jobs = {job.job_id: job for job in watched}
            now = self.clock.now()
            if self._last_query_at is not None and now < self._last_query_at + self.first_poll:
                # Asked less than first_poll ago (job.query_state() in a loop): that answer stands. Written
                # as the same sum as the planned query's time, so a wait woken exactly then is never told
                # "too soon" by a rounding error (which made it spin: found on the fake clock).
                self.next_query_at = max(self.next_query_at, self._last_query_at + self.first_poll)
                return []
            self._last_query_at = now
            self._schedule_next()
            if not watched:
                return []
            try:
                statuses = self._ask(watched, background)
            except BackendError as error:
                now = self.clock.now()
                self.last_error, self.failing_since = error, self.failing_since or now
                if raise_errors or not error.transient:
                    raise
                return []
            self.last_answer_at, self.last_error, self.failing_since = self.clock.now(), None, None
            for job in watched:  # under the lock: an older answer is never applied after a newer one
                job._observe(statuses[job.job_id])
            return watched

    def _ask(self, jobs: list[Waited], background: bool) -> dict[str, JobStatus]:
        with_dependencies = [job.job_id for job in jobs if job.depends_on]
        return self.cluster.backend.statuses(
            [job.job_id for job in jobs], reasons_for=with_dependencies, background=background
        )

    def _schedule_next(self) -> None:
        self.next_query_at = self.clock.now() + self._pause
        self._pause = min(
            self._pause * self.backoff, max(self.cluster.poll_interval_seconds, self.first_poll)
        )

    def silence(self, now: float) -> str | None:
        """ "the scheduler (or: the login node) has not answered for 35s (...)" while queries fail."""
        if self.failing_since is None:
            return None
        since = self.last_answer_at if self.last_answer_at is not None else self.failing_since
        who = "the login node" if isinstance(self.last_error, SSHError) else "the scheduler"
        return f"{who} has not answered for {now - since:.0f}s (last error: {self.last_error})"
