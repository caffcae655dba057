"""One ``sbatch`` call of a Cluster: the payload and the job script, their upload, sbatch (never twice for one
script, however often an outage makes it retry), the submission record, and the Job handles. What a
submission needs of its cluster is typed as a Protocol (``SubmittingCluster``), so this module, below
``slurm.cluster``, does not import it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from slurm import dataflow, timing
from slurm.errors import BackendError, SubmitError
from slurm.events import emit
from slurm.job import Job
from slurm.job_state import JobCluster
from slurm.node import layout
from slurm.records import SubmissionRecord, record_command, utc_now
from slurm.rendering import render_script
from slurm.serialization import dump_payload

if TYPE_CHECKING:
    from slurm.packaging import PackagingStrategy
    from slurm.resources import Resources
    from slurm.serialization import Call
    from slurm.task import Task


class SubmittingCluster(JobCluster, Protocol):
    """A cluster as submissions use it (``slurm.cluster.Cluster``): a job's cluster, plus how code reaches
    the nodes and the resources every task gets."""

    @property
    def packaging(self) -> PackagingStrategy: ...
    @property
    def defaults(self) -> Resources: ...
    def _ensure_prepared(self) -> None: ...
    def _node_python_version(self) -> str: ...
    def _child_config(self) -> dict[str, Any]: ...
    def _from_child_config(self, config: Mapping[str, Any]) -> Any: ...


def submit_calls(
    cluster: SubmittingCluster,
    task: Task,
    calls: Sequence[Call],
    *,
    array: bool,
    max_parallel: int | None = None,
) -> list[Job]:
    """Submit ``task`` once per call in ``calls`` (one sbatch: an array job when ``array``, with at most
    ``max_parallel`` tasks running at once); the Jobs, one per call, are watched by the cluster."""
    if task.is_workflow:  # its job builds its own Cluster on the node, as this cluster's class says
        task = task._for_cluster(cluster._from_child_config)
    calls, parents = dataflow.extract(cluster, calls)  # Job arguments: dependencies, results on the node
    dataflow.check_dependency_clusters(cluster, task)  # .after(job) of a job on another Slurm cluster
    with timing.phase("serialize"):  # fails before anything reaches the cluster
        payload = dump_payload(task, calls, cluster._node_python_version)
    dependencies = dataflow.dependencies(task, parents)
    with timing.phase("prepare"):
        cluster._ensure_prepared()
    job_dir = layout.new_job_dir(cluster.resolve_job_root(), task.name)
    script = render_script(
        job_name=task.name,
        job_dir=job_dir,
        resources=task.resources.over(cluster.defaults),
        array=array,
        setup_lines=cluster.packaging.setup_lines(),
        python=cluster.packaging.python_command(),
    )
    transport = cluster.backend.transport
    files = {layout.PAYLOAD: (payload, 0o600)}
    if task.is_workflow:
        files[layout.CHILD_CONFIG] = (json.dumps(cluster._child_config()).encode(), 0o600)
    files[layout.SCRIPT] = (script.encode(), 0o700)  # last: the directory is complete when it appears
    spec = (f"0-{len(calls) - 1}" + (f"%{max_parallel}" if max_parallel else "")) if array else None
    options: dict[str, Any] = {
        "array": spec,
        "dependencies": dependencies,
        "dependency_type": task.dependency_type,
    }
    record = _record(task, job_dir, len(calls), array=array)
    script_path = layout.script_path(job_dir)
    # Over SSH, one remote command instead of three steps; on this host the steps cost nothing to keep.
    combined = getattr(cluster.backend, "submit_with_files", None) if transport.remote else None
    sbatch_sent = False
    try:
        with timing.phase("submit"):
            if combined is not None:
                # Files, sbatch and record in one remote command; safe to repeat once the job was
                # looked up and not found (see SlurmBackend.submit_with_files).
                sbatch_sent = True
                shell = record_command(cluster.resolve_job_root(), record)
                job_id, recorded = _submit_once(
                    cluster,
                    script_path,
                    lambda: combined(job_dir, files, script_path, record=shell, **options),
                )
            else:
                # Safe to repeat as a whole (a fresh temporary name each time, renamed into place once
                # complete), so a connection dropped mid-upload is retried like any outage.
                cluster._retry(lambda: transport.write_files(job_dir, files))
                sbatch_sent = True
                job_id, recorded = _submit_once(
                    cluster, script_path, lambda: (cluster.backend.submit(script_path, **options), False)
                )
    except BaseException as error:
        # What this submission wrote goes, unless a job may have come of it: a failure before sbatch,
        # sbatch's "no", or a lost answer after which no job was found. Else cleanup() decides later.
        if not sbatch_sent or isinstance(error, SubmitError) or getattr(error, "not_submitted", False):
            _discard(cluster, job_dir)
        raise
    if not recorded:
        with timing.phase("submit"):
            _write_record(cluster, dataclasses.replace(record, job_id=job_id))
    jobs = [
        Job(
            cluster,
            f"{job_id}_{index}" if array else job_id,
            name=task.name,
            job_dir=job_dir,
            script=script,
            index=index,
            array=array,
            depends_on=dependencies,
            dependency_type=task.dependency_type,
        )
        for index in range(len(calls))
    ]
    cluster._watcher.add(jobs)
    for job in jobs:
        emit(cluster.callbacks, "on_submit", job)
    return jobs


def _discard(cluster: SubmittingCluster, job_dir: str) -> None:
    """Remove the directory of a submission that failed before any job came of it (best effort: if
    this fails too, the directory stays unrecorded and ``cleanup()`` removes it once old)."""
    from slurm.records import remove_dirs  # looked up on use: tests make it fail

    try:
        remove_dirs(cluster.backend.transport, cluster.resolve_job_root(), [job_dir])
    except Exception as error:
        import logging

        logging.getLogger("slurm.records").warning(
            "the submission failed and its directory %s could not be removed (%s); cleanup() removes it "
            "once it is older than its age limit",
            job_dir,
            error,
        )


def _submit_once(
    cluster: SubmittingCluster, script_path: str, submit: Callable[[], tuple[str, bool]]
) -> tuple[str, bool]:
    """``submit()`` (the job id, and whether its record was written), retried on transient errors,
    never twice for one script: when an attempt's answer was lost (connection dropped or timed out
    after sbatch was sent), the job is looked up by its script path before anything is retried or
    reported."""

    def attempt() -> tuple[str, bool]:
        try:
            return submit()
        except SubmitError:
            raise  # sbatch answered "no": the job does not exist
        except BackendError as error:
            found = cluster._retry(lambda: cluster.backend.find_submitted(script_path))
            if found is not None:
                return found, False
            error.add_note(f"no job was found for {script_path} afterwards, so it was not submitted")
            error.not_submitted = True
            raise

    return cluster._retry(attempt)


def _record(task: Task, job_dir: str, tasks: int, *, array: bool) -> SubmissionRecord:
    """The record a later process finds this job by (see ``slurm.records``), its id still to come."""
    fn = getattr(task, "fn", None)
    return SubmissionRecord(
        job_id="",
        name=task.name,
        job_dir=job_dir,
        submitted_at=utc_now(),
        array=array,
        tasks=tasks,
        workflow=task.is_workflow,
        task=f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}",
    )


def _write_record(cluster: SubmittingCluster, record: SubmissionRecord) -> None:
    """Write the record when the submission did not (a backend that submits alone, or an answer lost).
    The job runs either way, so a failure here is logged, not raised."""
    from slurm.records import write_record  # looked up on use: tests make it fail

    try:
        write_record(cluster.backend.transport, cluster.resolve_job_root(), record)
    except Exception as error:
        import logging

        logging.getLogger("slurm.records").warning(
            "job %s was submitted but its record could not be written (%s); it runs, but a new process "
            "cannot find it by id",
            record.job_id,
            error,
        )
