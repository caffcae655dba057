"""The two interfaces every backend is built from.

A ``Transport`` says *where* commands run and files live (this host, or a login node over SSH).
A ``Backend`` says *how* jobs run (real Slurm commands through a transport, or local subprocesses).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Longest any single command may run when its caller gave no timeout: nothing blocks forever.
COMMAND_TIMEOUT = 300.0
#: What every transport puts before each command: whatever the SDK creates on the cluster (directories,
#: files, the venvs it builds, the jobs sbatch submits, which inherit the umask, and their logs) is the
#: user's alone: 0700 directories, 0600 files. Files the transports write themselves are created 0600.
PRIVATE_UMASK = "umask 077; "
#: The sbatch ``--dependency`` types the SDK offers (``Task.after(..., dependency_type=...)``); every backend
#: takes them.
DEPENDENCY_TYPES = ("afterok", "afterany", "afternotok")
#: squeue's reason for a pending job whose dependency can never be met (a parent ended the wrong way).
NEVER_SATISFIED = "DependencyNeverSatisfied"


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


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


@dataclass(frozen=True)
class JobStatus:
    """What the scheduler said about one job: its state, why it is pending (squeue's reason, e.g.
    "DependencyNeverSatisfied"; for an UNKNOWN job slurmctld forgot, what accounting still says of it),
    and how often it was requeued (Slurm's restart count)."""

    state: JobState
    reason: str = ""
    restarts: int = 0


UNKNOWN_STATUS = JobStatus(JobState.UNKNOWN)


class Transport(ABC):
    """Runs shell commands and moves files on the machine where jobs are submitted."""

    @abstractmethod
    def run(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``command`` through ``sh -c``; raise ``CommandError`` on non-zero exit if ``check``."""

    @abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, path: str, data: bytes, mode: int | None = None) -> None:
        """Write atomically (temp file + rename), creating parent directories."""

    def write_files(self, directory: str, files: Mapping[str, tuple[bytes, int]]) -> None:
        """Create ``directory`` (parents too) holding ``files`` (name -> (data, mode)). Written in the
        order given, each complete before the next, so the last one may be what a reader waits for.
        Transports where each file costs round trips override this to send them all at once."""
        for name, (data, mode) in files.items():
            self.write_bytes(f"{directory}/{name}", data, mode=mode)

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def makedirs(self, path: str) -> None: ...

    @abstractmethod
    def put(self, local_path: str, remote_path: str) -> None:
        """Copy one local file to ``remote_path`` (parents created)."""

    def read_existing(self, paths: Sequence[str]) -> dict[str, bytes]:
        """Contents of those ``paths`` that exist (missing ones are left out). Transports where each file
        costs a round trip override this to fetch them all at once (results of a 1,000-task map)."""
        return {path: self.read_bytes(path) for path in paths if self.exists(path)}

    def read_from(self, path: str, offset: int, limit: int) -> tuple[bytes, int]:
        """Up to ``limit`` bytes of ``path`` from byte ``offset`` on, and the file's size (-1 when it does
        not exist yet): how growing logs are followed without fetching them again, and a truncated one
        (a requeued job's log starts over) is noticed. One command; binary safe."""
        import base64
        import shlex

        quoted = shlex.quote(path)
        output = self.run(
            f"if [ -f {quoted} ]; then wc -c < {quoted}; tail -c +{int(offset) + 1} {quoted} "
            f"| head -c {int(limit)} | base64; else echo -1; fi"
        ).stdout
        size, _, data = output.partition("\n")
        return base64.b64decode(data), int(size)

    def existing(self, paths: Sequence[str]) -> set[str]:
        """Which of ``paths`` exist. Transports where each check costs a round trip override this to
        look at all of them at once (a wait checks every unfinished job's result file)."""
        return {path for path in paths if self.exists(path)}

    @abstractmethod
    def home(self) -> str:
        """Absolute home directory of the user on the far side (used for default job roots)."""

    def expand_home(self, path: str) -> str:
        """``~`` or ``~/x`` on the far side -> an absolute path there; other paths unchanged. Slurm does not
        expand ``~`` in ``#SBATCH`` paths and SFTP does not either, so every far-side path goes through this."""
        if path == "~" or path.startswith("~/"):
            return self.home().rstrip("/") + path[1:]
        return path

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class Backend(ABC):
    """Submits job scripts and reports their states. Job ids are strings; array tasks are ``"<id>_<index>"``."""

    #: The backend type (config ``type``) a workflow's children use inside the allocation: "slurm" for
    #: ``SSHBackend`` too (children run the node's own sbatch, not SSH), "local" for ``LocalCommandBackend``.
    child_type: str
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

    def close(self) -> None:
        self.transport.close()
