"""``Cluster``: where jobs go (backend), how code gets there (packaging), who hears about it (callbacks)."""

from __future__ import annotations

import json
import logging
import os
import posixpath
import secrets
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from slurm.backends.base import Backend, JobState
from slurm.callbacks import emit
from slurm.config import cluster_options, load_config
from slurm.errors import SubmitError
from slurm.job import ArrayJob, Job
from slurm.packaging import PackagingStrategy, make_packaging
from slurm.rendering import render_script
from slurm.resources import Resources
from slurm.serialization import LOCAL_PYTHON, Call, dump_payload
from slurm.records import SubmissionRecord, secure_root, utc_now, write_record
from slurm.task import Task

if TYPE_CHECKING:
    from datetime import timedelta

    from slurm.cleanup import CleanupReport
    from slurm.reattach import JobInfo

#: Files in every job directory.
SCRIPT, PAYLOAD, CHILD_CONFIG = "job.sh", "payload.pkl", "cluster.json"


class Cluster:
    """Submit tasks as jobs: ``job = cluster.submit(add, 1, 2)``; ``jobs = cluster.map(square, range(10))``.

    ``backend`` defaults to a ``LocalCommandBackend`` (no Slurm); ``packaging`` is a strategy or its config
    dict (default "none", with this interpreter on the local backend); ``defaults`` are resources every task
    gets unless it sets its own; ``node_python`` ("3.13") skips probing the nodes' Python version.
    """

    def __init__(self, backend: Backend | None = None, packaging: PackagingStrategy | Mapping[str, Any] | None = None,
                 callbacks: Iterable[Any] = (), *, job_root: str | None = None,
                 defaults: Resources | Mapping[str, Any] | None = None, node_python: str | None = None,
                 poll_interval: float | None = None) -> None:
        if backend is None:
            from slurm.backends.local import LocalCommandBackend
            backend = LocalCommandBackend()
        self.backend = backend
        self.packaging = _packaging(packaging, backend)
        self.callbacks = list(callbacks)
        self.defaults = defaults if isinstance(defaults, Resources) else Resources.from_dict(defaults or {})
        #: Longest pause between two polls while waiting, in seconds.
        self.poll_interval = poll_interval or (0.2 if backend.kind == "local" else 1.0)
        self._job_root = job_root
        self._node_python = node_python
        self._prepared = False
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, path: str | os.PathLike[str] | None = None, *, overrides: Mapping[str, Any] | None = None,
                 callbacks: Iterable[Any] = ()) -> Cluster:
        """Build from a YAML file (``path`` or ``$SLURM_SDK_CONFIG``) plus ``SLURM_SDK__*`` environment
        overrides; see ``slurm.config`` for the schema."""
        data, source = load_config(path, overrides=overrides)
        return cls(callbacks=callbacks, **cluster_options(data, source))

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.backend.close()

    # --- submitting --------------------------------------------------------------------------------

    def submit(self, task: Task, /, *args: Any, **kwargs: Any) -> Job:
        """Run ``task(*args, **kwargs)`` as one job. Use ``task.after(job)`` for dependencies and
        ``task.options(...)`` to change resources for this submission."""
        [job] = self._submit(_as_task(task), [(args, kwargs)], array=False)
        return job

    def map(self, task: Task, items: Iterable[Any], /, *, max_parallel: int | None = None) -> ArrayJob:
        """Run ``task(item)`` for every item as array jobs, split into chunks no larger than the
        scheduler's MaxArraySize. ``max_parallel`` caps running tasks per chunk (sbatch ``--array=...%N``)."""
        task = _as_task(task)
        calls: list[Call] = [((item,), {}) for item in items]
        size = self.backend.max_array_size()
        jobs: list[Job] = []
        for start in range(0, len(calls), size):
            jobs += self._submit(task, calls[start:start + size], array=True, max_parallel=max_parallel)
        return ArrayJob(jobs, list(dict.fromkeys(job.job_id.partition("_")[0] for job in jobs)))

    def _submit(self, task: Task, calls: Sequence[Call], *, array: bool, max_parallel: int | None = None) -> list[Job]:
        payload = dump_payload(task, calls, self.node_python)  # fails before anything reaches the cluster
        self._ensure_prepared()
        job_dir = posixpath.join(self.job_root, f"{time.strftime('%Y%m%d-%H%M%S')}-{task.name}-{secrets.token_hex(4)}")
        script = render_script(job_name=task.name, job_dir=job_dir, resources=task.resources.over(self.defaults),
                               array=array, setup_lines=self.packaging.setup_lines(),
                               python=self.packaging.python_command())
        transport = self.backend.transport
        transport.write_bytes(posixpath.join(job_dir, PAYLOAD), payload)
        if task.is_workflow:
            transport.write_bytes(posixpath.join(job_dir, CHILD_CONFIG), json.dumps(self.child_config()).encode())
        transport.write_bytes(posixpath.join(job_dir, SCRIPT), script.encode(), mode=0o755)
        spec = (f"0-{len(calls) - 1}" + (f"%{max_parallel}" if max_parallel else "")) if array else None
        job_id = self.backend.submit(posixpath.join(job_dir, SCRIPT), array=spec, dependencies=task.dependencies,
                                     dependency_type=task.dependency_type)
        self._record_submission(task, job_id, job_dir, len(calls), array=array)
        jobs = [Job(self, f"{job_id}_{index}" if array else job_id, name=task.name, job_dir=job_dir,
                    script=script, index=index, array=array) for index in range(len(calls))]
        for job in jobs:
            emit(self.callbacks, "on_submit", job)
        return jobs

    def _ensure_prepared(self) -> None:
        with self._lock:
            if not self._prepared:
                secure_root(self.backend.transport, self.job_root)  # before any job file is written
                self.packaging.prepare(self.backend)
                self._prepared = True

    @property
    def job_root(self) -> str:
        """Absolute directory on the cluster side holding one directory per submission."""
        root = self._job_root or "~/.slurm-sdk/jobs"
        if root == "~" or root.startswith("~/"):
            root = self.backend.transport.home() + root[1:]  # Slurm does not expand ~ in #SBATCH paths
        self._job_root = root
        return root

    def node_python(self) -> str:
        """The nodes' Python version ("3.13"), probed once through the transport with the packaging's
        interpreter. Only needed when something must be pickled by value."""
        if self._node_python is None:
            self._ensure_prepared()
            probe = f"{self.packaging.python_command()} -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"
            output = self.backend.transport.run("\n".join([*self.packaging.setup_lines(), probe])).stdout
            self._node_python = output.strip().splitlines()[-1]
        return self._node_python

    def _record_submission(self, task: Task, job_id: str, job_dir: str, tasks: int, *, array: bool) -> None:
        """Leave the record a later process finds this job by (see ``slurm.records``). The job runs either
        way, so a failure here is logged, not raised."""
        fn = getattr(task, "fn", None)
        record = SubmissionRecord(job_id=job_id, name=task.name, job_dir=job_dir, submitted_at=utc_now(),
                                  array=array, tasks=tasks, workflow=task.is_workflow,
                                  task=f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}")
        try:
            write_record(self.backend.transport, self.job_root, record)
        except Exception as error:  # noqa: BLE001 - the submission itself succeeded
            logging.getLogger("slurm.records").warning(
                "job %s was submitted but its record could not be written (%s); it runs, but a new process "
                "cannot find it by id", job_id, error)

    # --- picking jobs up again ---------------------------------------------------------------------

    def job(self, job_id: str | int) -> Job | ArrayJob:
        """A handle on a job submitted earlier through the SDK with this job root, by any process:
        ``result()``, ``state``, logs and ``cancel()`` work on it. ``"123_4"`` is task 4 of array job
        123; an array's own id gives an ``ArrayJob``. ``UnknownJobError`` for ids the SDK has no record of."""
        from slurm.reattach import attach
        return attach(self, str(job_id))

    def jobs(self) -> list[JobInfo]:
        """This user's SDK jobs under the job root, oldest first, with name, state and submit time (one
        command for the records, one scheduler query for all states)."""
        from slurm.reattach import list_jobs
        return list_jobs(self)

    def cleanup(self, older_than: timedelta | float | str, *, dry_run: bool = False) -> CleanupReport:
        """Remove the directories of jobs that ended and were submitted more than ``older_than`` ago
        (seconds, a ``timedelta`` or "7d"/"12h"/"30m"); never those of unfinished jobs."""
        from slurm.cleanup import cleanup
        return cleanup(self, older_than, dry_run=dry_run)

    # --- polling -----------------------------------------------------------------------------------

    def poll(self, jobs: Sequence[Job]) -> None:
        """Refresh the state of ``jobs`` in one scheduler round trip (fires state callbacks)."""
        states = self.backend.states([job.job_id for job in jobs])
        for job in jobs:
            job._observe(states.get(job.job_id, JobState.UNKNOWN))

    # --- workflows ---------------------------------------------------------------------------------

    def child_config(self) -> dict[str, Any]:
        """What a workflow's job needs to build its own Cluster on the node (see ``from_child_config``)."""
        if self.backend.kind not in ("local", "slurm"):
            raise SubmitError(f"workflows need a backend of kind 'local' or 'slurm', not {self.backend.kind!r}")
        # Backends may offer to_config(): options the child's backend of the same kind is built with.
        to_config = getattr(self.backend, "to_config", dict)
        backend = {"type": self.backend.kind, **to_config()}
        return {"backend": backend, "packaging": self.packaging.to_config(), "job_root": self.job_root,
                "defaults": {name: value for name, value in vars(self.defaults).items() if value not in (None, {})},
                "poll_interval": self.poll_interval}

    @classmethod
    def from_child_config(cls, config: Mapping[str, Any]) -> Cluster:
        """The Cluster a workflow receives: local Slurm commands on the node (no SSH), the parent's
        packaging as already prepared (no second build or upload), no callbacks."""
        from slurm.backends import make_backend

        cluster = cls(make_backend(config["backend"]), make_packaging(config["packaging"]),
                      job_root=config["job_root"], defaults=config["defaults"], node_python=LOCAL_PYTHON,
                      poll_interval=config["poll_interval"])
        cluster._prepared = True
        return cluster


def _packaging(packaging: PackagingStrategy | Mapping[str, Any] | None, backend: Backend) -> PackagingStrategy:
    if isinstance(packaging, PackagingStrategy):
        return packaging
    if packaging is not None:
        return make_packaging(packaging)
    from slurm.packaging.none import NonePackaging
    # Local jobs run on this machine, so this interpreter (which has the SDK) is the right default.
    return NonePackaging(python=sys.executable) if backend.kind == "local" else NonePackaging()


def _as_task(task: Any) -> Task:
    if isinstance(task, Task):
        return task
    if callable(task):
        return Task(task)
    raise TypeError(f"expected a @task-decorated function, got {type(task).__name__} {task!r}")
