"""A site's limits as the SDK meets them: the submit limit a map is throttled by (learned from the
cluster, or from sbatch's refusal), sbatch's other refusals, and pending reasons that can never clear.

Texts and reason words are Slurm's own (see tests/fast/golden/site_limits/, captured from the dev
cluster).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from slurm.errors import JobFailedError

#: squeue reasons of a pending job that no amount of waiting changes: the job asks for more than its
#: partition, QOS or association allows, or for something no node has. Only an administrator changing
#: the limit (or the user changing the job) lets it start. Value: what to change. Not here:
#: ``PartitionNodeLimit``, which Slurm also gives while nodes the job needs are DOWN or DRAINED.
NEVER_CLEARING_REASONS: dict[str, str] = {
    "PartitionTimeLimit": "ask for less time than the partition's MaxTime (sinfo -o '%P %l'), or another partition",
    "QOSMaxWallDurationPerJobLimit": "ask for less time than the QOS's MaxWall (sacctmgr show qos format=name,maxwall)",
    "AssocMaxWallDurationPerJobLimit": "ask for less time than your association's MaxWall (sacctmgr show assoc user=$USER)",
    "QOSMaxNodesPerJobLimit": "ask for fewer nodes than the QOS's MaxNodes (sacctmgr show qos)",
    "AssocMaxNodesPerJobLimit": "ask for fewer nodes than your association allows (sacctmgr show assoc user=$USER)",
    "QOSMaxCpusPerJobLimit": "ask for fewer CPUs than the QOS allows per job (sacctmgr show qos)",
    "AssocMaxCpusPerJobLimit": "ask for fewer CPUs than your association allows per job (sacctmgr show assoc user=$USER)",
    "BadConstraints": "ask only for features, memory and cores some node has (sinfo -o '%N %f %m %c')",
    "InvalidAccount": "submit with one of your accounts (sacctmgr show assoc user=$USER format=account)",
    "InvalidQOS": "submit with a QOS your association allows (sacctmgr show assoc user=$USER format=qos)",
}

#: squeue reasons of a pending job held back by a cap on the user's *running* jobs (per association or per
#: QOS): they clear when one of the user's running jobs ends, so only with none running do they never clear
#: (an administrator's MaxJobs=0 holds a user's jobs that way). Value: what to change.
CLEARED_BY_OWN_JOBS: dict[str, str] = {
    "AssocMaxJobsLimit": (
        "ask an administrator to raise MaxJobs of your association "
        "(sacctmgr show assoc user=$USER format=account,maxjobs), or submit with another account"
    ),
    "QOSMaxJobsPerUserLimit": (
        "ask an administrator to raise the QOS's MaxJobsPerUser "
        "(sacctmgr show qos format=name,maxjobsperuser), or submit with another QOS"
    ),
    "QOSMaxJobsPerAccountLimit": (
        "ask an administrator to raise the QOS's MaxJobsPerAccount "
        "(sacctmgr show qos format=name,maxjobsperaccount), or submit with another QOS or account"
    ),
}
#: How long such a reason must hold with none of the user's jobs running before the wait gives up, where the
#: cluster's scheduling interval is not known: longer than Slurm's default sched_interval (60 s), so the
#: reason was set by a scheduling pass that already knew the user's last running job had ended (a stale
#: reason would cancel a job that was about to start).
OWN_JOBS_HOLD_SECONDS = 70.0
#: Slurm's main scheduling pass runs every ``sched_interval`` seconds (SchedulerParameters; 60 by default).
DEFAULT_SCHED_INTERVAL = 60
#: Added to the cluster's sched_interval: a pass that started just before the last job ended is over.
HOLD_MARGIN_SECONDS = 10.0


def own_jobs_hold(sched_interval: int | None) -> float:
    """How long a cap on running jobs must hold with none of the user's jobs running: one of the cluster's
    scheduling passes and a margin, or ``OWN_JOBS_HOLD_SECONDS`` when the interval is not known."""
    return OWN_JOBS_HOLD_SECONDS if sched_interval is None else sched_interval + HOLD_MARGIN_SECONDS


#: The reason words sbatch prints when a submit limit (jobs pending or running at once) refused a job.
_SUBMIT_LIMIT_WORDS = re.compile(
    r"\b(QOSMaxSubmitJobPerUserLimit|QOSMaxSubmitJobPerAccountLimit|AssocMaxSubmitJobLimit|"
    r"QOSGrpSubmitJobsLimit|AssocGrpSubmitJobsLimit)\b"
)

#: sbatch's refusals the SDK can say more about: (lowercase text in sbatch's message, how to fix it).
_REFUSAL_FIXES = (
    (
        "invalid account",
        "submit with one of your accounts: sacctmgr show assoc user=$USER format=account,partition",
    ),
    ("invalid qos", "submit with a QOS your association allows: sacctmgr show assoc user=$USER format=qos"),
    ("invalid partition", "choose a partition sinfo lists (sinfo -s)"),
    ("invalid node name", "name nodes sinfo lists (sinfo -N)"),
    ("invalid feature", "ask for features some node has (sinfo -o '%N %f')"),
    ("requested time limit is invalid", "ask for less time than the partition's MaxTime (sinfo -o '%P %l')"),
    (
        "requested node configuration is not available",
        "ask for resources some node has (sinfo -o '%N %c %m %G')",
    ),
    (
        "job violates accounting/qos policy",
        "see your limits: sacctmgr show assoc user=$USER, sacctmgr show qos",
    ),
)


def never_clears(reason: str) -> str | None:
    """What to change when a pending job's squeue ``reason`` can never clear by itself, else None."""
    return NEVER_CLEARING_REASONS.get(reason.strip())


class OwnJobsCap:
    """Tells, for one pending job, when a reason in ``CLEARED_BY_OWN_JOBS`` can never clear: the reason, and
    none of the user's jobs running, seen throughout ``OWN_JOBS_HOLD_SECONDS``. ``running_jobs`` is only
    asked while the job pends for such a reason; None (not known) never gives up."""

    def __init__(self) -> None:
        self._since: float | None = None

    def never_clears(
        self, reason: str, now: float, running_jobs: Callable[[], int | None], hold: float | None = None
    ) -> bool:
        """``hold``: how long it must hold (``own_jobs_hold``); default ``OWN_JOBS_HOLD_SECONDS``. An empty
        ``reason`` is an answer that does not say why the job pends (sacct's, between squeue's): it neither
        starts nor ends the hold. Taken as "no cap", it restarted the hold at every such answer, so the wait
        ran on until two squeue answers in a row came a whole hold apart (87 s for a 20 s hold, measured)."""
        if not reason.strip():
            return False
        if reason.strip() not in CLEARED_BY_OWN_JOBS or running_jobs() != 0:
            self._since = None
            return False
        if self._since is None:
            self._since = now
        return now - self._since >= (OWN_JOBS_HOLD_SECONDS if hold is None else hold)


def submit_limit_refusal(sbatch_output: str) -> str | None:
    """The reason word (``QOSMaxSubmitJobPerUserLimit``) when sbatch refused a job for a submit limit."""
    match = _SUBMIT_LIMIT_WORDS.search(sbatch_output)
    return match[1] if match else None


def refusal_fix(sbatch_output: str) -> str | None:
    """How to fix a submission sbatch refused, when its message says enough."""
    lowered = sbatch_output.lower()
    return next((fix for text, fix in _REFUSAL_FIXES if text in lowered), None)


@dataclass(frozen=True)
class SubmitLimit:
    """How many jobs (each array task counts) the user may have pending or running at once, and which
    site setting says so (``"MaxSubmitJobsPerUser of QOS normal"``)."""

    jobs: int
    source: str


#: One command for everything the limits are learned from: slurmctld's config (MaxArraySize, whether
#: limits are enforced), the user's associations and the QOS they submit with. Sections end at ``---``.
LIMITS_QUERY = (
    "scontrol show config; echo ---; "
    'sacctmgr -n -P show assoc where user="$(id -un)" format=account,maxsubmit,defaultqos 2>/dev/null; '
    "echo ---; sacctmgr -n -P show qos format=name,maxsubmitjobsperuser 2>/dev/null"
)


def limits_query(slurm_cluster: str | None = None) -> str:
    """``LIMITS_QUERY``, or the same asked of one named cluster of several on a slurmdbd (its controller's
    config, the user's associations on that cluster)."""
    if slurm_cluster is None:
        return LIMITS_QUERY
    name = shlex.quote(slurm_cluster)
    return (
        f"scontrol --clusters={name} show config; echo ---; "
        f'sacctmgr -n -P show assoc where cluster={name} user="$(id -un)" '
        "format=account,maxsubmit,defaultqos 2>/dev/null; "
        "echo ---; sacctmgr -n -P show qos format=name,maxsubmitjobsperuser 2>/dev/null"
    )


@dataclass(frozen=True)
class SiteLimits:
    max_array_size: int | None
    submit_limit: SubmitLimit | None
    #: ``ClusterName`` of the controller asked: the Slurm cluster jobs go to when none is named.
    cluster_name: str | None = None
    #: Seconds between the controller's main scheduling passes (``sched_interval``); None: not known.
    sched_interval: int | None = None


def parse_limits(output: str, *, qos: str | None = None) -> SiteLimits:
    """``LIMITS_QUERY``'s output -> the limits. ``qos``: the QOS jobs are submitted with (sbatch
    ``--qos``), else each association's default QOS (``normal`` when it names none). With several
    associations the smallest limit is taken: the SDK cannot tell which one a job lands in."""
    config, _, rest = output.partition("\n---")
    assocs, _, qos_lines = rest.partition("\n---")
    match = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    max_array = int(match[1]) if match else None
    named = re.search(r"^\s*ClusterName\s*=\s*(\S+)", config, re.MULTILINE)
    cluster_name = named[1] if named else None
    interval = _sched_interval(config)
    enforce = re.search(r"^\s*AccountingStorageEnforce\s*=\s*(\S+)", config, re.MULTILINE)
    if not enforce or "limits" not in enforce[1].split(","):
        return SiteLimits(max_array, None, cluster_name, interval)  # limits in the database are not enforced
    qos_limits: dict[str, str] = {}
    for line in qos_lines.splitlines():
        if "|" in line:
            name, limit = _fields(line, 2)
            qos_limits[name] = limit
    found: list[SubmitLimit] = []
    for line in assocs.splitlines():
        if "|" not in line:
            continue
        account, max_submit, default_qos = _fields(line, 3)
        if max_submit.isdigit():
            found.append(
                SubmitLimit(int(max_submit), f"MaxSubmitJobs of your association in account {account}")
            )
        name = qos or default_qos or "normal"
        if qos_limits.get(name, "").isdigit():
            found.append(SubmitLimit(int(qos_limits[name]), f"MaxSubmitJobsPerUser of QOS {name}"))
    best = min(found, key=lambda limit: limit.jobs) if found else None
    return SiteLimits(max_array, best, cluster_name, interval)


def _sched_interval(config: str) -> int | None:
    """``sched_interval`` of the config's SchedulerParameters, Slurm's default when they leave it out;
    None when the config has no SchedulerParameters line (not read)."""
    line = re.search(r"^\s*SchedulerParameters\s*=\s*(\S*)", config, re.MULTILINE)
    if not line:
        return None
    given = re.search(r"(?:^|,)sched_interval=(\d+)", line[1])
    return int(given[1]) if given else DEFAULT_SCHED_INTERVAL


def _fields(line: str, count: int) -> tuple[str, ...]:
    return tuple((line.strip().split("|") + [""] * count)[:count])


def pending_for_good(
    job_id: str, name: str, reason: str, hold: float = OWN_JOBS_HOLD_SECONDS
) -> JobFailedError:
    """The error of a job pending for a reason that never clears. The SDK cancels the job (its whole
    array: the tasks share the request) so it stops holding a place in the queue and under the submit
    limit: ``Job`` does, when it delivers what it observed, with no lock held."""
    fix = never_clears(reason)
    why = "which no amount of waiting clears"
    if fix is None:
        fix = CLEARED_BY_OWN_JOBS.get(reason.strip())
        why = f"a cap on running jobs, with none of yours running for {hold:.0f} s"
    return JobFailedError(
        f"job {job_id} ({name}) can never start: squeue says it pends for {reason}, {why}, so the "
        f"SDK cancelled it; fix: {fix}",
        job_id=job_id,
        state="CANCELLED",
    )
