"""Real Slurm through a transport: ``sbatch`` to submit, ``sacct``/``squeue`` to poll, ``scancel`` to stop.

The same class serves the submitting host (over SSH) and tasks inside an allocation that submit children
(``HostTransport``), so every command starts by dropping the inherited ``SLURM_*`` variables.

``slurm_cluster`` targets one cluster of several that share a slurmdbd: every command gets
``--clusters=<name>`` (``-M``), and Slurm's commands ask slurmdbd where that cluster's controller is.
``federation``: the clusters form a Slurm federation, where a job may run on a sibling of the cluster it
was submitted to; sacct and squeue then ask every cluster (``--clusters=all``: ``squeue --federation``
shows only the submitting sibling's record, measured on Slurm 24.11), and of a job's records (one per
sibling) the one that is not REVOKED tells its state. Federated ids are unique across clusters.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence

from slurm.backends.base import JOB_ID, UNKNOWN_STATUS, Backend, JobState, JobStatus, array_state
from slurm.errors import BackendError, ConfigError, SubmitError, SubmitLimitError, is_transient_message
from slurm.inherited_env import SCRUB_SLURM_ENV_SHELL
from slurm.limits import (
    SiteLimits,
    SubmitLimit,
    limits_query,
    parse_limits,
    refusal_fix,
    submit_limit_refusal,
)
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

# sacct's ways of saying "there is no accounting here" for good; other sacct errors (slurmdbd briefly
# down) only make squeue answer this one time.
_NO_ACCOUNTING = ("accounting storage is disabled", "command not found")
_ARRAY_RANGE = re.compile(r"^(?P<job>\d+)_\[(?P<spec>[^\]]*)\]$")
#: What sacct says of a job something just happened to (failed or preempted, maybe requeued by now, see
#: ``SlurmBackend._query``): squeue confirms these on every query.
_UNSETTLED = frozenset({JobState.REQUEUED, JobState.NODE_FAIL, JobState.PREEMPTED})
#: What sacct says of a live job, which may be stale: slurmdbd hears of starts and ends late, or never.
#: squeue confirms these on every query a caller makes, and at most once per ``CONFIRM_LIVE_EVERY`` on a
#: wait's background polls.
_LIVE = frozenset({JobState.PENDING, JobState.RUNNING, JobState.COMPLETING})
#: Seconds between two squeue confirmations of sacct's live states on a wait's background polls. Half the
#: default poll_interval_seconds (30 s): the watcher's ramp (queries at about 1, 2.5, 4.8, 8.1, 13, 21, 32, 49 s)
#: confirms at 1, 21 and 49 s instead of 8 times in its first minute, and every query once the pause has
#: grown past 15 s, so a long wait learns of a start or an end slurmdbd missed no later than it would
#: without accounting.
CONFIRM_LIVE_EVERY = 15.0
#: Seconds one answer to "how many of the user's jobs run" serves (``running_jobs``).
RUNNING_JOBS_EVERY = 5.0
#: A job directory's claim on its one sbatch (see ``SlurmBackend.submit_with_files``), holding its answer.
_CLAIM = ".sbatch"
#: How long a later attempt waits for the claiming attempt's sbatch to answer: 600 steps of 50 ms.
_CLAIM_WAIT_STEPS = 600
_CLAIM_PENDING = "slurm-sdk: an earlier attempt's sbatch has not answered yet"
_CLAIM_PENDING_CODE = 75  # EX_TEMPFAIL
#: What the submission command says on stderr when the record could not be written (the job runs anyway).
_RECORD_FAILED = "slurm-sdk:record-not-written"
#: How sacct --duplicates records a run that ended in a requeue.
_REQUEUED_RUN = frozenset({"REQUEUED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "REQUEUE_HOLD", "REQUEUE_FED"})


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


def _resolve(job_ids: Sequence[str], found: dict[str, JobStatus]) -> dict[str, JobStatus]:
    """Pick each requested id's status; an array's base id gets the aggregate of its tasks."""
    result = {}
    for job_id in job_ids:
        if job_id in found:
            result[job_id] = found[job_id]
            continue
        tasks = [s for k, s in found.items() if k.startswith(job_id + "_")]
        result[job_id] = JobStatus(array_state(t.state for t in tasks)) if tasks else UNKNOWN_STATUS
    return result


def _array_id(job_id: str) -> str:
    """``"12_3"`` -> ``"12"``: the id Slurm's commands list a whole array (and a plain job) by."""
    return job_id.split("_", 1)[0]


#: A Slurm cluster's name as slurmdbd keeps it; one name, since ``-M a,b`` would let Slurm pick the cluster.
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
#: What squeue (and sinfo) print before a cluster's lines when given ``-M``, even with ``--noheader``.
_CLUSTER_HEADER = re.compile(r"^CLUSTER: ")


def without_cluster_headers(stdout: str) -> str:
    """squeue's output without the ``CLUSTER: <name>`` line ``-M`` adds."""
    return "".join(line for line in stdout.splitlines(keepends=True) if not _CLUSTER_HEADER.match(line))


def _checked_cluster(slurm_cluster: str | None) -> str | None:
    if slurm_cluster is None or (isinstance(slurm_cluster, str) and _CLUSTER_NAME.fullmatch(slurm_cluster)):
        return slurm_cluster
    raise ConfigError(
        f"slurm_cluster={slurm_cluster!r} is not one Slurm cluster name: give the name `sacctmgr show "
        "clusters` lists (e.g. slurm_cluster='two'), or leave it out for the login node's own cluster",
        key="slurm_cluster",
    )


#: What a federation's sibling says of a job another sibling runs (``parse_status_lines``).
_REVOKED = "REVOKED"


def _scheduler_error(command: str, result: CommandResult) -> BackendError:
    detail = (result.stderr.strip() or result.stdout.strip())[-1000:]
    return BackendError(
        f"{command} failed (exit code {result.returncode}): {detail}; is slurmctld reachable "
        "from the submitting host?",
        transient=is_transient_message(detail),
    )


class SlurmBackend(Backend):
    type_name = "slurm"

    def __init__(
        self,
        transport: Transport,
        *,
        job_ids_per_query: int = 2000,
        sbatch_extra: Sequence[str] = (),
        slurm_cluster: str | None = None,
        federation: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(sbatch_extra, str):  # tuple("--qos=high") would be ten one-character arguments
            raise ConfigError(
                f"sbatch_extra must be a list of sbatch arguments, got the string {sbatch_extra!r}: "
                f"write sbatch_extra=[{sbatch_extra!r}]",
                key="sbatch_extra",
            )
        self.transport = transport
        self.job_ids_per_query = job_ids_per_query
        self.sbatch_extra = tuple(sbatch_extra)
        #: The cluster every command targets (``-M``), of several on one slurmdbd; None: the login node's.
        self.slurm_cluster = _checked_cluster(slurm_cluster)
        #: The clusters form a Slurm federation: a job's state is asked of every cluster.
        self.federation = bool(federation)
        self._use_sacct = True  # turned off for good once sacct says accounting is unavailable
        self._limits: SiteLimits | None = None
        self._running_jobs: tuple[float, int | None] | None = None  # (when asked, the answer)
        self._lock = threading.Lock()
        self._clock = clock
        self._live_confirmed_at: float | None = None  # the last squeue that confirmed sacct's live states
        self._forgotten: set[str] = set()  # jobs sacct calls live that the last squeue did not list

    def to_config(self) -> dict[str, object]:
        """Options a workflow's child rebuilds this backend from (inside the allocation, transport local)."""
        options: dict[str, object] = {
            "job_ids_per_query": self.job_ids_per_query,
            "sbatch_extra": list(self.sbatch_extra),
        }
        if self.slurm_cluster is not None:
            options["slurm_cluster"] = self.slurm_cluster
        if self.federation:
            options["federation"] = True
        return options

    def _targeted(self, args: Sequence[str]) -> list[str]:
        """A Slurm command with ``--clusters=<slurm_cluster>`` after its name, when one is set; in a
        federation sacct and squeue ask every cluster, since a job may run on any sibling."""
        if self.federation and args[0] in ("sacct", "squeue"):
            return [args[0], "--clusters=all", *args[1:]]
        if self.slurm_cluster is None:
            return list(args)
        return [args[0], f"--clusters={self.slurm_cluster}", *args[1:]]

    def _run(self, args: Sequence[str]) -> CommandResult:
        return self.transport.run(SCRUB_SLURM_ENV_SHELL + shlex.join(self._targeted(args)), check=False)

    def submit(
        self,
        script_path: str,
        *,
        array: str | None = None,
        dependencies: Sequence[str] = (),
        dependency_type: str = "afterok",
    ) -> str:
        args = self._sbatch_args(script_path, array, dependencies, dependency_type)
        return _submitted(self._targeted(args), self._run(args))

    def submit_with_files(
        self,
        job_dir: str,
        files: Mapping[str, tuple[bytes, int]],
        script_path: str,
        *,
        record: str = "",
        array: str | None = None,
        dependencies: Sequence[str] = (),
        dependency_type: str = "afterok",
    ) -> tuple[str, bool]:
        """Write the job's ``files`` into ``job_dir``, ``sbatch`` its script, and run ``record`` (shell that
        writes the submission record from the id in ``$id``): one remote command over SSH. Returns the job
        id and whether the record was written.

        Safe to run again when its answer was lost, after the caller looked the job up and found none
        (``Cluster._submit_once``): the files count as written when complete, and sbatch runs once per
        job directory. The first attempt to reach it claims the directory's ``.sbatch`` and keeps its
        answer there (hangups and closed pipes ignored, so a dropped connection cannot stop it between
        queueing the job and noting so); a later attempt waits for that answer and gives it instead. A
        refusal frees the claim, so a retry after a transient refusal runs sbatch again."""
        args = self._targeted(self._sbatch_args(script_path, array, dependencies, dependency_type))
        claim = shlex.quote(posixpath.join(job_dir, _CLAIM))
        recording = (
            f'case "$id" in ""|*[!0-9]*) ;; *) {{ {record}; }} || echo {_RECORD_FAILED} >&2 ;; esac; '
            if record
            else ""
        )
        command = (
            f"claim={claim}; trap '' HUP PIPE; "
            f'if mkdir "$claim" 2>/dev/null; then ( {SCRUB_SLURM_ENV_SHELL}{shlex.join(args)} ) '
            '>"$claim/out" 2>"$claim/err" </dev/null; echo $? >"$claim/code.tmp" && mv "$claim/code.tmp" "$claim/code"; fi; '
            f'n=0; while [ ! -f "$claim/code" ] && [ $n -lt {_CLAIM_WAIT_STEPS} ]; do sleep 0.05; n=$((n + 1)); done; '
            f'[ -f "$claim/code" ] || {{ echo {shlex.quote(_CLAIM_PENDING)} >&2; exit {_CLAIM_PENDING_CODE}; }}; '
            'code=$(cat "$claim/code"); cat "$claim/err" >&2; cat "$claim/out"; '
            'if [ "$code" != 0 ]; then rm -rf "$claim"; exit "$code"; fi; '
            """id=$(sed -n '${s/;.*//;p;}' "$claim/out"); """ + recording + "exit 0"
        )
        result = self.transport.write_files_then(job_dir, files, command)
        if result.returncode == _CLAIM_PENDING_CODE and _CLAIM_PENDING in result.stderr:
            raise BackendError(
                f"an earlier attempt to submit {script_path} (its answer lost) ran sbatch, which has not "
                "answered yet",
                transient=True,
            )
        return _submitted(args, result), _RECORD_FAILED not in result.stderr

    def _sbatch_args(
        self, script_path: str, array: str | None, dependencies: Sequence[str], dependency_type: str
    ) -> list[str]:
        args = ["sbatch", "--parsable", *self.sbatch_extra]
        if array:
            args.append(f"--array={array}")
        if dependencies:
            args.append(f"--dependency={dependency_type}:{':'.join(dependencies)}")
        args.append(script_path)
        return args

    def find_submitted(self, script_path: str) -> str | None:
        """Look the job up by its script path (unique per submission: the job directory has a random
        part): ``squeue --me`` lists the command of live jobs; a job that already ended has left its
        log files, named after its id, in that directory."""
        result = self._run(["squeue", "--me", "--states=all", "-h", "-o", "%F|%o"])
        if result.returncode != 0:
            raise _scheduler_error("squeue", result)
        for line in without_cluster_headers(result.stdout).splitlines():
            job_id, _, command = line.partition("|")
            if command.strip() == script_path:
                return job_id.strip()
        return job_id_from_logs(self.transport, script_path)

    def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return {job_id: status.state for job_id, status in self.statuses(job_ids).items()}

    def statuses(
        self, job_ids: Sequence[str], *, reasons_for: Collection[str] = (), background: bool = False
    ) -> dict[str, JobStatus]:
        """``background``: a wait's poll on the watcher's cadence, which has squeue confirm sacct's live
        states at most once per ``CONFIRM_LIVE_EVERY``; a caller asking (``query_state``) gets them
        confirmed now."""
        unique = list(dict.fromkeys(job_ids))
        # Array tasks are asked for by their array's id: sacct and `squeue -r` list every task of it, so a
        # 1,000-task map costs one short query instead of a command line of 1,000 ids.
        queried = list(dict.fromkeys(_array_id(job_id) for job_id in unique))
        reasons_for = {_array_id(job_id) for job_id in reasons_for}
        confirm_live = not background or self._live_confirmation_due()
        found: dict[str, JobStatus] = {}
        for start in range(0, len(queried), self.job_ids_per_query):
            batch = set(queried[start : start + self.job_ids_per_query])
            found |= self._query([j for j in unique if _array_id(j) in batch], reasons_for, confirm_live)
        return _resolve(unique, found)

    def _live_confirmation_due(self) -> bool:
        last = self._live_confirmed_at
        return last is None or self._clock() - last >= CONFIRM_LIVE_EVERY

    def _query(
        self, job_ids: list[str], reasons_for: Collection[str] = (), confirm_live: bool = True
    ) -> dict[str, JobStatus]:
        """sacct first (it remembers finished jobs and costs slurmctld nothing: slurmdbd answers), then
        one squeue when sacct does not list a job (a task of an array too), says it ended in a way Slurm
        may requeue (``_UNSETTLED``), says it is CANCELLED while in ``reasons_for`` (only squeue says
        *why*, e.g. a dependency that can never be met), or says it is live (``_LIVE``) and
        ``confirm_live``; that squeue is asked about every job sacct says is live. squeue alone when
        accounting is unavailable. Both are asked by array id.

        sacct only says what slurmdbd has heard: a job's start, end and requeue reach it through
        slurmctld's agent queue, seconds late on a busy cluster (seen with Slurm 22.05: a running job
        PENDING; a finished array task missing while its siblings were listed; a job requeued after a
        node failure listed as NODE_FAIL alone, its new run not yet recorded), and never if slurmctld dies
        before sending them. slurmctld knows its live jobs, so squeue decides for those. A job it no
        longer lists keeps sacct's answer if that is an end; if sacct calls it live, its end never reached
        slurmdbd and slurmctld has forgotten it (MinJobAge): UNKNOWN, with sacct's word as the reason."""
        queried = list(dict.fromkeys(_array_id(job_id) for job_id in job_ids))
        found = self._sacct(queried) if self._use_sacct else {}
        live = {key for key, status in found.items() if status.state in _LIVE}
        # Jobs squeue did not list last time are asked on every query until it confirms (see Job: two
        # queries apart make a job LOST), like the jobs sacct does not list.
        ask = {_array_id(key) for key, status in found.items() if status.state in _UNSETTLED}
        ask |= {_array_id(key) for key in live & self._forgotten}
        ask |= {
            _array_id(j)
            for j, s in _resolve(job_ids, found).items()
            if s.state is JobState.UNKNOWN or (s.state is JobState.CANCELLED and _array_id(j) in reasons_for)
        }
        if not ask and not (live and confirm_live):
            return found
        asked = ask | {_array_id(key) for key in live}
        listed = self._squeue([j for j in queried if j in asked])
        if live:
            self._live_confirmed_at = self._clock()
        forgotten = {
            key: JobStatus(JobState.UNKNOWN, f"sacct still says {found[key].state.value}")
            for key in live
            if key not in listed
        }
        with self._lock:
            self._forgotten = (self._forgotten - live) | forgotten.keys()
        return found | forgotten | listed

    def _sacct(self, job_ids: list[str]) -> dict[str, JobStatus]:
        # --duplicates: one line per run of a requeued job, which gives the restart count.
        result = self._run(
            [
                "sacct",
                "-X",
                "-D",
                "-n",
                "-P",
                "-j",
                ",".join(job_ids),
                "-o",
                "JobID,State",
            ]
        )
        output = (result.stderr + result.stdout).lower()
        if result.returncode == 127 or any(s in output for s in _NO_ACCOUNTING):
            with self._lock:
                self._use_sacct = False
            return {}
        # On other failures squeue answers instead; it knows live and recently finished jobs.
        return parse_status_lines(result.stdout, count_runs=True) if result.returncode == 0 else {}

    def _squeue(self, job_ids: list[str]) -> dict[str, JobStatus]:
        # -r prints one line per array task; ranges that still show up are expanded by the parser.
        result = self._run(
            [
                "squeue",
                "--states=all",
                "-h",
                "-r",
                "-j",
                ",".join(job_ids),
                "-O",
                "JobArrayID:|,State:|,Reason:|,RestartCnt:",
            ]
        )
        if result.returncode != 0 and "invalid job id" not in result.stderr.lower():
            raise _scheduler_error("squeue", result)
        return parse_status_lines(without_cluster_headers(result.stdout))

    def cancel(self, job_id: str) -> None:
        result = self._run(["scancel", job_id])
        stderr = result.stderr.lower()
        # Cancelling a job that already ended is not an error for the caller.
        if result.returncode != 0 and "already" not in stderr and "invalid job id" not in stderr:
            raise BackendError(
                f"scancel {job_id} failed (exit code {result.returncode}): {result.stderr.strip()}",
                transient=is_transient_message(stderr),
            )

    def max_array_size(self) -> int:
        # Slurm's documented default when the config can't be read.
        return self.site_limits().max_array_size or 1001

    def submit_limit(self) -> SubmitLimit | None:
        return self.site_limits().submit_limit

    def site_limits(self) -> SiteLimits:
        """MaxArraySize and the submit limit, learned once (one command) and kept."""
        if self._limits is None:
            query = limits_query(self.slurm_cluster)
            self._limits = parse_limits(self._run_shell(query).stdout, qos=self._sbatch_qos())
        return self._limits

    def _sbatch_qos(self) -> str | None:
        """The QOS ``sbatch_extra`` submits with (``--qos=high``, ``-q high``), if it names one."""
        extra = list(self.sbatch_extra)
        for i, arg in enumerate(extra):
            if arg.startswith("--qos="):
                return arg.split("=", 1)[1]
            if arg in ("--qos", "-q") and i + 1 < len(extra):
                return extra[i + 1]
        return None

    def running_jobs(self) -> int | None:
        """The user's running jobs (any client's), asked at most once per ``RUNNING_JOBS_EVERY`` seconds:
        every job of a map pending behind a running-jobs cap asks on each poll. None when squeue does not
        answer: a wait only gives up on a count it has."""
        now = time.monotonic()
        if self._running_jobs is None or now - self._running_jobs[0] >= RUNNING_JOBS_EVERY:
            count: int | None = None
            try:
                result = self._run(
                    [
                        "squeue",
                        "--me",
                        "-h",
                        "-r",
                        "-t",
                        "RUNNING,COMPLETING,CONFIGURING,SUSPENDED",
                        "-o",
                        "%i",
                    ]
                )
                if result.returncode == 0:
                    count = sum(1 for line in result.stdout.splitlines() if line.strip())
            except BackendError:
                pass  # an outage: the wait's own queries say so
            self._running_jobs = (now, count)
        return self._running_jobs[1]

    def queued_jobs(self) -> int:
        """The user's jobs pending or running now, each array task counted (as submit limits count)."""
        result = self._run(
            ["squeue", "--me", "-h", "-r", "-t", "PENDING,RUNNING,SUSPENDED,COMPLETING", "-o", "%i"]
        )
        if result.returncode != 0:
            raise _scheduler_error("squeue", result)
        return sum(1 for line in without_cluster_headers(result.stdout).splitlines() if line.strip())

    def _run_shell(self, script: str) -> CommandResult:
        return self.transport.run(SCRUB_SLURM_ENV_SHELL + script, check=False)


def _submitted(args: Sequence[str], result: CommandResult) -> str:
    """The job id sbatch answered, or ``SubmitError``: it answered that the job was not queued (retried by
    the caller when the reason is transient)."""
    job_id = _parse_sbatch_id(result.stdout) if result.returncode == 0 else None
    if job_id is None:
        detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
        message = f"sbatch failed (exit code {result.returncode}): {shlex.join(args)}\n{detail}"
        limit = submit_limit_refusal(detail)
        if limit is not None:
            raise SubmitLimitError(
                f"{message}\nthe site's submit limit ({limit}) has no room for this job now: submit "
                "when some of your jobs have ended (Cluster.map waits for room by itself)",
                source=limit,
            )
        fix = refusal_fix(detail)
        raise SubmitError(message + (f"\nfix: {fix}" if fix else ""), transient=is_transient_message(detail))
    return job_id


def _parse_sbatch_id(stdout: str) -> str | None:
    """``sbatch --parsable`` prints ``<id>`` or ``<id>;<cluster>`` on its last line."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    job_id = lines[-1].split(";", 1)[0]
    return job_id if JOB_ID.fullmatch(job_id) else None


class SSHBackend(SlurmBackend):
    """``SlurmBackend`` over ``SSHTransport``: submit to a cluster's login node from anywhere. Only a
    constructor: the backend is Slurm's either way, SSH is where its commands run."""

    def __init__(
        self,
        host: str,
        port: int = 22,
        user: str | None = None,
        key_filename: str | None = None,
        known_host_key: str | None = None,
        *,
        connect_timeout: float = 10,
        trust_unknown_host: bool = False,
        job_ids_per_query: int = 2000,
        sbatch_extra: Sequence[str] = (),
        slurm_cluster: str | None = None,
        federation: bool = False,
    ) -> None:
        # Here, not at the top: paramiko (with invoke and yaml) costs ~0.2 s, and a local Cluster never needs it.
        from slurm.transports.ssh import SSHTransport

        transport = SSHTransport(
            host,
            port,
            user,
            key_filename,
            known_host_key,
            connect_timeout=connect_timeout,
            trust_unknown_host=trust_unknown_host,
        )
        super().__init__(
            transport,
            job_ids_per_query=job_ids_per_query,
            sbatch_extra=sbatch_extra,
            slurm_cluster=slurm_cluster,
            federation=federation,
        )


def job_id_from_logs(transport: Transport, script_path: str) -> str | None:
    """The id of the job that ran ``script_path``, from the log files (named after the id) it left in its
    directory: how a submission whose answer was lost is found once the job is no longer listed."""
    job_dir = shlex.quote(script_path.rsplit("/", 1)[0])
    listing = transport.run(f"ls {job_dir}", check=False).stdout
    ids = {match[1] for match in re.finditer(r"^slurm-(\d+)", listing, re.MULTILINE)}
    return ids.pop() if len(ids) == 1 else None
