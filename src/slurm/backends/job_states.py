"""The states of a job as the scheduler reports them, and one state for a whole array.

A module of its own, with nothing but ``enum``: the local backend's launcher (a process per local job)
needs only these, not the backend interface and its imports.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class JobState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    #: Put back in the queue after a node failure or preemption; it will run again.
    REQUEUED = "REQUEUED"
    #: Preempted: Slurm requeues it (PreemptMode=REQUEUE) unless it may not be; the SDK keeps waiting and
    #: fails it only when it stays PREEMPTED (see Job).
    PREEMPTED = "PREEMPTED"
    #: The scheduler does not list the job (yet, or any more).
    UNKNOWN = "UNKNOWN"
    #: Final: the scheduler has forgotten the job (confirmed twice) and it left no result.
    LOST = "LOST"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.TIMEOUT,
        JobState.OUT_OF_MEMORY,
        JobState.NODE_FAIL,
        JobState.LOST,
    }
)


def array_state(states: Iterable[JobState]) -> JobState:
    """One state for a whole array from its tasks' states: live while any task is live (PENDING only while
    all are), then COMPLETED if all completed, else the first task's bad ending."""
    states = list(states)
    if not all(state.is_terminal for state in states):
        return JobState.PENDING if all(state is JobState.PENDING for state in states) else JobState.RUNNING
    failures = [state for state in states if state is not JobState.COMPLETED]
    return failures[0] if failures else JobState.COMPLETED
