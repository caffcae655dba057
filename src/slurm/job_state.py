"""What a job is observed to be: the state machine ``Job`` is built on. The cluster's watcher reports what the
scheduler says (``_observe``); the job turns that into its state, the reason it ended without a result
when the SDK knows better (a dependency that can never be met, a pending reason that never clears, a
preemption without requeue, a job the scheduler forgot) and the callback events it owes, delivered
outside every lock (``_deliver_events``).

What a job needs of its cluster is typed here as a Protocol (``JobCluster``), so that neither this module
nor ``slurm.job`` imports ``slurm.cluster``, not even for a type checker (``.ci/typed-imports.toml``)."""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from slurm import waiting
from slurm.backends.base import NEVER_SATISFIED, JobState, JobStatus
from slurm.errors import JobFailedError
from slurm.events import emit
from slurm.limits import CLEARED_BY_OWN_JOBS, OwnJobsCap, never_clears, own_jobs_hold, pending_for_good
from slurm.waiting import WaitedCluster

if TYPE_CHECKING:
    from slurm.serialization import Outcome
    from slurm.watcher import Watcher


class JobCluster(WaitedCluster, Protocol):
    """A job's cluster as jobs use it (``slurm.cluster.Cluster``): its backend, its watcher, its callbacks,
    its retries and its job root."""

    @property
    def _watcher(self) -> Watcher: ...
    @property
    def callbacks(self) -> Sequence[Any]: ...
    def resolve_job_root(self) -> str: ...


class ObservedJob:
    """A job's state as observed, and the callback events that state owes (the base of ``Job``)."""

    def __init__(
        self,
        cluster: JobCluster,
        job_id: str,
        *,
        name: str,
        job_dir: str,
        depends_on: Sequence[str] = (),
        dependency_type: str = "afterok",
    ) -> None:
        self.cluster, self.job_id, self.name, self.job_dir = cluster, job_id, name, job_dir
        #: Ids of the jobs this one waits for, and how (Slurm dependency type).
        self.depends_on, self.dependency_type = tuple(depends_on), dependency_type
        self._restarts = 0  # requeues reported by the scheduler's statuses (see ``restarts``)
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
        self._lock = threading.RLock()  # guards state changes; never held while a callback runs
        #: Callback events observed but not yet delivered, in order; delivered outside every lock.
        self._events: collections.deque[tuple[str, tuple[Any, ...]]] = collections.deque()
        self._delivering = False
        #: An observation found the job can never start: the SDK cancels it (``_cancel_if_due``) when
        #: delivering, never under a lock: scancel is a remote command.
        self._cancel_due = False

    # --- what observing needs of the job's result (``Job`` gives it) --------------------------------

    def _load_outcome(self) -> Outcome | None:
        raise NotImplementedError

    def _ended_result(self) -> Any:
        raise NotImplementedError

    # --- observing ---------------------------------------------------------------------------------

    def _observe(self, status: JobStatus) -> None:
        """Record what the scheduler said; the callback events it causes wait in ``_events`` (each at most
        once) until ``_deliver_events``, which the watcher calls once it holds no lock."""
        now = self.cluster._watcher.clock.now()
        # The user's running jobs are counted (a remote command, cached per backend) before the lock is
        # taken, so a reader of this job's state never waits on that round trip.
        # So is how long such a cap must hold: one of the cluster's scheduling passes (asked once).
        capped = status.state is JobState.PENDING and status.reason.strip() in CLEARED_BY_OWN_JOBS
        running = self.cluster.backend.running_jobs() if capped else None
        hold = own_jobs_hold(self.cluster.backend.sched_interval() if capped else None)
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
                or self._own_jobs_cap.never_clears(status.reason, now, lambda: running, hold)
            ):
                self._failure = pending_for_good(self.job_id, self.name, status.reason, hold)
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
            self._fail(
                f"job {self.job_id} ({self.name}) is unknown to the scheduler ({seen}; not listed by two queries "
                f"{now - self._unknown_since:.0f}s apart) and left no result in {self.job_dir}: it ended without "
                f"a result and the scheduler has forgotten it ({forgotten})",
                JobState.LOST,
            )

    def _preempted_for_good(self, state: JobState, now: float) -> bool:
        """PREEMPTED is not final (the job is usually requeued): FAILED once it stays so for a while."""
        if state is not JobState.PREEMPTED:
            self._preempted_since = None
            return False
        self._preempted_since = self._preempted_since or now
        if now - self._preempted_since < waiting.PREEMPTED_FINAL_AFTER:
            return False
        self._fail(
            f"job {self.job_id} ({self.name}) was preempted and not requeued (still PREEMPTED after "
            f"{now - self._preempted_since:.0f}s): it has requeue=False, or its partition's PreemptMode cancels "
            "preempted jobs; submit it again, with checkpoint=True to resume where it stopped",
            JobState.FAILED,
            reported=JobState.PREEMPTED,
        )
        return True

    def _give_up_on_dependency(self, *, cancel: bool) -> None:
        """Slurm keeps such a job pending forever unless kill_invalid_depend is set (then it cancels the
        job itself): cancel it if needed (when delivering: ``_cancel_if_due``), and say which parent is at
        fault either way."""
        watcher = self.cluster._watcher
        who = "the SDK" if cancel else "Slurm"
        self._cancel_due = cancel
        self._fail(
            f"job {self.job_id} ({self.name}) can never start: its dependency {self.dependency_type} on "
            f"{watcher.describe_parents(self.depends_on)} cannot be satisfied (squeue reason {NEVER_SATISFIED}), "
            f"so {who} cancelled it",
            JobState.CANCELLED,
        )

    def _fail(self, message: str, state: JobState, *, reported: JobState | None = None) -> None:
        """Under ``_lock``: the job ends in ``state``, and waiting on it raises ``message``; the error names
        ``reported`` as the job's state when that is what the scheduler said (PREEMPTED, ending FAILED)."""
        self._failure = JobFailedError(message, job_id=self.job_id, state=(reported or state).value)
        self._set_state(state)

    def _set_state(self, state: JobState) -> None:
        """Under ``_lock``: the new state, and its callback events queued in the order observed."""
        old, self._state = self._state, state
        if state != old:
            self._queue_event("on_state_change", old, state)
        if state.is_terminal:
            self._queue_event("outcome")

    @property
    def restarts(self) -> int:
        """How often this job was requeued (node failure, preemption, a checkpoint's time-limit requeue), as
        last observed: by the scheduler, or by the run that wrote the result file, which counts its own
        requeues. That count stands also when a query saw the job end before its result file was read (a
        backend whose statuses carry no restart count, like the local one, then reported none)."""
        outcome = self._outcome
        return max(self._restarts, outcome.restarts if outcome is not None else 0)

    def _note_restarts(self, count: int) -> None:
        """Report a requeue (once per count): state REQUEUED and ``on_requeue(job, count)``."""
        if count > self._restarts:
            self._restarts = count
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
