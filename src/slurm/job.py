"""Handles on submitted jobs: state, waiting, results, logs, cancellation, callbacks."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from slurm import timing
from slurm.backends.base import NEVER_SATISFIED, JobState, JobStatus
from slurm.backends.slurm import killed_for_memory
from slurm.callbacks import emit
from slurm.deadline import bounded
from slurm.errors import BackendError, JobFailedError, JobTimeoutError, SerializationError
from slurm.limits import never_clears, pending_for_good
from slurm.node import layout
from slurm.rendering import expand_log_pattern
from slurm.serialization import Outcome

if TYPE_CHECKING:
    from slurm.cluster import Cluster

_FIRST_RESULT_CHECK = 0.05
#: Growth of the pause between result-file checks (capped by the cluster's result_poll_interval_seconds): gentle,
#: so a job that ends at 0.7 s is seen within ~0.15 s. They cost the login node a stat, slurmctld nothing.
_RESULT_CHECK_BACKOFF = 1.25
#: A job the scheduler does not list is declared lost only when a second query, at least this long after
#: the first, still does not list it and no result file appeared meanwhile (covers accounting lag and a
#: result file that is still on its way through the shared file system).
_LOST_AFTER = 2.0
#: A preempted job that may be requeued is PENDING again as soon as it has ended; one still PREEMPTED after
#: this long was not requeued (requeue=False, or the partition's PreemptMode cancels).
_PREEMPTED_FINAL_AFTER = 10.0
#: The logs every job writes, in the order of ``log_patterns``.
LOG_STREAMS = ("stdout", "stderr")


class Job:
    """One submitted job, or one task of an array job (``job_id`` "<array id>_<index>")."""

    def __init__(
        self,
        cluster: Cluster,
        job_id: str,
        *,
        name: str,
        job_dir: str,
        script: str,
        index: int = 0,
        array: bool = False,
        depends_on: Sequence[str] = (),
        dependency_type: str = "afterok",
    ) -> None:
        self.cluster, self.job_id, self.name, self.job_dir, self.script = (
            cluster,
            job_id,
            name,
            job_dir,
            script,
        )
        self._index, self._array = index, array
        #: Ids of the jobs this one waits for, and how (Slurm dependency type).
        self.depends_on, self.dependency_type = tuple(depends_on), dependency_type
        #: How often the scheduler requeued this job (node failure, preemption), as last observed.
        self.restarts = 0
        self._state = JobState.PENDING
        self._submitted_at = time.monotonic()
        self._state_at: float | None = None  # monotonic time the scheduler last told us the state
        self._unknown_since: float | None = None
        self._preempted_since: float | None = None
        self._failure: JobFailedError | None = (
            None  # why it ended without a result, when the SDK knows better
        )
        self._outcome: Outcome | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<Job {self.job_id} {self.name} {self._state.value}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # Reached only for a Job that dataflow did not swap for its result (see slurm.dataflow).
        raise SerializationError(
            f"job {self.job_id} ({self.name}) cannot travel to a job itself: a Job passed as an argument (also "
            "inside lists, tuples and dict values) is replaced by its result on the node, but not inside a set, "
            "a dict key or another object. Fix: pass it directly or in a list/tuple/dict, or pass job.result()"
        )

    @property
    def _dependency_ids(self) -> list[str]:
        return [self.job_id]

    def query_state(self) -> JobState:
        """Current state: asks the scheduler now (one query for every unfinished job of the cluster) unless
        the job already ended. ``last_state`` is the answer without asking."""
        if not self._state.is_terminal:
            self._check_result_file()
            self.cluster._poll([self])
        return self._state

    @property
    def last_state(self) -> JobState:
        """State as last observed, without asking the scheduler."""
        return self._state

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job ends; returns its final state. ``JobTimeoutError`` after ``timeout`` s."""
        wait_all([self], timeout)
        return self._state

    def result(self, timeout: float | None = None) -> Any:
        """The task's return value. If the task raised, re-raises its exception (original type when it
        unpickles here) with the remote traceback as ``__cause__``; ``JobFailedError`` if the job ended
        without a result (cancelled, killed, out of memory, time limit)."""
        with bounded(timeout):
            self.wait(timeout)
            return self._ended_result()

    def results_by_rank(self, timeout: float | None = None) -> list[Any]:
        """Every rank's return value, in rank order, of a task with ``nodes``/``ntasks_per_node``
        (``result()`` is rank 0's); ``[result()]`` for a one-process task. Raises like ``result()``:
        a failing rank fails the job, and the error names that rank and its node."""
        with bounded(timeout):
            self.wait(timeout)
            outcome = self.cluster._retry(self._load_outcome)
            if outcome is not None and outcome.ok:
                return outcome.values_by_rank(self.job_id)
            return [self._ended_result()]  # raises

    async def result_async(self, timeout: float | None = None) -> Any:
        """``result()`` for asyncio, also ``await job``: every job awaited on one event loop is watched by one
        driver task in shared rounds (see ``slurm.awaiting``), so many awaits cost one poll."""
        from slurm.awaiting import result_async

        return await result_async(self, timeout)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result_async().__await__()

    def _ended_result(self) -> Any:
        """``result()`` of a job known to have ended."""
        outcome = self.cluster._retry(self._load_outcome)
        if outcome is None:
            raise self._failure or self._no_result_error()
        if outcome.ok:
            with timing.phase("unpickle"):
                return outcome.value(self.job_id)
        raise outcome.exception(self.job_id)

    def cancel(self) -> None:
        self.cluster._retry(lambda: self.cluster.backend.cancel(self.job_id))

    def stdout(self) -> str:
        """The job's stdout so far (``follow_stdout`` keeps reading while the job runs)."""
        return self.cluster._retry(lambda: self._read_log(0))

    def stderr(self) -> str:
        """The job's stderr so far (where the SDK's runner header and tracebacks go)."""
        return self.cluster._retry(lambda: self._read_log(1))

    def follow_stdout(self, *, timeout: float | None = None) -> Iterator[str]:
        """The lines of the job's stdout: those so far, then new ones as they come, ending when the job has
        ended and the log is drained (``JobTimeoutError`` after ``timeout`` seconds)."""
        return self._follow_log("stdout", timeout)

    def follow_stderr(self, *, timeout: float | None = None) -> Iterator[str]:
        """Like ``follow_stdout``, for stderr."""
        return self._follow_log("stderr", timeout)

    def tail(
        self, lines: int = 10, *, stream: str = "stdout", follow: bool = True, timeout: float | None = None
    ) -> Iterator[str]:
        """The last ``lines`` lines of a log, then (``follow``) every new line until the job has ended and
        the log is drained, like ``tail -n LINES -f``. ``stream``: "stdout" or "stderr"."""
        from slurm.logs import follow as follow_logs

        if lines < 0:
            raise ValueError(f"lines={lines}: give 0 or more")
        if not follow:
            which = _stream_index(stream)
            text = self.cluster._retry(lambda: self._read_log(which))
            return iter(text.splitlines()[-lines:] if lines else [])
        return (line for _, line in follow_logs(self, (stream,), last=lines, timeout=timeout))

    def log_path(self, stream: str = "stdout") -> str:
        """Where the job's ``stream`` ("stdout" or "stderr") is written on the cluster side."""
        pattern = layout.log_patterns(self.job_dir, array=self._array)[_stream_index(stream)]
        array_id, _, index = self.job_id.partition("_")
        return expand_log_pattern(
            pattern, job_id=self.job_id, array_job_id=array_id, array_task_id=index, job_name=self.name
        )

    # --- internals ---------------------------------------------------------------------------------

    def _follow_log(self, stream: str, timeout: float | None) -> Iterator[str]:
        from slurm.logs import follow as follow_logs

        return (line for _, line in follow_logs(self, (stream,), timeout=timeout))

    def _read_log(self, which: int) -> str:
        path = self.log_path(LOG_STREAMS[which])
        transport = self.cluster.backend.transport
        return transport.read_bytes(path).decode(errors="replace") if transport.exists(path) else ""

    def _load_outcome(self) -> Outcome | None:
        if self._outcome is None:
            _fetch_outcomes([self])  # one stream, like a map's results (a big result is not fetched by SFTP)
        return self._outcome

    @property
    def _result_path(self) -> str:
        return layout.result_path(self.job_dir, self._index)

    def _no_result_error(self) -> JobFailedError:
        try:
            tail = "\n".join(self.stderr().splitlines()[-20:])
        except BackendError as error:
            tail = f"(stderr unreadable: {error})"
        detail = f"; last lines of stderr:\n{tail}" if tail else " and wrote nothing to stderr"
        if self._state is not JobState.OUT_OF_MEMORY and killed_for_memory(tail):
            return JobFailedError(
                f"job {self.job_id} ({self.name}) ran OUT_OF_MEMORY: Slurm killed it for using more memory than "
                f"it was allocated (scheduler state {self._state.value}); fix: ask for more, e.g. "
                f'.options(mem="2G"){detail}',
                job_id=self.job_id,
                state=JobState.OUT_OF_MEMORY.value,
            )
        return JobFailedError(
            f"job {self.job_id} ({self.name}) ended {self._state.value} without a result{detail}",
            job_id=self.job_id,
            state=self._state.value,
        )

    def _check_result_file(self) -> None:
        """End the job if its result file exists (one stat; the scheduler is not asked)."""
        _check_result_files([self])

    def _observe(self, status: JobStatus) -> None:
        """Record what the scheduler said and fire callbacks, each event at most once."""
        now = time.monotonic()
        with self._lock:  # held while callbacks run, so threads polling the same job cannot reorder events
            if self._state.is_terminal:
                return  # terminal states are final: the outcome callbacks fire once
            if status.state is JobState.UNKNOWN:
                self._observe_unknown(now, status.reason)
                return
            self._unknown_since, self._state_at = None, now
            self._note_restarts(status.restarts)
            if self._preempted_for_good(status.state, now):
                return
            if status.reason == NEVER_SATISFIED and status.state in (JobState.PENDING, JobState.CANCELLED):
                self._give_up_on_dependency(cancel=status.state is JobState.PENDING)
                return
            if status.state is JobState.PENDING and never_clears(status.reason):
                self._failure = pending_for_good(self, status.reason)
                self._set_state(JobState.CANCELLED)
                return
            self._set_state(status.state)

    def _observe_unknown(self, now: float, reason: str) -> None:
        """Not listed by the scheduler: done if the result file says so, lost once a later query agrees.
        ``reason``: what accounting still says of a job slurmctld has forgotten (or nothing)."""
        if self._load_outcome() is not None:
            self._finish_from_outcome()
        elif self._unknown_since is None:
            self._unknown_since = now
        elif now - self._unknown_since >= _LOST_AFTER:
            seen = f"last seen {self._state.value}" if self._state_at is not None else "not asked before"
            forgotten = (
                f"slurmctld drops finished jobs after MinJobAge; {reason}: slurmdbd never heard of its end"
                if reason
                else "finished jobs are dropped after MinJobAge when there is no accounting"
            )
            self._failure = JobFailedError(
                f"job {self.job_id} ({self.name}) is unknown to the scheduler ({seen}; not listed by two queries "
                f"{now - self._unknown_since:.0f}s apart) and left no result in {self.job_dir}: it ended without "
                f"a result and the scheduler has forgotten it ({forgotten})",
                job_id=self.job_id,
                state=JobState.LOST.value,
            )
            self._set_state(JobState.LOST)

    def _preempted_for_good(self, state: JobState, now: float) -> bool:
        """PREEMPTED is not final (the job is usually requeued): FAILED once it stays so for a while."""
        if state is not JobState.PREEMPTED:
            self._preempted_since = None
            return False
        self._preempted_since = self._preempted_since or now
        if now - self._preempted_since < _PREEMPTED_FINAL_AFTER:
            return False
        self._failure = JobFailedError(
            f"job {self.job_id} ({self.name}) was preempted and not requeued (still PREEMPTED after "
            f"{now - self._preempted_since:.0f}s): it has requeue=False, or its partition's PreemptMode cancels "
            "preempted jobs; submit it again, with checkpoint=True to resume where it stopped",
            job_id=self.job_id,
            state=JobState.PREEMPTED.value,
        )
        self._set_state(JobState.FAILED)
        return True

    def _give_up_on_dependency(self, *, cancel: bool) -> None:
        """Slurm keeps such a job pending forever unless kill_invalid_depend is set (then it cancels the
        job itself): cancel it if needed, and say which parent is at fault either way."""
        watcher = self.cluster._watcher
        who = "the SDK" if cancel else "Slurm"
        self._failure = JobFailedError(
            f"job {self.job_id} ({self.name}) can never start: its dependency {self.dependency_type} on "
            f"{watcher.describe_parents(self.depends_on)} cannot be satisfied (squeue reason {NEVER_SATISFIED}), "
            f"so {who} cancelled it",
            job_id=self.job_id,
            state=JobState.CANCELLED.value,
        )
        error = (
            watcher.cancel_once(self.job_id.partition("_")[0]) if cancel else None
        )  # one scancel per array
        if error is not None:
            self._failure.add_note(f"cancelling it failed: {error}; run scancel {self.job_id}")
        self._set_state(JobState.CANCELLED)

    def _set_state(self, state: JobState) -> None:
        old, self._state = self._state, state
        if state != old:
            emit(self.cluster.callbacks, "on_state_change", self, old, state)
        if state.is_terminal and self.cluster.callbacks:
            self._emit_outcome()

    def _note_restarts(self, count: int) -> None:
        """Report a requeue (once per count): state REQUEUED and ``on_requeue(job, count)``."""
        if count > self.restarts:
            self.restarts = count
            emit(self.cluster.callbacks, "on_requeue", self, count)
            self._set_state(JobState.REQUEUED)

    def _finish_from_outcome(self) -> None:
        """The result file exists: the job is done, whatever the scheduler says. The run that wrote it
        says how often the job was requeued before, so no requeue goes unreported between polls."""
        with self._lock:
            outcome = self._outcome
            if outcome is not None and not self._state.is_terminal:
                self._note_restarts(outcome.restarts)
                self._set_state(JobState.COMPLETED if outcome.ok else JobState.FAILED)

    def _emit_outcome(self) -> None:
        try:
            value = self._ended_result()
        except Exception as error:
            emit(self.cluster.callbacks, "on_failure", self, error)
        else:
            emit(self.cluster.callbacks, "on_complete", self, value)

    def _timeout_detail(self, now: float) -> str:
        """The truth about the last known state, for JobTimeoutError."""
        silence = self.cluster._watcher.silence(now)
        if self._state_at is None:
            known = f"submitted {now - self._submitted_at:.0f}s ago, state not reported by the scheduler yet"
        else:
            known = f"still {self._state.value} as of {now - self._state_at:.0f}s ago"
        return f"{known}; {silence}" if silence else known


def _stream_index(stream: str) -> int:
    if stream not in LOG_STREAMS:
        raise ValueError(f"unknown log stream {stream!r} (valid: {', '.join(LOG_STREAMS)})")
    return LOG_STREAMS.index(stream)


class MappedJobs(Sequence[Job]):
    """The jobs of one ``Cluster.map`` call, one per item (possibly split over several array jobs)."""

    def __init__(self, jobs: list[Job], array_ids: list[str]) -> None:
        self.jobs, self.array_ids = jobs, array_ids

    def __getitem__(self, index: Any) -> Any:
        return self.jobs[index]

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __repr__(self) -> str:
        return f"<MappedJobs {','.join(self.array_ids)} with {len(self.jobs)} tasks>"

    @property
    def _dependency_ids(self) -> list[str]:
        return list(self.array_ids)

    def query_states(self) -> list[JobState]:
        """Current states in item order, from one scheduler query for all of them."""
        _poll(self.jobs)
        return [job.last_state for job in self.jobs]

    def wait(self, timeout: float | None = None) -> list[JobState]:
        wait_all(self.jobs, timeout)
        return [job.last_state for job in self.jobs]

    def results(self, timeout: float | None = None) -> list[Any]:
        """Results in item order; raises the first failure (see ``Job.result``)."""
        self.wait(timeout)
        _fetch_outcomes(self.jobs)
        with timing.phase("unpickle"):
            return [job.result() for job in self.jobs]

    async def results_async(self, timeout: float | None = None) -> list[Any]:
        """``results()`` for asyncio, also ``await mapped_jobs`` (see ``Job.result_async``)."""
        from slurm.awaiting import results_async

        return await results_async(self, timeout)

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self.results_async().__await__()

    def cancel(self) -> None:
        for array_id in self.array_ids:
            self.jobs[0].cluster.backend.cancel(array_id)


def _fetch_outcomes(jobs: Sequence[Job], *, retry: bool = True) -> None:
    """Load the result files of many jobs in one transfer per cluster instead of a round trip per job."""
    for cluster, group in _by_cluster([job for job in jobs if job._outcome is None]):
        paths = [job._result_path for job in group]
        transport = cluster.backend.transport
        with timing.phase("fetch"):
            fetch = functools.partial(transport.read_existing, paths)
            files = cluster._retry(fetch) if retry else fetch()
        for job in group:
            if job._result_path in files:
                job._outcome = _load(job, files[job._result_path])


def _load(job: Job, data: bytes) -> Outcome:
    """The outcome in a result file fetched whole (the transport checks sizes; the runner writes it by
    rename): a file that does not parse was damaged on the cluster, which a retry does not mend."""
    try:
        return Outcome.load(data)
    except Exception as exc:
        raise SerializationError(
            f"the result file {job._result_path} of job {job.job_id} ({len(data):,} bytes) is damaged: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _by_cluster(jobs: Sequence[Job]) -> list[tuple[Cluster, list[Job]]]:
    groups: dict[int, list[Job]] = {}
    for job in jobs:
        groups.setdefault(id(job.cluster), []).append(job)
    return [(group[0].cluster, group) for group in groups.values()]


def _poll(jobs: Sequence[Job]) -> None:
    """One scheduler round trip per cluster for all of ``jobs`` (and the clusters' other unfinished jobs)."""
    for cluster, group in _by_cluster(jobs):
        cluster._poll(group)


def _check_result_files(jobs: Sequence[Job]) -> None:
    """End every job whose result file exists: one fetch per cluster of the result files not fetched yet
    (the transport sends back only those that exist), no scheduler query."""
    _fetch_outcomes(jobs, retry=False)  # a failed check is retried by the next one
    for job in jobs:
        if job._outcome is not None:
            job._finish_from_outcome()


class _LoginSilence:
    """When result-file checks keep failing (login node frozen or gone): for messages and the outage limit."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.error: BackendError | None = None

    def failed(self, error: BackendError) -> None:
        self.since, self.error = self.since or time.monotonic(), error

    def describe(self, now: float) -> str | None:
        if self.since is None:
            return None
        return f"the login node has not answered for {now - self.since:.0f}s (last error: {self.error})"


def result_check_pauses(limit: float = 1.0) -> Iterator[float]:
    """The pauses between a wait's result-file checks: 50 ms, then x1.25 each, up to ``limit`` (the
    cluster's ``result_poll_interval_seconds``). Benchmarks poll their raw baselines on this same cadence."""
    pause = _FIRST_RESULT_CHECK
    while True:
        yield pause
        pause = min(pause * _RESULT_CHECK_BACKOFF, limit)


def wait_all(jobs: Sequence[Job], timeout: float | None = None) -> None:
    """Wait until every job has ended: result files are checked often (from 50 ms, x1.25, up to the
    cluster's ``result_poll_interval_seconds``), the scheduler on the watcher's slower cadence. Transient errors
    are retried until ``timeout`` (``JobTimeoutError``, saying what was last known) or, without one, until
    the cluster's ``outage_limit_seconds`` (the last ``BackendError``)."""
    with timing.phase("wait"):
        for _ in as_completed(jobs, timeout):
            pass


def as_completed(jobs: Iterable[Job | MappedJobs], timeout: float | None = None) -> Iterator[Job]:
    """Each job (every task of a MappedJobs) once, as soon as it is seen to end, in the order they end.

    Costs what one wait on all of them costs (see ``wait_all``): one result-file listing per cluster per
    check, and the clusters' shared watchers for the scheduler. ``JobTimeoutError`` once ``timeout`` s
    have passed with jobs still unfinished (the time spent by the caller's loop body counts too)."""
    waiting = list(dict.fromkeys(_each_job(jobs)))
    deadline = None if timeout is None else time.monotonic() + timeout
    delay, login = _FIRST_RESULT_CHECK, _LoginSilence()
    while waiting:
        running = [job for job in waiting if not job.last_state.is_terminal]
        if running:
            with bounded(None if deadline is None else deadline - time.monotonic()):
                _watch_once(running, login)
        yield from [job for job in waiting if job.last_state.is_terminal]
        waiting = [job for job in waiting if not job.last_state.is_terminal]
        if not waiting:
            return
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise _timeout_error(waiting[0], timeout or 0, login, now)
        if deadline is None:
            _check_outage(waiting[0], login, now)
        pause = next_pause(waiting, delay, now)
        time.sleep(max(0.0, min(pause, deadline - now) if deadline is not None else pause))
        delay = next_delay(waiting, delay)


def _each_job(jobs: Iterable[Job | MappedJobs]) -> Iterator[Job]:
    for job in jobs:
        if isinstance(job, MappedJobs):
            yield from job
        else:
            yield job


def next_pause(running: Sequence[Job], delay: float, now: float) -> float:
    """How long a wait sleeps before its next check: the result-file delay, or less when a watcher's next
    scheduler query comes sooner."""
    return min(delay, *(job.cluster._watcher.next_query_at - now for job in running))


def next_delay(running: Sequence[Job], delay: float) -> float:
    """The result-file delay after one more check: x1.25, up to the clusters' ``result_poll_interval_seconds``."""
    return min(
        delay * _RESULT_CHECK_BACKOFF, max(job.cluster.result_poll_interval_seconds for job in running)
    )


def _watch_once(running: list[Job], login: _LoginSilence) -> None:
    try:
        _check_result_files(running)
        login.since = None
    except BackendError as error:
        if not error.transient:
            raise
        login.failed(error)
    for cluster, group in _by_cluster([job for job in running if not job.last_state.is_terminal]):
        cluster._watcher.query_if_due(group)


def _timeout_error(job: Job, timeout: float, login: _LoginSilence, now: float) -> JobTimeoutError:
    detail = job._timeout_detail(now)
    silent_login = login.describe(now)
    if silent_login and job.cluster._watcher.failing_since is None:
        detail = f"{detail}; {silent_login}"
    return JobTimeoutError(job.job_id, job.last_state.value, timeout, detail)


def _check_outage(job: Job, login: _LoginSilence, now: float) -> None:
    """Without a timeout the wait must still end: give up after ``outage_limit_seconds`` s of silence."""
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
