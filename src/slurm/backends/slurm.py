"""Real Slurm through a transport: ``sbatch`` to submit, ``sacct``/``squeue`` to poll, ``scancel`` to stop.

The same class serves the submitting host (over SSH) and tasks inside an allocation that submit children
(``LocalTransport``), so every command starts by dropping the inherited ``SLURM_*`` variables.
"""

from __future__ import annotations

import re
import shlex
import threading
from collections.abc import Iterable, Sequence

from slurm.backends.base import Backend, CommandResult, JobState, Transport
from slurm.errors import BackendError, SubmitError

# Inside an allocation, SLURM_JOB_ID & co. would make sbatch/srun attach children to the parent's job.
# SLURM_CONF says which cluster to talk to and SLURM_SDK_* are the SDK's own settings: both must survive.
_SCRUB_SLURM_ENV = (
    "for _v in $(env | sed -n 's/^\\(SLURM_[A-Za-z0-9_]*\\)=.*/\\1/p'); do "
    'case "$_v" in SLURM_CONF|SLURM_SDK_*) ;; *) unset "$_v" ;; esac; done; '
)

# Slurm's many states folded into the SDK's few. Non-terminal oddities (suspended, requeued, ...) map to
# the closest live state so callers keep waiting; abnormal ends map to the closest failure.
_STATE_MAP: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "COMPLETING": JobState.COMPLETING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "REVOKED": JobState.CANCELLED,
    "CANCELLED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "NODE_FAIL": JobState.NODE_FAIL,
    "BOOT_FAIL": JobState.NODE_FAIL,
}

# sacct's ways of saying "there is no accounting here" for good; other sacct errors (slurmdbd briefly
# down) only make squeue answer this one time.
_NO_ACCOUNTING = ("accounting storage is disabled", "command not found")
_ARRAY_RANGE = re.compile(r"^(?P<job>\d+)_\[(?P<spec>[^\]]*)\]$")
_JOB_ID = re.compile(r"^\d+(_\d+)?$")


def parse_slurm_state(text: str) -> JobState:
    """``"CANCELLED by 1000"`` -> CANCELLED, ``"FAILED+"`` -> FAILED, anything unknown -> UNKNOWN."""
    words = text.strip().split()
    word = words[0].rstrip("+") if words else ""
    return _STATE_MAP.get(word, JobState.UNKNOWN)


def expand_job_ids(job_id: str) -> list[str]:
    """``"12_[1,3-5%2]"`` (a pending array range) -> ``["12_1", "12_3", "12_4", "12_5"]``; others unchanged."""
    match = _ARRAY_RANGE.match(job_id.strip())
    if not match:
        return [job_id.strip()]
    spec = match["spec"].split("%", 1)[0]
    ids = []
    for part in filter(None, spec.split(",")):
        first, _, last = part.partition("-")
        ids += [f"{match['job']}_{i}" for i in range(int(first), int(last or first) + 1)]
    return ids


def parse_state_lines(stdout: str) -> dict[str, JobState]:
    """``JobID|State`` lines (from sacct or squeue) -> states, pending array ranges expanded."""
    found: dict[str, JobState] = {}
    for line in stdout.splitlines():
        job_field, sep, state_field = line.partition("|")
        if not sep or not job_field.strip():
            continue
        state = parse_slurm_state(state_field)
        for job_id in expand_job_ids(job_field):
            found[job_id] = state
    return found


def _aggregate(states: Iterable[JobState]) -> JobState:
    """State of a whole array from its tasks: live while any task is live, then its first bad ending."""
    states = list(states)
    if not all(state.is_terminal for state in states):
        return JobState.PENDING if all(state is JobState.PENDING for state in states) else JobState.RUNNING
    failures = [state for state in states if state is not JobState.COMPLETED]
    return failures[0] if failures else JobState.COMPLETED


def _resolve(job_ids: Sequence[str], found: dict[str, JobState]) -> dict[str, JobState]:
    """Pick each requested id's state; an array's base id gets the aggregate of its tasks."""
    result = {}
    for job_id in job_ids:
        if job_id in found:
            result[job_id] = found[job_id]
            continue
        tasks = [s for k, s in found.items() if k.startswith(job_id + "_")]
        result[job_id] = _aggregate(tasks) if tasks else JobState.UNKNOWN
    return result


class SlurmBackend(Backend):
    kind = "slurm"

    def __init__(self, transport: Transport, *, poll_batch: int = 500, sbatch_extra: Sequence[str] = ()) -> None:
        self.transport = transport
        self.poll_batch = poll_batch
        self.sbatch_extra = tuple(sbatch_extra)
        self._use_sacct = True  # turned off for good once sacct says accounting is unavailable
        self._max_array_size: int | None = None
        self._lock = threading.Lock()

    def to_config(self) -> dict[str, object]:
        """Options a workflow's child rebuilds this backend from (inside the allocation, transport local)."""
        return {"poll_batch": self.poll_batch, "sbatch_extra": list(self.sbatch_extra)}

    def _run(self, args: Sequence[str]) -> CommandResult:
        return self.transport.run(_SCRUB_SLURM_ENV + shlex.join(args), check=False)

    def submit(self, script_path: str, *, array: str | None = None,
               dependencies: Sequence[str] = (), dependency_type: str = "afterok") -> str:
        args = ["sbatch", "--parsable", *self.sbatch_extra]
        if array:
            args.append(f"--array={array}")
        if dependencies:
            args.append(f"--dependency={dependency_type}:{':'.join(dependencies)}")
        args.append(script_path)
        result = self._run(args)
        job_id = _parse_sbatch_id(result.stdout) if result.returncode == 0 else None
        if job_id is None:
            raise SubmitError(f"sbatch failed (exit code {result.returncode}): {shlex.join(args)}\n"
                              f"{(result.stderr.strip() or result.stdout.strip())[-2000:]}")
        return job_id

    def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        unique = list(dict.fromkeys(job_ids))
        # Array tasks are asked for by their array's id: sacct and `squeue -r` list every task of it, so a
        # 1,000-task map costs one short query instead of a command line of 1,000 ids.
        queried = list(dict.fromkeys(job_id.split("_", 1)[0] for job_id in unique))
        found: dict[str, JobState] = {}
        for start in range(0, len(queried), self.poll_batch):
            found |= self._query(queried[start:start + self.poll_batch])
        return _resolve(unique, found)

    def _query(self, job_ids: list[str]) -> dict[str, JobState]:
        """sacct first (it remembers finished jobs); squeue for what sacct lacks or when it's unavailable."""
        found: dict[str, JobState] = {}
        if self._use_sacct:
            found = self._sacct(job_ids)
        missing = [j for j, s in _resolve(job_ids, found).items() if s is JobState.UNKNOWN]
        if missing:
            found |= self._squeue(missing)
        return found

    def _sacct(self, job_ids: list[str]) -> dict[str, JobState]:
        result = self._run(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,State"])
        output = (result.stderr + result.stdout).lower()
        if result.returncode == 127 or any(s in output for s in _NO_ACCOUNTING):
            with self._lock:
                self._use_sacct = False
            return {}
        # On other failures squeue answers instead; it knows live and recently finished jobs.
        return parse_state_lines(result.stdout) if result.returncode == 0 else {}

    def _squeue(self, job_ids: list[str]) -> dict[str, JobState]:
        # -r prints one line per array task; ranges that still show up are expanded by the parser.
        result = self._run(["squeue", "--states=all", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i|%T"])
        if result.returncode != 0 and "invalid job id" not in result.stderr.lower():
            raise BackendError(f"squeue failed (exit code {result.returncode}): {result.stderr.strip()}; "
                               "is slurmctld reachable from the submitting host?")
        return parse_state_lines(result.stdout)

    def cancel(self, job_id: str) -> None:
        result = self._run(["scancel", job_id])
        stderr = result.stderr.lower()
        # Cancelling a job that already ended is not an error for the caller.
        if result.returncode != 0 and "already" not in stderr and "invalid job id" not in stderr:
            raise BackendError(f"scancel {job_id} failed (exit code {result.returncode}): {result.stderr.strip()}")

    def max_array_size(self) -> int:
        if self._max_array_size is None:
            result = self._run(["scontrol", "show", "config"])
            match = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", result.stdout, re.MULTILINE)
            # Slurm's documented default when the config can't be read.
            self._max_array_size = int(match[1]) if match else 1001
        return self._max_array_size


def _parse_sbatch_id(stdout: str) -> str | None:
    """``sbatch --parsable`` prints ``<id>`` or ``<id>;<cluster>`` on its last line."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    job_id = lines[-1].split(";", 1)[0]
    return job_id if _JOB_ID.match(job_id) else None
