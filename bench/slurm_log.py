"""One batch job's path through Slurm, read from the daemons' own logs.

slurmctld and slurmd stamp every line with ``LogTimeFormat=iso8601_ms`` (the dev image's default): the
lines below mark the moments a job passes through. The containers share the host's kernel clock, so these
stamps line up with ``time.time()`` on the client and on the nodes (to the log's millisecond).

Levels: the slurmctld lines are ``info``; the slurmd lines about the epilog are ``debug``, so a run that
wants them raises the nodes' level first (``scontrol setdebug debug nodes=...``; ``LOG_LEVELS``).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable

#: (daemon, event) -> a pattern whose group 1 is the job id. Event names are the keys of ``EVENTS``.
PATTERNS: dict[str, tuple[str, re.Pattern[str]]] = {
    # slurmctld answered sbatch: the job is queued (PENDING), not yet placed.
    "queued": ("slurmctld", re.compile(r"_slurm_rpc_submit_batch_job: JobId=(\d+) ")),
    # The main scheduler placed it ("sched: Allocate"), or the backfill scheduler did ("Started JobId").
    "allocated": ("slurmctld", re.compile(r"(?:sched: Allocate JobId=|_start_job: Started JobId=)(\d+) ")),
    # slurmd received the launch request and starts slurmstepd.
    "launch received": ("slurmd", re.compile(r"Launching batch job (\d+) ")),
    # slurmstepd forked the batch script.
    "task started": ("slurmd", re.compile(r"\[(\d+)\.batch\] task 0 \(\d+\) started")),
    # The batch script exited (seen by slurmstepd).
    "task exited": ("slurmd", re.compile(r"\[(\d+)\.batch\] task 0 \(\d+\) exited")),
    # slurmctld recorded the end of the batch script: the job is COMPLETING.
    "completing": ("slurmctld", re.compile(r"_job_complete: JobId=(\d+) done")),
    # slurmd ran the epilog and told slurmctld, which then releases the node: the job is COMPLETED.
    "epilog done": ("slurmd", re.compile(r"JobId=(\d+): sent epilog complete msg")),
}
EVENTS = tuple(PATTERNS)

#: Log levels the events need, and the stack's own (slurm.conf: SlurmctldDebug, SlurmdDebug = info).
LOG_LEVELS = {"slurmctld": "info", "slurmd": "debug"}
STOCK_LEVEL = "info"

_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\] ")


def stamp_of(line: str) -> float | None:
    """``[2026-12-06T21:54:16.003] ...`` -> its POSIX time. The daemons log local time, which is UTC in the
    dev image (no TZ set)."""
    found = _STAMP.match(line)
    if not found:
        return None
    moment = datetime.datetime.fromisoformat(found[1]).replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def events(lines: Iterable[str], daemon: str, job_ids: Iterable[str]) -> dict[str, dict[str, float]]:
    """job id -> {event: POSIX time} for the ``daemon``'s events of ``job_ids`` in ``lines`` (the first
    time each event shows, so a later requeue does not move it)."""
    wanted = set(job_ids)
    found: dict[str, dict[str, float]] = {job_id: {} for job_id in wanted}
    patterns = [(event, pattern) for event, (source, pattern) in PATTERNS.items() if source == daemon]
    for line in lines:
        for event, pattern in patterns:
            match = pattern.search(line)
            if match and match[1] in wanted and event not in found[match[1]]:
                moment = stamp_of(line)
                if moment is not None:
                    found[match[1]][event] = moment
    return found


def grep_pattern(job_ids: Iterable[str]) -> str:
    """An extended regex (``grep -E``) matching any line that names one of ``job_ids``: keeps the log read
    over ``docker exec`` small."""
    ids = "|".join(sorted(set(job_ids), key=int))
    return rf"(JobId=|job |\[)({ids})([^0-9]|$)"
