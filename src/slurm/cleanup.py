"""Removing old job directories, never those of jobs that have not ended.

A directory goes when its record is older than ``older_than`` and the scheduler says the job has ended
(or has forgotten it, which Slurm only does after the end). Pending, running, completing and requeued jobs
keep theirs, however old. Directories without a record (a submission that failed, or whose process died
between sbatch and writing the record) are reported, never removed: their job may still be queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from slurm.backends.base import JobState
from slurm.durations import parse_duration
from slurm.reattach import has_ended
from slurm.records import SubmissionRecord, list_records, remove, utc_now

if TYPE_CHECKING:
    from slurm.cluster import Cluster


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


def cleanup(
    cluster: Cluster, older_than: timedelta | float | int | str, *, dry_run: bool = False
) -> CleanupReport:
    """Remove the directories of ended jobs submitted more than ``older_than`` ago (see module doc)."""
    cutoff = utc_now() - parse_duration(older_than, what="older_than")
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
