"""Picking jobs up again in a new process: a handle by id, and a listing of this user's SDK jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from slurm.backends.base import JobState
from slurm.errors import UnknownJobError
from slurm.job import Job, MappedJobs
from slurm.records import SubmissionRecord, list_records, parse_job_id, read_record

if TYPE_CHECKING:
    from slurm.job_state import JobCluster


@dataclass(frozen=True)
class JobInfo:
    """One line of ``Cluster.list_jobs()``: one sbatch call (a job, or an array job with ``tasks`` tasks).

    ``state`` is the scheduler's (an array's summarises its tasks); UNKNOWN once the scheduler has
    forgotten the job (no accounting, older than MinJobAge): ``results`` then says how many of its tasks
    left a result file (``Cluster.job(id).query_state()`` reads them to tell COMPLETED from FAILED)."""

    job_id: str
    name: str
    state: JobState
    submitted_at: datetime
    array: bool
    tasks: int
    results: int
    job_dir: str
    task: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "name": self.name,
            "state": self.state.value,
            "submitted_at": self.submitted_at.isoformat(),
            "array": self.array,
            "tasks": self.tasks,
            "results": self.results,
            "job_dir": self.job_dir,
            "task": self.task,
        }


def attach(cluster: JobCluster, job_id: str) -> Job | MappedJobs:
    """A handle on a job submitted earlier, possibly by another process, found through its record.

    ``"123"`` gives a ``Job`` (or a ``MappedJobs`` of every task when 123 is an array job); ``"123_4"``
    gives task 4 of array job 123. Raises ``UnknownJobError`` naming the cause and the fix.
    """
    base, index = parse_job_id(job_id)
    record, script = read_record(cluster.backend.transport, cluster.resolve_job_root(), base)
    if not record.array:
        if index is not None:
            raise UnknownJobError(
                f"job {base} is not an array job: ask for {base}, not {job_id}", job_id=job_id
            )
        return _handle(cluster, record, script, None)
    if index is None:
        return MappedJobs([_handle(cluster, record, script, task) for task in range(record.tasks)], [base])
    if index >= record.tasks:
        raise UnknownJobError(
            f"array job {base} has tasks {base}_0 to {base}_{record.tasks - 1}, not {job_id}", job_id=job_id
        )
    return _handle(cluster, record, script, index)


def _handle(cluster: JobCluster, record: SubmissionRecord, script: str, index: int | None) -> Job:
    job_id = record.job_id if index is None else f"{record.job_id}_{index}"
    return Job(
        cluster,
        job_id,
        name=record.name,
        job_dir=record.job_dir,
        script=script,
        index=index or 0,
        array=record.array,
    )


def list_jobs(cluster: JobCluster) -> list[JobInfo]:
    """Every job recorded under the cluster's job root, oldest first: one command for the records and
    one scheduler query for all their states."""
    listing = list_records(cluster.backend.transport, cluster.resolve_job_root())
    states = cluster.backend.states([record.job_id for record in listing.records]) if listing.records else {}
    return [
        JobInfo(
            record.job_id,
            record.name,
            states.get(record.job_id, JobState.UNKNOWN),
            record.submitted_at,
            record.array,
            record.tasks,
            listing.results.get(record.job_dir, 0),
            record.job_dir,
            record.task,
        )
        for record in listing.records
    ]
