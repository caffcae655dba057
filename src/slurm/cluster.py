"""``Cluster``: where jobs go (backend), how code gets there (packaging), who hears about it (callbacks)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from slurm.backends.base import Backend
from slurm.errors import ConfigError, SubmitError
from slurm.packaging import PackagingStrategy, make_packaging
from slurm.resources import Resources
from slurm.task import Task

# Only what building a Cluster needs is imported here: ``import slurm; Cluster()`` is what every script
# pays before its first submission, so submitting, waiting and config files import their modules on use.

T = TypeVar("T")

if TYPE_CHECKING:
    from datetime import timedelta

    from slurm.cleanup import CleanupReport
    from slurm.job import Job, MappedJobs
    from slurm.reattach import JobInfo
    from slurm.serialization import Call
    from slurm.watcher import Watcher

#: Seconds without an answer from the scheduler or login node before a wait with no timeout gives up.
DEFAULT_OUTAGE_LIMIT = 600.0


class Cluster:
    """Submit tasks as jobs: ``job = cluster.submit(add, 1, 2)``; ``jobs = cluster.map(square, range(10))``.

    ``backend`` defaults to a ``LocalCommandBackend`` (no Slurm); ``packaging`` is a strategy or its config
    dict (default "none", with this interpreter on the local backend); ``defaults`` are resources every task
    gets unless it sets its own; ``node_python`` ("3.13") skips probing the nodes' Python version.

    Waiting (see ``slurm.watcher``): ``poll_interval_seconds`` is the longest pause between two scheduler queries
    (default 30 s; 0.2 s on the local backend), reached by backing off from 1 s over about a minute;
    ``result_poll_interval_seconds`` the longest pause between two checks for result files (default 1 s), which
    cost the scheduler nothing; ``outage_limit_seconds`` how long transient errors (slurmctld or the login node
    not answering) are retried when the caller gave no timeout (default 600 s).
    """

    def __init__(
        self,
        backend: Backend | None = None,
        packaging: PackagingStrategy | Mapping[str, Any] | None = None,
        callbacks: Iterable[Any] = (),
        *,
        job_root: str | None = None,
        defaults: Resources | Mapping[str, Any] | None = None,
        node_python: str | None = None,
        poll_interval_seconds: float | None = None,
        result_poll_interval_seconds: float | None = None,
        outage_limit_seconds: float = DEFAULT_OUTAGE_LIMIT,
    ) -> None:
        if backend is None:
            from slurm.backends.local import LocalCommandBackend

            backend = LocalCommandBackend()
        self.backend = backend
        self.packaging = _packaging(packaging, backend)
        self.callbacks = list(callbacks)
        self.defaults = defaults if isinstance(defaults, Resources) else Resources.from_dict(defaults or {})
        local = backend.type_name == "local"
        #: Longest pause between two scheduler queries while waiting, in seconds.
        self.poll_interval_seconds = _positive(
            "poll_interval_seconds", poll_interval_seconds, 0.2 if local else 30.0
        )
        #: Longest pause between two result-file checks while waiting, in seconds.
        self.result_poll_interval_seconds = _positive(
            "result_poll_interval_seconds", result_poll_interval_seconds, 0.2 if local else 1.0
        )
        #: Seconds transient errors are retried when the caller set no timeout.
        self.outage_limit_seconds = _positive(
            "outage_limit_seconds", outage_limit_seconds, DEFAULT_OUTAGE_LIMIT
        )
        self._job_root = job_root
        self._node_python = node_python
        self._prepared = False
        self._lock = threading.Lock()
        self._watcher_lock = threading.Lock()
        self._made_watcher: Watcher | None = None

    @property
    def _watcher(self) -> Watcher:
        """Queries the scheduler for this cluster's unfinished jobs; made on first use (see the imports),
        once, whichever thread gets there first."""
        with self._watcher_lock:
            if self._made_watcher is None:
                from slurm.watcher import Watcher

                self._made_watcher = Watcher(self)
            return self._made_watcher

    @classmethod
    def from_env(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        callbacks: Iterable[Any] = (),
    ) -> Cluster:
        """Build from a YAML file (``path`` or ``$SLURM_SDK_CONFIG``) plus ``SLURM_SDK__*`` environment
        overrides; see ``slurm.config`` for the schema."""
        from slurm.config import ENV_PATH, backend_settings_when_changed, cluster_options, load_config

        data, source = load_config(path, overrides=overrides)
        cluster = cls(callbacks=callbacks, **cluster_options(data, source))
        file = path or os.environ.get(ENV_PATH)
        transport = getattr(cluster.backend, "transport", None)
        if file and transport is not None and hasattr(transport, "reload_settings"):
            transport.reload_settings = backend_settings_when_changed(str(file), overrides)
        return cluster

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
        from slurm.submission import submit_calls

        [job] = submit_calls(self, _as_task(task), [(args, kwargs)], array=False)
        return job

    def map(
        self,
        task: Task,
        items: Iterable[Any],
        /,
        *,
        max_parallel: int | None = None,
        wait_for_capacity: bool = True,
    ) -> MappedJobs:
        """Run ``task(item)`` for every item as array jobs, split into chunks no larger than the
        scheduler's MaxArraySize. ``max_parallel`` caps running tasks per chunk (sbatch ``--array=...%N``).

        Under a site's submit limit (jobs pending or running per user), chunks are submitted as earlier
        jobs end, so the call returns once every item is queued (logger "slurm.limits" says so);
        ``wait_for_capacity=False`` raises ``SubmitLimitError`` instead, before anything is uploaded, when
        the limit has no room for all items now. Interrupted, it cancels what it submitted."""
        if max_parallel is not None and (
            isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1
        ):
            raise ValueError(
                f"max_parallel must be an int >= 1 (tasks running at once per array chunk), or None for no "
                f"cap; got {max_parallel!r}"
            )
        from slurm.job import MappedJobs
        from slurm.throttle import map_within_limits

        task = _as_task(task)
        calls: list[Call] = [((item,), {}) for item in items]
        jobs = map_within_limits(
            self, task, calls, max_parallel=max_parallel, wait_for_capacity=wait_for_capacity
        )
        return MappedJobs(jobs, list(dict.fromkeys(job.job_id.partition("_")[0] for job in jobs)))

    def _retry(self, operation: Callable[[], T]) -> T:
        """``operation()`` with transient errors retried (backoff) within the caller's deadline, or
        ``outage_limit_seconds`` seconds without one."""
        from slurm.retrying import with_retries  # tenacity: only the submitting side needs it

        return with_retries(operation, limit=self.outage_limit_seconds)

    def _ensure_prepared(self) -> None:
        from slurm.records import secure_root

        with self._lock:
            if not self._prepared:
                secure_root(self.backend.transport, self.resolve_job_root())  # before any job file is written
                self.packaging.prepare(self.backend)
                self._prepared = True

    def resolve_job_root(self) -> str:
        """Absolute directory on the cluster side holding one directory per submission. The first call may
        ask the cluster for the home directory (a ``~`` in ``job_root``); the answer is kept."""
        root = self.backend.transport.expand_home(self._job_root or "~/.slurm-sdk/jobs")
        self._job_root = root
        return root

    def _node_python_version(self) -> str:
        """The nodes' Python version ("3.13"), probed once through the transport with the packaging's
        interpreter. Only needed when something must be pickled by value."""
        if self._node_python is None:
            self._ensure_prepared()
            probe = (
                f"{self.packaging.python_command()} -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"
            )
            output = self.backend.transport.run("\n".join([*self.packaging.setup_lines(), probe])).stdout
            self._node_python = output.strip().splitlines()[-1]
        return self._node_python

    # --- picking jobs up again ---------------------------------------------------------------------

    def job(self, job_id: str | int) -> Job | MappedJobs:
        """A handle on a job submitted earlier through the SDK with this job root, by any process:
        ``result()``, ``query_state()``, logs and ``cancel()`` work on it (what ``submit``/``map`` return). ``"123_4"`` is task 4 of array job
        123; an array's own id gives a ``MappedJobs``. ``UnknownJobError`` for ids the SDK has no record of."""
        from slurm.reattach import attach

        return attach(self, str(job_id))

    def list_jobs(self) -> list[JobInfo]:
        """A listing (not handles: ``job(info.job_id)`` gives one) of this user's SDK jobs under the job
        root, oldest first, with name, state and submit time (one command for the records, one scheduler
        query for all states)."""
        from slurm.reattach import list_jobs

        return list_jobs(self)

    def cleanup(self, older_than: timedelta | float | str, *, dry_run: bool = False) -> CleanupReport:
        """Remove the directories of jobs that ended and were submitted more than ``older_than`` ago
        (seconds, a ``timedelta`` or "7d"/"12h"/"30m"); never those of unfinished jobs."""
        from slurm.cleanup import cleanup

        return cleanup(self, older_than, dry_run=dry_run)

    # --- polling -----------------------------------------------------------------------------------

    def _poll(self, jobs: Sequence[Job] = ()) -> None:
        """Ask the scheduler now about ``jobs`` and every other unfinished job of this cluster, in one
        round trip (fires state callbacks). Waits do this on the watcher's cadence instead."""
        self._watcher.query(jobs)

    # --- workflows ---------------------------------------------------------------------------------

    def _child_config(self) -> dict[str, Any]:
        """What a workflow's job needs to build its own Cluster on the node (see ``_from_child_config``)."""
        if self.backend.type_name not in ("local", "slurm"):
            raise SubmitError(
                f"workflows need a backend whose children run 'local' or 'slurm', not {self.backend.type_name!r}"
            )
        # Backends may offer to_config(): options the child's backend of the same kind is built with.
        to_config = getattr(self.backend, "to_config", dict)
        backend = {"type": self.backend.type_name, **to_config()}
        return {
            "backend": backend,
            "packaging": self.packaging.to_config(),
            "job_root": self.resolve_job_root(),
            "defaults": {
                name: value for name, value in vars(self.defaults).items() if value not in (None, {})
            },
            "poll_interval_seconds": self.poll_interval_seconds,
            "result_poll_interval_seconds": self.result_poll_interval_seconds,
            "outage_limit_seconds": self.outage_limit_seconds,
        }

    @staticmethod
    def _from_child_config(config: Mapping[str, Any]) -> Cluster:
        """The Cluster a workflow receives: local Slurm commands on the node (no SSH), the parent's
        packaging as already prepared (no second build or upload), no callbacks. A static method: a
        workflow's Task carries it to the node (``Task._for_cluster``), and a plain function is pickled
        by reference (``slurm.cluster`` + its name), where a bound method would travel as bytecode."""
        from slurm.backends import make_backend
        from slurm.node.payload import LOCAL_PYTHON

        cluster = Cluster(
            make_backend(config["backend"], check=False),  # written by the parent SDK: no pydantic here
            make_packaging(config["packaging"], check=False),
            job_root=config["job_root"],
            defaults=config["defaults"],
            node_python=LOCAL_PYTHON,
            poll_interval_seconds=config["poll_interval_seconds"],
            result_poll_interval_seconds=config.get("result_poll_interval_seconds"),
            outage_limit_seconds=config.get("outage_limit_seconds", DEFAULT_OUTAGE_LIMIT),
        )
        cluster._prepared = True
        return cluster


def _packaging(
    packaging: PackagingStrategy | Mapping[str, Any] | None, backend: Backend
) -> PackagingStrategy:
    if isinstance(packaging, PackagingStrategy):
        return packaging
    if packaging is not None:
        return make_packaging(packaging)
    from slurm.packaging.none import NonePackaging

    # Local jobs run on this machine, so this interpreter (which has the SDK) is the right default.
    return NonePackaging(python=sys.executable) if backend.type_name == "local" else NonePackaging()


def _positive(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}", key=name)
    return float(value)


def _as_task(task: Any) -> Task:
    if isinstance(task, Task):
        return task
    if callable(task):
        return Task(task)
    raise TypeError(f"expected a @task-decorated function, got {type(task).__name__} {task!r}")
