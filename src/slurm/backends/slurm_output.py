"""Reading Slurm's answers: its state words, sacct and squeue status lines, a job's stderr, and the log
files a job leaves (``SlurmBackend`` runs the commands; these only read what they print)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from slurm.backends.base import UNKNOWN_STATUS, JobState, JobStatus, array_state
from slurm.errors import BackendError, is_transient_message
from slurm.transports.base import CommandResult, Transport

# Slurm's many states folded into the SDK's few. Non-terminal oddities (suspended, requeued, ...) map to
# the closest live state so callers keep waiting; abnormal ends map to the closest failure.
_STATE_MAP: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.REQUEUED,
    "REQUEUE_FED": JobState.REQUEUED,
    "REQUEUE_HOLD": JobState.REQUEUED,
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
    "PREEMPTED": JobState.PREEMPTED,
    "SPECIAL_EXIT": JobState.FAILED,
    "REVOKED": JobState.CANCELLED,
    "CANCELLED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "NODE_FAIL": JobState.NODE_FAIL,
    "BOOT_FAIL": JobState.NODE_FAIL,
}
_ARRAY_RANGE = re.compile(r"^(?P<job>\d+)_\[(?P<spec>[^\]]*)\]$")
#: How sacct --duplicates records a run that ended in a requeue.
_REQUEUED_RUN = frozenset({"REQUEUED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "REQUEUE_HOLD", "REQUEUE_FED"})
#: What a federation's sibling says of a job another sibling runs (``parse_status_lines``).
_REVOKED = "REVOKED"


def parse_slurm_state(text: str) -> JobState:
    """``"CANCELLED by 1000"`` -> CANCELLED, ``"FAILED+"`` -> FAILED, anything unknown -> UNKNOWN."""
    words = text.strip().split()
    word = words[0].rstrip("+") if words else ""
    return _STATE_MAP.get(word, JobState.UNKNOWN)


#: What slurmstepd writes into a job's stderr when it kills the job for its memory: jobacct_gather's
#: OverMemoryKill (no cgroups; the job then ends FAILED or CANCELLED, not OUT_OF_MEMORY) and the cgroup
#: OOM killer. slurmstepd prefixes its lines with its name up to 24.11 and with a timestamp since (26.05).
_MEMORY_KILL = re.compile(
    r"(?:slurmstepd\S*: |^\[\d{4}-\d\d-\d\dT[\d:.]+\] )error: .*(exceeded memory limit|oom[-_]kill event)",
    re.I | re.M,
)


def killed_for_memory(stderr: str) -> bool:
    """True when a job's stderr shows slurmstepd killed it for using more memory than it was allocated."""
    return bool(_MEMORY_KILL.search(stderr))


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


def parse_status_lines(stdout: str, *, count_runs: bool = False) -> dict[str, JobStatus]:
    """``JobID|State[|Reason[|RestartCnt]]`` lines -> statuses, pending array ranges expanded.

    ``count_runs``: the lines come from ``sacct --duplicates``, one line per run of a requeued job, oldest
    first: the last line is the current run, and each earlier one that ended in a requeue counts once (an
    older, unrelated job that had the same id does not)."""
    found: dict[str, JobStatus] = {}
    previous_run: dict[str, str] = {}  # job id -> Slurm's state word of its latest line so far
    for line in stdout.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) < 2 or not fields[0]:
            continue
        reason = fields[2] if len(fields) > 2 else ""
        restarts = int(fields[3]) if len(fields) > 3 and fields[3].isdigit() else 0
        word = (fields[1].split() or [""])[0].rstrip("+")
        for job_id in expand_job_ids(fields[0]):
            # In a federation each sibling keeps a record of the job; all but the one that runs it say
            # REVOKED, in no set order: that one's record wins.
            if job_id in previous_run and _REVOKED in (word, previous_run[job_id]):
                if word != _REVOKED:
                    previous_run[job_id] = word
                    found[job_id] = JobStatus(parse_slurm_state(fields[1]), reason, restarts)
                continue
            if count_runs and job_id in found:
                restarts = found[job_id].restarts + 1 if previous_run[job_id] in _REQUEUED_RUN else 0
            previous_run[job_id] = word
            found[job_id] = JobStatus(parse_slurm_state(fields[1]), reason, restarts)
    return found


def resolve_statuses(job_ids: Sequence[str], found: dict[str, JobStatus]) -> dict[str, JobStatus]:
    """Pick each requested id's status; an array's base id gets the aggregate of its tasks."""
    result = {}
    for job_id in job_ids:
        if job_id in found:
            result[job_id] = found[job_id]
            continue
        tasks = [s for k, s in found.items() if k.startswith(job_id + "_")]
        result[job_id] = JobStatus(array_state(t.state for t in tasks)) if tasks else UNKNOWN_STATUS
    return result


def array_id(job_id: str) -> str:
    """``"12_3"`` -> ``"12"``: the id Slurm's commands list a whole array (and a plain job) by."""
    return job_id.split("_", 1)[0]


def scheduler_error(command: str, result: CommandResult) -> BackendError:
    detail = (result.stderr.strip() or result.stdout.strip())[-1000:]
    return BackendError(
        f"{command} failed (exit code {result.returncode}): {detail}; is slurmctld reachable "
        "from the submitting host?",
        transient=is_transient_message(detail),
    )


def job_id_from_logs(transport: Transport, script_path: str) -> str | None:
    """The id of the job that ran ``script_path``, from the log files (named after the id) it left in its
    directory: how a submission whose answer was lost is found once the job is no longer listed."""
    job_dir = shlex.quote(script_path.rsplit("/", 1)[0])
    listing = transport.run(f"ls {job_dir}", check=False).stdout
    ids = {match[1] for match in re.finditer(r"^slurm-(\d+)", listing, re.MULTILINE)}
    return ids.pop() if len(ids) == 1 else None
