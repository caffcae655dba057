"""The interface every backend implements, and the job states it reports.

A ``Backend`` says *how* jobs run (real Slurm commands through a transport, or local subprocesses); the
``Transport`` it runs them through (``slurm.transports``) says *where* commands run and files live.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slurm.limits import SubmitLimit

from slurm.backends.job_states import TERMINAL_STATES, JobState, array_state
from slurm.transports.base import Transport

__all__ = [
    "DEPENDENCY_TYPES",
    "JOB_ID",
    "NEVER_SATISFIED",
    "TERMINAL_STATES",
    "UNKNOWN_STATUS",
    "Backend",
    "JobState",
    "JobStatus",
    "array_state",
]

#: The sbatch ``--dependency`` types the SDK offers (``Task.after(..., dependency_type=...)``); every backend
#: takes them.
DEPENDENCY_TYPES = ("afterok", "afterany", "afternotok")
#: squeue's reason for a pending job whose dependency can never be met (a parent ended the wrong way).
NEVER_SATISFIED = "DependencyNeverSatisfied"


@dataclass(frozen=True)
class JobStatus:
    """What the scheduler said about one job: its state, why it is pending (squeue's reason, e.g.
    "DependencyNeverSatisfied"; for an UNKNOWN job slurmctld forgot, what accounting still says of it),
    and how often it was requeued (Slurm's restart count)."""

    state: JobState
    reason: str = ""
    restarts: int = 0


UNKNOWN_STATUS = JobStatus(JobState.UNKNOWN)
#: A job id as sbatch prints it, or one array task of it ("123_4").
JOB_ID = re.compile(r"(?P<base>[0-9]+)(?:_(?P<index>[0-9]+))?")


class Backend(ABC):
    """Submits job scripts and reports their states. Job ids are strings; array tasks are ``"<id>_<index>"``."""

    #: The config ``type`` this backend is built from ("slurm", "local"); a workflow's children inside the
    #: allocation build the same one (over SSH or not, it is Slurm's backend: SSH is only its transport).
    type_name: str
    transport: Transport

    @abstractmethod
    def submit(
        self,
        script_path: str,
        *,
        array: str | None = None,
        dependencies: Sequence[str] = (),
        dependency_type: str = "afterok",
    ) -> str:
        """Submit the script (already written through ``transport``); return the job id.

        ``array`` is an sbatch array spec such as ``"0-99"`` or ``"0-99%10"``.
        """

    @abstractmethod
    def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """States of many jobs in one round trip. Unknown ids map to ``JobState.UNKNOWN``."""

    def statuses(
        self, job_ids: Sequence[str], *, reasons_for: Collection[str] = (), background: bool = False
    ) -> dict[str, JobStatus]:
        """Like ``states``, with the restart count and, where the backend knows, why pending jobs pend;
        ``reasons_for`` (the jobs with dependencies) also asks why a cancelled one was cancelled.
        ``background``: a wait's poll, not a caller asking now; a backend may answer it more cheaply."""
        return {job_id: JobStatus(state) for job_id, state in self.states(job_ids).items()}

    def find_submitted(self, script_path: str) -> str | None:
        """The id of a job already submitted from ``script_path``, or None: asked when a submission's
        answer was lost, so a retry never submits the same job twice. Backends that cannot lose an
        answer keep this default."""
        return None

    @abstractmethod
    def cancel(self, job_id: str) -> None: ...

    def max_array_size(self) -> int:
        """Largest array index + 1 the scheduler accepts (Slurm's MaxArraySize)."""
        return 1001

    def submit_limit(self) -> SubmitLimit | None:
        """How many jobs the user may have pending or running at once, where the scheduler says; None:
        no limit known."""
        return None

    def queued_jobs(self) -> int:
        """The user's jobs pending or running now, as ``submit_limit`` counts them."""
        return 0

    def running_jobs(self) -> int | None:
        """How many of the user's jobs run now (any client's); None: not known."""
        return None

    def sched_interval(self) -> int | None:
        """Seconds between the scheduler's main passes (Slurm's ``sched_interval``); None: not known."""
        return None

    def close(self) -> None:
        self.transport.close()
