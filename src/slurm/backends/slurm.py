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

import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from slurm.backends.base import Backend, JobState
from slurm.backends.slurm_clusters import checked_cluster, targeted
from slurm.backends.slurm_clusters import without_cluster_headers as without_cluster_headers

# Where the backend's parts live: its sacct/squeue queries in ``slurm_status``, sbatch in ``slurm_sbatch``,
# reading Slurm's output in ``slurm_output``, several clusters (``-M``) in ``slurm_clusters``. Other
# modules (the REST backend, tests) import these names from here too.
from slurm.backends.slurm_output import expand_job_ids as expand_job_ids
from slurm.backends.slurm_output import job_id_from_logs as job_id_from_logs
from slurm.backends.slurm_output import killed_for_memory as killed_for_memory
from slurm.backends.slurm_output import parse_slurm_state as parse_slurm_state
from slurm.backends.slurm_output import parse_status_lines as parse_status_lines
from slurm.backends.slurm_output import resolve_statuses, scheduler_error
from slurm.backends.slurm_sbatch import claimed_sbatch, claimed_sbatch_answer, submitted_job_id
from slurm.backends.slurm_status import CONFIRM_LIVE_EVERY as CONFIRM_LIVE_EVERY
from slurm.backends.slurm_status import SlurmStatusQueries
from slurm.errors import BackendError, ConfigError, is_transient_message
from slurm.inherited_env import SCRUB_SLURM_ENV_SHELL
from slurm.limits import SiteLimits, SubmitLimit, limits_query, parse_limits
from slurm.transports.base import CommandResult, Transport

_resolve = resolve_statuses  # the REST backend imports it by this name

#: Seconds one answer to "how many of the user's jobs run" serves (``running_jobs``).
RUNNING_JOBS_EVERY = 5.0


class SlurmBackend(SlurmStatusQueries, Backend):
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
        self.slurm_cluster = checked_cluster(slurm_cluster)
        #: The clusters form a Slurm federation: a job's state is asked of every cluster.
        self.federation = bool(federation)
        self._use_sacct = True  # turned off for good once sacct says accounting is unavailable
        self._limits: SiteLimits | None = None
        self._login_cluster: str | None = None
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
        return targeted(args, self.slurm_cluster, federation=self.federation)

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
        return submitted_job_id(self._targeted(args), self._run(args))

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
        (``slurm.submission``): the files count as written when complete, and sbatch runs once per
        job directory. The first attempt to reach it claims the directory's ``.sbatch`` and keeps its
        answer there (hangups and closed pipes ignored, so a dropped connection cannot stop it between
        queueing the job and noting so); a later attempt waits for that answer and gives it instead. A
        refusal frees the claim, so a retry after a transient refusal runs sbatch again."""
        args = self._targeted(self._sbatch_args(script_path, array, dependencies, dependency_type))
        result = self.transport.write_files_then(job_dir, files, claimed_sbatch(job_dir, args, record))
        return claimed_sbatch_answer(result, args, script_path)

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
            raise scheduler_error("squeue", result)
        for line in without_cluster_headers(result.stdout).splitlines():
            job_id, _, command = line.partition("|")
            if command.strip() == script_path:
                return job_id.strip()
        return job_id_from_logs(self.transport, script_path)

    def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return {job_id: status.state for job_id, status in self.statuses(job_ids).items()}

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

    def sched_interval(self) -> int | None:
        """The controller's ``sched_interval``, from the config the limits are learned from (asked once)."""
        try:
            return self.site_limits().sched_interval
        except BackendError:
            return None

    def login_cluster_name(self) -> str | None:
        """The login node's own Slurm cluster (its controller's ``ClusterName``): where jobs go when no
        ``slurm_cluster`` is named. Asked once (the limits query's answer when it is the same controller);
        None when Slurm does not say."""
        if self._login_cluster is None:
            try:
                if self.slurm_cluster is None:
                    self._login_cluster = self.site_limits().cluster_name
                else:  # the limits query asks the named cluster's controller: ask the login's own
                    config = self._run_shell("scontrol show config").stdout
                    self._login_cluster = parse_limits(config).cluster_name
            except BackendError:
                return None
        return self._login_cluster

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
            raise scheduler_error("squeue", result)
        return sum(1 for line in without_cluster_headers(result.stdout).splitlines() if line.strip())

    def _run_shell(self, script: str) -> CommandResult:
        return self.transport.run(SCRUB_SLURM_ENV_SHELL + script, check=False)


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
