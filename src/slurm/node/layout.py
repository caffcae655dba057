"""Where every file of a job lives: the one home for the job-directory layout.

The submitting side (``Cluster``, ``Job``, records, cleanup, logs) and the job side (``slurm.node.runner``,
``slurm.node.checkpoint``) both build their paths here, so a name changes in one place::

    <job_root>/                           mode 0700: job files are never readable by other users
        records/<job id>.json             one record per sbatch call (see slurm.records)
        <UTC time>-<task name>-<random>/  one job directory per sbatch call (a job, or one array job)
            job.sh                        the batch script
            payload.pkl                   the task and the arguments of every call (array task i: calls[i])
            cluster.json                  a workflow's config for the Cluster it gets on the node
            result-<i>.pkl                the outcome of array task i (0 for a single job)
            ranks-<i>/rank-<r>.pkl        rank r's outcome of a multi-rank task i (gathered into result-<i>)
            checkpoint-<i>.pkl            the last state a checkpointing task i saved
            time-limit-requeues-<i>       how often task i was requeued for its time limit
            slurm-<id>.out, .err          logs (sbatch patterns slurm-%j, or slurm-%A_%a for arrays)

Paths are POSIX (the cluster's, or this machine's for the local backend). Stdlib only: the runner
imports this on every node for every task.
"""

from __future__ import annotations

import os
import posixpath
import time

#: Directory under the job root holding one record per sbatch call.
RECORDS_DIR = "records"
SCRIPT = "job.sh"
PAYLOAD = "payload.pkl"
CHILD_CONFIG = "cluster.json"
_RESULT_PREFIX = "result-"
#: A shell glob matching every result file of a job directory.
RESULT_GLOB = f"{_RESULT_PREFIX}*.pkl"


def is_job_dir_name(name: str) -> bool:
    """Whether ``name`` is one the SDK makes (see ``new_job_dir``); anything else under the root is not
    ours. (No ``re``: the runner imports this module for every array task.)"""
    return bool(name) and all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)


def new_job_dir(job_root: str, task_name: str) -> str:
    """A fresh job directory for one sbatch call: sortable by time (UTC), readable by task, never reused."""
    name = f"{time.strftime(_TIME_FORMAT, time.gmtime())}-{task_name}-{os.urandom(4).hex()}"
    return posixpath.join(job_root, name)


_TIME_FORMAT = "%Y%m%d-%H%M%S"


def job_dir_created(name: str) -> float | None:
    """When the job directory ``name`` was made (seconds since the epoch, from the UTC time that starts
    the name ``new_job_dir`` gives it), or None for a name that does not start with one."""
    # Read by hand, not with strptime or calendar: those import re, locale and enum, which every job's
    # runner would pay for on importing this module.
    stamp = name[:15]
    if len(stamp) != 15 or stamp[8] != "-" or not (stamp[:8] + stamp[9:]).isdigit() or not stamp.isascii():
        return None
    year, month, day, hour, minute, second = (
        int(part) for part in (stamp[0:4], stamp[4:6], stamp[6:8], stamp[9:11], stamp[11:13], stamp[13:15])
    )
    from datetime import UTC, datetime  # on use: the runner and Cluster() import this module

    try:
        minute_start = datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()
    except ValueError:  # a month 13, a 31 February, ...
        return None
    return minute_start + second if second <= 61 else None  # 60, 61: leap seconds, as strptime allows


def script_path(job_dir: str) -> str:
    return posixpath.join(job_dir, SCRIPT)


def payload_path(job_dir: str) -> str:
    return posixpath.join(job_dir, PAYLOAD)


def child_config_path(job_dir: str) -> str:
    return posixpath.join(job_dir, CHILD_CONFIG)


def result_path(job_dir: str, index: int) -> str:
    return posixpath.join(job_dir, f"{_RESULT_PREFIX}{index}.pkl")


def rank_result_path(job_dir: str, index: int, rank: int) -> str:
    """Where rank ``rank`` of a multi-rank task leaves its outcome for the gather step (``slurm.node.gather``)."""
    return posixpath.join(job_dir, f"ranks-{index}", f"rank-{rank}.pkl")


def checkpoint_path(job_dir: str, index: int) -> str:
    return posixpath.join(job_dir, f"checkpoint-{index}.pkl")


def requeue_count_path(job_dir: str, index: int) -> str:
    return posixpath.join(job_dir, f"time-limit-requeues-{index}")


def log_patterns(job_dir: str, *, array: bool) -> tuple[str, str]:
    """``--output``/``--error`` patterns: one file pair per job, or per array task (%A job, %a index)."""
    stem = posixpath.join(job_dir, "slurm-%A_%a" if array else "slurm-%j")
    return f"{stem}.out", f"{stem}.err"


def expand_log_pattern(
    pattern: str, *, job_id: str, array_job_id: str = "", array_task_id: str = "", job_name: str = ""
) -> str:
    """Replace sbatch's filename placeholders (%j %A %a %x %%) the way Slurm does (the client names a job's
    log files with it; the local backend's launcher, which writes them, too: it lives here, in a module
    with no imports, for that launcher's start-up)."""
    values = {"j": job_id, "A": array_job_id or job_id, "a": array_task_id, "x": job_name, "%": "%"}
    out, chars = [], iter(pattern)
    for char in chars:
        if char == "%":
            key = next(chars, "")
            out.append(values.get(key, "%" + key))
        else:
            out.append(char)
    return "".join(out)


def record_path(job_root: str, job_id: str) -> str:
    return posixpath.join(job_root, RECORDS_DIR, f"{job_id}.json")
