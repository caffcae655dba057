"""Removing old job directories, never those of jobs that have not ended.

A directory goes when its record is older than ``older_than`` and the scheduler says the job has ended
(or has forgotten it, which Slurm only does after the end). Pending, running, completing and requeued jobs
keep theirs, however old. A directory without a record (a submission whose clean-up failed too, or whose
process died between sbatch and writing the record) goes when the UTC time its name starts with is older
than ``older_than`` and no unfinished job runs its script (``Backend.find_submitted``); one of a submission
in progress is younger than any sensible limit, and a queued job's is kept however old.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from slurm.backends.base import JobState
from slurm.durations import parse_duration
from slurm.node.layout import job_dir_created, script_path
from slurm.records import SubmissionRecord, list_records, remove, remove_dirs, utc_now
from slurm.waiting import has_ended

if TYPE_CHECKING:
    from slurm.job_state import JobCluster


@dataclass
class CleanupReport:
    """What ``Cluster.cleanup`` removed (or, with ``dry_run``, would remove) and what it left."""

    removed: list[str] = field(default_factory=list)
    kept_unfinished: list[str] = field(default_factory=list)
    kept_recent: int = 0
    #: Directories without a record left alone: younger than ``older_than``, of an unfinished job, or
    #: with a name the SDK did not give.
    unrecorded: list[str] = field(default_factory=list)
    #: Directories without a record removed (or, with ``dry_run``, that would be).
    removed_unrecorded: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "removed": self.removed,
            "kept_unfinished": self.kept_unfinished,
            "kept_recent": self.kept_recent,
            "unrecorded": self.unrecorded,
            "removed_unrecorded": self.removed_unrecorded,
            "dry_run": self.dry_run,
        }


def cleanup(
    cluster: JobCluster, older_than: timedelta | float | int | str, *, dry_run: bool = False
) -> CleanupReport:
    """Remove the directories of ended jobs submitted more than ``older_than`` ago (see module doc)."""
    cutoff = utc_now() - parse_duration(older_than, what="older_than")
    transport, root = cluster.backend.transport, cluster.resolve_job_root()
    listing = list_records(transport, root)
    report = CleanupReport(dry_run=dry_run)
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
    report.removed_unrecorded, report.unrecorded = _sort_unrecorded(cluster, listing.unrecorded, cutoff)
    if not dry_run:
        remove(transport, root, [*doomed, *listing.orphaned])
        remove_dirs(transport, root, report.removed_unrecorded)
    return report


def _sort_unrecorded(
    cluster: JobCluster, job_dirs: list[str], cutoff: datetime
) -> tuple[list[str], list[str]]:
    """(those to remove, those to keep) of directories without a record: old ones go unless the scheduler
    still has an unfinished job from their script (a job whose record could not be written)."""
    old = []
    for job_dir in job_dirs:
        created = job_dir_created(posixpath.basename(job_dir))
        if created is not None and created <= cutoff.timestamp():
            old.append(job_dir)
    jobs = {job_dir: cluster.backend.find_submitted(script_path(job_dir)) for job_dir in old}
    ids = [job_id for job_id in jobs.values() if job_id is not None]
    states = cluster.backend.states(ids) if ids else {}
    doomed = [
        job_dir
        for job_dir, job_id in jobs.items()
        if job_id is None or has_ended(states.get(job_id, JobState.UNKNOWN))
    ]
    return doomed, [job_dir for job_dir in job_dirs if job_dir not in doomed]
