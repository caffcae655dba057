"""Removing old job directories, never those of jobs that have not ended.

A directory goes when its record is older than ``older_than`` and the scheduler says the job has ended
(or has forgotten it, which Slurm only does after the end). Pending, running, completing and requeued jobs
keep theirs, however old. Directories without a record (a submission that failed, or whose process died
between sbatch and writing the record) are reported, never removed: their job may still be queued.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from slurm.backends.base import JobState
from slurm.reattach import has_ended
from slurm.records import SubmissionRecord, list_records, remove, utc_now

if TYPE_CHECKING:
    from slurm.cluster import Cluster

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass
class CleanupReport:
    """What ``Cluster.cleanup`` removed (or, with ``dry_run``, would remove) and what it left."""

    removed: list[str] = field(default_factory=list)
    kept_unfinished: list[str] = field(default_factory=list)
    kept_recent: int = 0
    unrecorded: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "removed": self.removed,
            "kept_unfinished": self.kept_unfinished,
            "kept_recent": self.kept_recent,
            "unrecorded": self.unrecorded,
            "dry_run": self.dry_run,
        }


def parse_age(value: timedelta | float | int | str) -> timedelta:
    """``timedelta``, seconds, or text like "90s", "30m", "12h", "7d", "2w"."""
    if isinstance(value, timedelta):
        age = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        age = timedelta(seconds=value)
    else:
        match = _AGE.match(str(value))
        if not match:
            raise ValueError(
                f"older_than={value!r} is not an age: use seconds or text like '90s', '30m', '12h', "
                "'7d', '2w'"
            )
        age = timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    if age < timedelta(0):
        raise ValueError(f"older_than={value!r} is negative: give an age of 0 or more")
    return age


def cleanup(
    cluster: Cluster, older_than: timedelta | float | int | str, *, dry_run: bool = False
) -> CleanupReport:
    """Remove the directories of ended jobs submitted more than ``older_than`` ago (see module doc)."""
    cutoff = utc_now() - parse_age(older_than)
    transport, root = cluster.backend.transport, cluster.resolve_job_root()
    listing = list_records(transport, root)
    report = CleanupReport(unrecorded=listing.unrecorded, dry_run=dry_run)
    old = [record for record in listing.records if record.submitted_at <= cutoff]
    report.kept_recent = len(listing.records) - len(old)
    states = cluster.backend.states([record.job_id for record in old]) if old else {}
    doomed: list[SubmissionRecord] = []
    for record in old:
        if has_ended(states.get(record.job_id, JobState.UNKNOWN)):
            doomed.append(record)
            report.removed.append(record.job_dir)
        else:
            report.kept_unfinished.append(record.job_dir)
    if not dry_run:
        remove(transport, root, [*doomed, *listing.orphaned])
    return report
