"""Handles on submitted jobs: state, waiting, results, logs, cancellation, callbacks."""

from __future__ import annotations

import collections
import threading
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from slurm import timing, waiting
from slurm.backends.base import NEVER_SATISFIED, JobState, JobStatus
from slurm.backends.slurm import killed_for_memory
from slurm.deadline import bounded
from slurm.errors import BackendError, JobFailedError, SerializationError
from slurm.events import emit
from slurm.limits import OwnJobsCap, never_clears, pending_for_good
from slurm.node import layout
from slurm.rendering import expand_log_pattern
from slurm.serialization import Outcome
from slurm.waiting import as_completed, wait_all

if TYPE_CHECKING:
    from slurm.cluster import Cluster

__all__ = ["LOG_STREAMS", "Job", "MappedJobs", "as_completed", "wait_all"]

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
        self._submitted_at = cluster._watcher.clock.now()
        self._state_at: float | None = None  # monotonic time the scheduler last told us the state
        self._unknown_since: float | None = None
        self._own_jobs_cap = OwnJobsCap()  # when a pending reason that only running jobs clear never will
        self._preempted_since: float | None = None
        self._failure: JobFailedError | None = (
            None  # why it ended without a result, when the SDK knows better
        )
        self._outcome: Outcome | None = None
        #: What result() gives, once worked out: (True, value) or (False, the error to raise).
        self._settled: tuple[bool, Any] | None = None
        self._lock = threading.RLock()  # guards state changes; never held while a callback runs
        self._settling = threading.Lock()  # one unpickling of the result, however many threads ask
        #: Callback events observed but not yet delivered, in order; delivered outside every lock.
        self._events: collections.deque[tuple[str, tuple[Any, ...]]] = collections.deque()
        self._delivering = False
        #: An observation found the job can never start: the SDK cancels it (``_cancel_if_due``) when
        #: delivering, never under a lock: scancel is a remote command.
        self._cancel_due = False

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
            waiting.poll([self])
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
        """``result()`` of a job known to have ended. The value is unpickled once (also for callbacks);
        every later call returns that same object. A cancel still due runs first: the error of a job the
        SDK cancels is never raised before the cancel was sent."""
        self._cancel_if_due()
        with self._settling:
            if self._settled is None:
                outcome = self.cluster._retry(self._load_outcome)
                if outcome is None:  # not kept: a result file may yet appear (shared file system lag)
                    raise self._failure or self._no_result_error()
                if outcome.ok:
                    with timing.phase("unpickle"):
                        self._settled = (True, outcome.value(self.job_id))
                else:
                    self._settled = (False, outcome.exception(self.job_id))
            ok, value = self._settled
        if ok:
            return value
        raise value

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
            waiting.fetch_outcomes(
                [self]
            )  # one stream, like a map's results (a big result is not fetched by SFTP)
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
        waiting.check_result_files([self])

    def _observe(self, status: JobStatus) -> None:
        """Record what the scheduler said; the callback events it causes wait in ``_events`` (each at most
        once) until ``_deliver_events``, which the watcher calls once it holds no lock."""
        now = self.cluster._watcher.clock.now()
        with self._lock:
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
            if status.state is JobState.PENDING and (
                never_clears(status.reason)
                or self._own_jobs_cap.never_clears(status.reason, now, self.cluster.backend.running_jobs)
            ):
                self._failure = pending_for_good(self.job_id, self.name, status.reason)
                self._cancel_due = True
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
        elif now - self._unknown_since >= waiting.LOST_AFTER:
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
        if now - self._preempted_since < waiting.PREEMPTED_FINAL_AFTER:
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
        job itself): cancel it if needed (when delivering: ``_cancel_if_due``), and say which parent is at
        fault either way."""
        watcher = self.cluster._watcher
        who = "the SDK" if cancel else "Slurm"
        self._failure = JobFailedError(
            f"job {self.job_id} ({self.name}) can never start: its dependency {self.dependency_type} on "
            f"{watcher.describe_parents(self.depends_on)} cannot be satisfied (squeue reason {NEVER_SATISFIED}), "
            f"so {who} cancelled it",
            job_id=self.job_id,
            state=JobState.CANCELLED.value,
        )
        self._cancel_due = cancel
        self._set_state(JobState.CANCELLED)

    def _set_state(self, state: JobState) -> None:
        """Under ``_lock``: the new state, and its callback events queued in the order observed."""
        old, self._state = self._state, state
        if state != old:
            self._queue_event("on_state_change", old, state)
        if state.is_terminal:
            self._queue_event("outcome")

    def _note_restarts(self, count: int) -> None:
        """Report a requeue (once per count): state REQUEUED and ``on_requeue(job, count)``."""
        if count > self.restarts:
            self.restarts = count
            self._queue_event("on_requeue", count)
            self._set_state(JobState.REQUEUED)

    def _queue_event(self, event: str, *args: Any) -> None:
        if self.cluster.callbacks:
            self._events.append((event, args))

    @property
    def _outcome_pending(self) -> bool:
        """An ``on_complete``/``on_failure`` waits for this job's result file to be read."""
        return self._outcome is None and any(event == "outcome" for event, _ in self._events)

    def _deliver_events(self) -> None:
        """Run the callbacks of the events observed so far, in order, with no lock held: one thread
        delivers at a time (others leave their events to it), so callbacks of one job never overlap or
        reorder, and a callback may call anything on the job (``result()``, ``query_state()``...). A
        cancel an observation called for runs first, also with no lock held."""
        self._cancel_if_due()
        with self._lock:
            if self._delivering or not self._events:
                return
            self._delivering = True
        try:
            while True:
                with self._lock:
                    if not self._events:
                        self._delivering = False
                        return
                    event, args = self._events.popleft()
                if event == "outcome":
                    self._emit_outcome()
                else:
                    emit(self.cluster.callbacks, event, self, *args)
        except BaseException:
            with self._lock:
                self._delivering = False
            raise

    def _cancel_if_due(self) -> None:
        """The scancel an observation called for (``_cancel_due``), with no lock of the job held: one per
        array (``Watcher.cancel_once``; a caller meanwhile waits for that one). A failed scancel is noted
        on the error ``result()`` raises."""
        with self._lock:
            if not self._cancel_due:
                return
        error = self.cluster._watcher.cancel_once(self.job_id.partition("_")[0])
        with self._lock:
            if self._cancel_due:
                self._cancel_due = False
                if error is not None and self._failure is not None:
                    self._failure.add_note(f"cancelling it failed: {error}; run scancel {self.job_id}")

    def _finish_from_outcome(self) -> None:
        """The result file exists: the job is done, whatever the scheduler says. The run that wrote it
        says how often the job was requeued before, so no requeue goes unreported between polls."""
        with self._lock:
            outcome = self._outcome
            if outcome is not None and not self._state.is_terminal:
                self._note_restarts(outcome.restarts)
                self._set_state(JobState.COMPLETED if outcome.ok else JobState.FAILED)

    def _emit_outcome(self) -> None:
        """``on_complete`` with the value ``result()`` gives (the same object, unpickled once), or
        ``on_failure`` with the error it raises."""
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
        waiting.poll(self.jobs)
        return [job.last_state for job in self.jobs]

    def wait(self, timeout: float | None = None) -> list[JobState]:
        wait_all(self.jobs, timeout)
        return [job.last_state for job in self.jobs]

    def results(self, timeout: float | None = None) -> list[Any]:
        """Results in item order; raises the first failure (see ``Job.result``)."""
        self.wait(timeout)
        waiting.fetch_outcomes(self.jobs)
        with timing.phase("unpickle"):
            return [job.result() for job in self.jobs]

    async def results_async(self, timeout: float | None = None) -> list[Any]:
        """``results()`` for asyncio, also ``await mapped_jobs`` (see ``Job.result_async``)."""
        from slurm.awaiting import results_async

        return await results_async(self, self.results, timeout)

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self.results_async().__await__()

    def cancel(self) -> None:
        for array_id in self.array_ids:
            self.jobs[0].cluster.backend.cancel(array_id)
