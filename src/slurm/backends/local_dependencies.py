"""A local job's dependencies: the launcher waits until they allow the job to start, or cancels it with
the reason when they never will (as Slurm does with ``kill_invalid_depend``)."""

from __future__ import annotations

import os
import time

from slurm.backends.job_states import JobState
from slurm.backends.local_job_env import log_paths
from slurm.backends.local_state import LocalStateDir, elements
from slurm.node.atomic import write_atomic

TYPE_CHECKING = False  # not from typing: the local backend's launcher imports this for every local job
if TYPE_CHECKING:
    from typing import Any

#: The launcher's dependency polling: from _FIRST_POLL, x_POLL_BACKOFF per look, up to _POLL. Local jobs
#: should feel instant: a dependency that ends within the first tenth of a second (a quick parent, the usual
#: case in a chain of local jobs) is seen within ~10 ms, not ~25 ms on average; a long wait costs no more.
_FIRST_POLL = 0.01
_POLL_BACKOFF = 1.25
_POLL = 0.05


def wait_for_dependencies(jobs: LocalStateDir, record: dict[str, Any]) -> bool:
    """Block until the dependencies allow the job to start; False if they never will (job cancelled)."""
    pause = _FIRST_POLL
    while True:
        if all(jobs._read_state(element).is_terminal for element in elements(record)):
            return False  # cancelled while waiting
        states = {dep: jobs._state_of(dep) for dep in record["dependencies"]}
        # A dependency without a state file (removed, or an array task that does not exist) would
        # never end: like Slurm's invalid dependency, it can never be satisfied.
        missing = [dep for dep, state in states.items() if state is JobState.UNKNOWN]
        verdict = False if missing else _dependency_verdict(record["dependency_type"], list(states.values()))
        if verdict is None:
            time.sleep(pause)
            pause = min(pause * _POLL_BACKOFF, _POLL)
            continue
        if not verdict:
            reason = ", ".join(
                f"{dep} has no state in {jobs._path('states')}" if dep in missing else f"{dep} {state.value}"
                for dep, state in states.items()
            )
            os.makedirs(jobs._path("never_satisfied"), exist_ok=True)
            for element in elements(record):  # before the state, so no poll sees CANCELLED without why
                write_atomic(jobs._path("never_satisfied", element), reason.encode())
            cancel_unstarted(
                jobs, record, f"DependencyNeverSatisfied ({record['dependency_type']}: {reason})"
            )
        return verdict


def cancel_unstarted(jobs: LocalStateDir, record: dict[str, Any], reason: str) -> None:
    with jobs._locked():
        for element in elements(record):
            if not jobs._read_state(element).is_terminal:
                # The log first: readers take the state without the lock, and a CANCELLED state must
                # never be seen before the line that says why.
                _, error = log_paths(record, element)
                write_atomic(error, f"slurm-sdk local backend: job cancelled: {reason}\n".encode())
                jobs._write_state(element, JobState.CANCELLED)


def _dependency_verdict(kind: str, states: list[JobState]) -> bool | None:
    """True: may start; False: never will; None: not yet."""
    if kind == "afterok" and any(s.is_terminal and s is not JobState.COMPLETED for s in states):
        return False
    if kind == "afternotok" and JobState.COMPLETED in states:
        return False
    return True if all(state.is_terminal for state in states) else None
