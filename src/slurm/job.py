"""Handles on submitted jobs: state, waiting, results, logs, cancellation, callbacks (how a job's state
follows what the scheduler says is ``slurm.job_state``)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from slurm import timing, waiting
from slurm.backends.base import JobState
from slurm.backends.slurm_output import killed_for_memory
from slurm.deadline import bounded
from slurm.errors import BackendError, JobFailedError, SerializationError
from slurm.job_state import JobCluster, ObservedJob
from slurm.node import layout
from slurm.node.layout import expand_log_pattern
from slurm.serialization import Outcome
from slurm.waiting import as_completed, wait_all

__all__ = ["LOG_STREAMS", "Job", "MappedJobs", "as_completed", "wait_all"]

#: The logs every job writes, in the order of ``log_patterns``.
LOG_STREAMS = ("stdout", "stderr")


class Job(ObservedJob):
    """One submitted job, or one task of an array job (``job_id`` "<array id>_<index>"). Its state and the
    callbacks it owes come from ``slurm.job_state.ObservedJob``; here its result, logs and cancel."""

    def __init__(
        self,
        cluster: JobCluster,
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
        super().__init__(
            cluster,
            job_id,
            name=name,
            job_dir=job_dir,
            depends_on=depends_on,
            dependency_type=dependency_type,
        )
        self.script = script
        self._index, self._array = index, array
        #: What result() gives, once worked out: (True, value) or (False, the error to raise).
        self._settled: tuple[bool, Any] | None = None
        self._settling = threading.Lock()  # one unpickling of the result, however many threads ask

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

    @functools.cached_property
    def _result_path(self) -> str:
        # Worked out once: every check of a wait lists the result files of every job it waits on.
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
