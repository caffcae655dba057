"""Handles on submitted jobs: state, waiting, results, logs, cancellation, callbacks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from slurm.backends.base import JobState
from slurm.callbacks import emit
from slurm.errors import JobFailedError, JobTimeoutError
from slurm.rendering import expand_log_pattern, log_patterns
from slurm.serialization import Outcome

if TYPE_CHECKING:
    from slurm.cluster import Cluster

_FIRST_POLL_DELAY = 0.05
#: Growth of the pause between polls: gentle, so a job that ends at 0.7 s is seen within ~0.15 s of it
#: (polls are one cheap batched query; the cap is the cluster's poll_interval).
_POLL_BACKOFF = 1.25


class Job:
    """One submitted job, or one task of an array job (``job_id`` "<array id>_<index>")."""

    def __init__(self, cluster: Cluster, job_id: str, *, name: str, job_dir: str, script: str,
                 index: int = 0, array: bool = False) -> None:
        self.cluster, self.job_id, self.name, self.job_dir, self.script = cluster, job_id, name, job_dir, script
        self._index, self._array = index, array
        self._state = JobState.PENDING
        self._outcome: Outcome | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<Job {self.job_id} {self.name} {self._state.value}>"

    @property
    def dependency_ids(self) -> list[str]:
        return [self.job_id]

    @property
    def state(self) -> JobState:
        """Current state (asks the scheduler)."""
        self.cluster.poll([self])
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
        self.wait(timeout)
        outcome = self._load_outcome()
        if outcome is None:
            raise self._no_result_error()
        if outcome.ok:
            return outcome.value(self.job_id)
        raise outcome.exception(self.job_id)

    def cancel(self) -> None:
        self.cluster.backend.cancel(self.job_id)

    @overload
    def stdout(self, follow: Literal[False] = False, *, timeout: float | None = None) -> str: ...
    @overload
    def stdout(self, follow: Literal[True], *, timeout: float | None = None) -> Iterator[str]: ...

    def stdout(self, follow: bool = False, *, timeout: float | None = None) -> str | Iterator[str]:
        """The job's stdout so far; with ``follow=True`` an iterator of its lines that keeps going while
        the job runs and ends when the job has ended and the log is drained (``JobTimeoutError`` after
        ``timeout`` s)."""
        return self._follow_log("stdout", timeout) if follow else self._read_log(0)

    @overload
    def stderr(self, follow: Literal[False] = False, *, timeout: float | None = None) -> str: ...
    @overload
    def stderr(self, follow: Literal[True], *, timeout: float | None = None) -> Iterator[str]: ...

    def stderr(self, follow: bool = False, *, timeout: float | None = None) -> str | Iterator[str]:
        """Like ``stdout``, for stderr (where the SDK's runner header and tracebacks go)."""
        return self._follow_log("stderr", timeout) if follow else self._read_log(1)

    def tail(self, lines: int = 10, *, stream: str = "stdout", follow: bool = True,
             timeout: float | None = None) -> Iterator[str]:
        """The last ``lines`` lines of a log, then (``follow``) every new line until the job has ended and
        the log is drained, like ``tail -n LINES -f``. ``stream``: "stdout" or "stderr"."""
        from slurm.logs import follow as follow_logs
        if not follow:
            return iter(self._read_log(("stdout", "stderr").index(stream)).splitlines()[-lines:] if lines else [])
        return (line for _, line in follow_logs(self, (stream,), last=lines, timeout=timeout))

    def log_path(self, stream: str = "stdout") -> str:
        """Where the job's ``stream`` ("stdout" or "stderr") is written on the cluster side."""
        pattern = log_patterns(self.job_dir, array=self._array)[("stdout", "stderr").index(stream)]
        array_id, _, index = self.job_id.partition("_")
        return expand_log_pattern(pattern, job_id=self.job_id, array_job_id=array_id, array_task_id=index,
                                  job_name=self.name)

    # --- internals ---------------------------------------------------------------------------------

    def _follow_log(self, stream: str, timeout: float | None) -> Iterator[str]:
        from slurm.logs import follow as follow_logs
        return (line for _, line in follow_logs(self, (stream,), timeout=timeout))

    def _read_log(self, which: int) -> str:
        path = self.log_path(("stdout", "stderr")[which])
        transport = self.cluster.backend.transport
        return transport.read_bytes(path).decode(errors="replace") if transport.exists(path) else ""

    def _load_outcome(self) -> Outcome | None:
        if self._outcome is None:
            transport = self.cluster.backend.transport
            if transport.exists(self._result_path):
                self._outcome = Outcome.load(transport.read_bytes(self._result_path))
        return self._outcome

    @property
    def _result_path(self) -> str:
        return f"{self.job_dir}/result-{self._index}.pkl"

    def _no_result_error(self) -> JobFailedError:
        tail = "\n".join(self.stderr().splitlines()[-20:])
        detail = f"; last lines of stderr:\n{tail}" if tail else " and wrote nothing to stderr"
        return JobFailedError(f"job {self.job_id} ({self.name}) ended {self._state.value} without a result"
                              f"{detail}", job_id=self.job_id, state=self._state.value)

    def _observe(self, state: JobState) -> None:
        """Record a polled state and fire callbacks, each event at most once."""
        if state is JobState.UNKNOWN:
            state = self._state_from_outcome() or state  # scheduler forgot the job; the result file did not
        # Held while the callbacks run, so threads polling the same job cannot reorder events.
        with self._lock:
            if self._state.is_terminal:
                return  # terminal states are final: the outcome callbacks fire once
            old, self._state = self._state, state
            if state != old:
                emit(self.cluster.callbacks, "on_state_change", self, old, state)
            if state.is_terminal and self.cluster.callbacks:
                self._emit_outcome()

    def _state_from_outcome(self) -> JobState | None:
        outcome = self._load_outcome()
        if outcome is None:
            return None
        return JobState.COMPLETED if outcome.ok else JobState.FAILED

    def _emit_outcome(self) -> None:
        try:
            value = self.result(timeout=0)
        except Exception as error:
            emit(self.cluster.callbacks, "on_failure", self, error)
        else:
            emit(self.cluster.callbacks, "on_complete", self, value)


class ArrayJob(Sequence[Job]):
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
        return f"<ArrayJob {','.join(self.array_ids)} with {len(self.jobs)} tasks>"

    @property
    def dependency_ids(self) -> list[str]:
        return list(self.array_ids)

    @property
    def states(self) -> list[JobState]:
        _poll(self.jobs)
        return [job.last_state for job in self.jobs]

    def wait(self, timeout: float | None = None) -> list[JobState]:
        wait_all(self.jobs, timeout)
        return [job.last_state for job in self.jobs]

    def results(self, timeout: float | None = None) -> list[Any]:
        """Results in item order; raises the first failure (see ``Job.result``)."""
        self.wait(timeout)
        _fetch_outcomes(self.jobs)
        return [job.result() for job in self.jobs]

    def cancel(self) -> None:
        for array_id in self.array_ids:
            self.jobs[0].cluster.backend.cancel(array_id)


def _fetch_outcomes(jobs: Sequence[Job]) -> None:
    """Load the result files of many jobs in one transfer per cluster instead of a round trip per job."""
    pending = [job for job in jobs if job._outcome is None]
    by_cluster: dict[int, list[Job]] = {}
    for job in pending:
        by_cluster.setdefault(id(job.cluster), []).append(job)
    for group in by_cluster.values():
        files = group[0].cluster.backend.transport.read_existing([job._result_path for job in group])
        for job in group:
            if job._result_path in files:
                job._outcome = Outcome.load(files[job._result_path])


def _poll(jobs: Sequence[Job]) -> None:
    """One scheduler round trip per cluster for all of ``jobs``."""
    by_cluster: dict[int, list[Job]] = {}
    for job in jobs:
        by_cluster.setdefault(id(job.cluster), []).append(job)
    for group in by_cluster.values():
        group[0].cluster.poll(group)


def wait_all(jobs: Sequence[Job], timeout: float | None = None) -> None:
    """Poll until every job has ended, backing off from 50 ms up to the clusters' poll interval."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = _FIRST_POLL_DELAY
    while True:
        running = [job for job in jobs if not job.last_state.is_terminal]
        if running:
            _poll(running)
            running = [job for job in running if not job.last_state.is_terminal]
        if not running:
            return
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise JobTimeoutError(running[0].job_id, running[0].last_state.value, timeout or 0)
        time.sleep(delay if remaining is None else min(delay, remaining))
        delay = min(delay * _POLL_BACKOFF, max(job.cluster.poll_interval for job in running))
