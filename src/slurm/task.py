"""``@task`` and ``@workflow``: plain functions plus the resources and dependencies of their jobs."""

from __future__ import annotations

import sys

from slurm import node

# slurm.errors re-exports it (the same class): importing it from there would cost every array task the
# rest of the SDK's errors, which the runner does not need.
from slurm.node.errors import ResourceError

# The runner unpickles a Task for every array task: this module keeps typing, slurm.resources
# (dataclasses, inspect, subprocess), slurm.backends and re off that path (types are for checkers only).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypedDict, Unpack, overload

    from slurm.resources import Resources

    class TaskOptions(TypedDict, total=False):
        """What ``@task(...)`` and ``@workflow(...)`` take: the job's name and its resources (``Resources``)."""

        name: str | None
        time: str | int | None
        cpus: int | None
        mem: str | int | None
        gpus: int | str | None
        partition: str | None
        account: str | None
        requeue: bool | None
        checkpoint: Any
        nodes: int | None
        ntasks_per_node: int | None
        sbatch: Mapping[str, Any] | None


class Task:
    """A function that runs as a Slurm job. Calling it directly runs it here, in this process."""

    __wrapped__: Callable[..., Any]  # the function, as functools.update_wrapper would set it (``_wrap``)

    def __init__(
        self,
        fn: Callable[..., Any],
        resources: Resources | None = None,
        *,
        name: str | None = None,
        workflow: bool = False,
    ) -> None:
        _wrap(self, fn)
        self.fn = fn
        self._resources = resources
        #: The decorator's resource options, checked on first use of ``resources`` (in a job's runner only,
        #: see ``slurm.node.in_job_runner``; elsewhere they are checked when the task is defined).
        self._unchecked_options: dict[str, Any] = {}
        # Job names end up in #SBATCH lines and directory names: keep them to safe characters.
        self.name = "".join(
            c if c.isascii() and (c.isalnum() or c in "_.-") else "_" for c in name or fn.__name__
        )
        self.is_workflow = workflow
        #: How a workflow's job builds its Cluster (set when it is submitted: ``_for_cluster``).
        self._make_cluster: Callable[[Mapping[str, Any]], Any] | None = None
        self.dependencies: tuple[str, ...] = ()
        #: The Slurm cluster (``slurm_cluster`` of its backend; None: the login node's) of each dependency
        #: given as a Job, so a submission to another cluster is refused (``dataflow.check_dependency_clusters``).
        self.dependency_clusters: dict[str, str | None] = {}
        self.dependency_type = "afterok"

    @property
    def resources(self) -> Resources:
        if self._resources is None:
            from slurm.resources import Resources

            self._resources = Resources.from_dict(self._unchecked_options)
            _check_ranks(self._resources, self.is_workflow)
        return self._resources

    @resources.setter
    def resources(self, value: Resources) -> None:
        self._resources = value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def run_on_node(self, job_dir: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run as the job: called by the runner (``slurm.node.runner``) with the call it read from the
        payload. Job arguments become their results; a workflow gets the Cluster it submits children to.
        The node-side package imports nothing of the submitting side: what a job needs of it comes
        through here, the Task the runner unpickled."""
        if "slurm.dataflow" in sys.modules:  # the call held a Job argument: unpickling it imported dataflow
            from slurm import dataflow

            args, kwargs = dataflow.inject((args, kwargs))  # Job arguments -> their results, read here
        if not self.is_workflow:
            return self.fn(*args, **kwargs)
        with _workflow_cluster(job_dir, self._make_cluster) as cluster:
            return self.fn(cluster, *args, **kwargs)

    def __repr__(self) -> str:
        kind = "workflow" if self.is_workflow else "task"
        return f"<{kind} {self.fn.__module__}.{self.fn.__qualname__}>"

    def after(self, *jobs: Any, dependency_type: str = "afterok") -> Task:
        """This task, to be started only after ``jobs`` (Jobs, MappedJobs handles or job id strings) end.

        ``dependency_type`` (one of ``DEPENDENCY_TYPES``): "afterok" (all succeeded), "afterany" (all
        ended) or "afternotok" (all failed).
        """
        from slurm.backends.base import DEPENDENCY_TYPES

        if dependency_type not in DEPENDENCY_TYPES:
            raise ValueError(
                f"unknown dependency type {dependency_type!r} (valid: {', '.join(DEPENDENCY_TYPES)})"
            )
        if self.dependencies and dependency_type != self.dependency_type:
            raise ValueError(
                f"{self!r} already waits with {self.dependency_type!r}; one task's dependencies share "
                f"one dependency_type, so it cannot also wait with {dependency_type!r}. Chain with the same "
                "dependency_type, or make the dependency explicit in a separate task."
            )
        ids = [job_id for job in jobs for job_id in _dependency_ids(job)]
        variant = self.__copy__()
        variant.dependencies, variant.dependency_type = (*self.dependencies, *ids), dependency_type
        variant.dependency_clusters = {
            **self.dependency_clusters,
            **{
                job_id: slurm_cluster_of(job)
                for job in jobs
                if not isinstance(job, str)
                for job_id in _dependency_ids(job)
            },
        }
        return variant

    def options(self, **resources: Any) -> Task:
        """This task with some resources changed, e.g. ``big = train.options(mem="64G")``."""
        from slurm.resources import Resources

        variant = self.__copy__()
        variant.resources = Resources.from_dict(resources).over(self.resources)
        _check_ranks(variant.resources, self.is_workflow)
        return variant

    def __copy__(self) -> Task:
        # Without this, copy.copy would go through __reduce__ (made for the trip to the node), which
        # re-imports the function and loses resources, dependencies and name.
        variant = object.__new__(Task)
        variant.__dict__.update(self.__dict__)
        return variant

    def __reduce__(self) -> tuple[Any, ...]:
        # By reference when importable, so nodes with another Python version can load it; the resources
        # and dependencies are not needed on the node (they are in the job script already).
        # A workflow also carries how its job builds its Cluster (``_make_cluster``, see ``_for_cluster``).
        if _importable(self.fn):
            return _import_task, (
                self.fn.__module__,
                self.fn.__qualname__,
                self.is_workflow,
                self._make_cluster,
            )
        return Task, (self.fn, None), {"is_workflow": self.is_workflow, "_make_cluster": self._make_cluster}

    def _by_name(self) -> tuple[str, str] | None:
        """(module, qualified name) of the function when the node can import it and call it as it is: not
        a workflow (which needs its Cluster) and importable (see ``__reduce__``). A payload of such a task
        with plain calls goes without pickle (``slurm.node.plain``)."""
        if self.is_workflow or self._make_cluster is not None or not _importable(self.fn):
            return None
        return self.fn.__module__, self.fn.__qualname__

    def _for_cluster(self, make_cluster: Callable[[Mapping[str, Any]], Any]) -> Task:
        """This workflow, carrying to its job how to build the Cluster it submits children to:
        ``make_cluster(child config)``, given by the submitting Cluster (its ``_from_child_config``), so
        that this module never imports ``slurm.cluster``."""
        variant = self.__copy__()
        variant._make_cluster = make_cluster
        return variant


def _workflow_cluster(job_dir: str, make_cluster: Callable[[Mapping[str, Any]], Any] | None) -> Any:
    # Imported here, not at the top: plain tasks (most jobs) start faster without the submitting side.
    import json
    import os

    from slurm.inherited_env import scrub_slurm_env
    from slurm.node.layout import child_config_path

    # Children must be new jobs, not steps bound to this allocation: drop this job's SLURM_* variables.
    environ = scrub_slurm_env(os.environ)
    os.environ.clear()
    os.environ.update(environ)
    with open(child_config_path(job_dir)) as handle:
        config = json.load(handle)
    if make_cluster is None:  # not sent through Cluster.submit: nothing says how to build its Cluster
        raise RuntimeError(
            f"this workflow's job ({job_dir}) was not sent by Cluster.submit, so it has no way to build the "
            "Cluster it submits children to. Fix: submit the workflow with Cluster.submit or Cluster.map"
        )
    return make_cluster(config)


def _wrap(task: Task, fn: Callable[..., Any]) -> None:
    """What ``functools.update_wrapper`` does, without importing functools (and collections with it):
    a module of ``@task`` functions imports this one, on the nodes too, and needs nothing else of it."""
    # From Python 3.14 annotations are evaluated when first read: copy the function that evaluates them
    # (``__annotate__``), as functools does there, so a name defined later does not fail the decorator.
    annotations = "__annotate__" if hasattr(fn, "__annotate__") else "__annotations__"
    for name in ("__module__", "__name__", "__qualname__", "__doc__", annotations, "__type_params__"):
        try:
            value = getattr(fn, name)
        except AttributeError:
            continue
        setattr(task, name, value)
    task.__dict__.update(getattr(fn, "__dict__", {}))
    task.__wrapped__ = fn


def slurm_cluster_of(job: Any) -> str | None:
    """The Slurm cluster a Job (or each job of a MappedJobs) was submitted to: its backend's
    ``slurm_cluster``, None for the login node's own (and for backends without clusters)."""
    first = job.jobs[0] if hasattr(job, "jobs") and job.jobs else job
    return getattr(first.cluster.backend, "slurm_cluster", None)


def _dependency_ids(job: Any) -> list[str]:
    """The job ids ``.after(job)`` waits for; a string must be a job id as sbatch prints it."""
    if isinstance(job, str):
        from slurm.backends.base import JOB_ID

        if not JOB_ID.fullmatch(job) or not job.isascii():
            raise ValueError(
                f".after({job!r}): not a job id; pass a Job, a MappedJobs or an id as sbatch prints it "
                "(e.g. '1234', or '1234_5' for one array task)"
            )
        return [job]
    ids = getattr(job, "_dependency_ids", None)
    if ids is None:
        raise TypeError(
            f".after() takes Jobs, MappedJobs or job id strings, got {type(job).__name__} {job!r}"
        )
    return list(ids)


def _importable(fn: Callable[..., Any]) -> bool:
    """True when ``module.qualname`` leads back to ``fn`` (or to a Task wrapping it)."""
    module = sys.modules.get(fn.__module__)
    if module is None or fn.__module__ == "__main__":
        return False
    obj: Any = module
    for part in fn.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is fn or (isinstance(obj, Task) and obj.fn is fn)


def _import_task(
    module: str,
    qualname: str,
    is_workflow: bool,
    make_cluster: Callable[[Mapping[str, Any]], Any] | None = None,
) -> Task:
    import importlib

    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    task = Task(obj.fn if isinstance(obj, Task) else obj, workflow=is_workflow)
    task._make_cluster = make_cluster
    return task


def _check_ranks(resources: Resources, workflow: bool) -> None:
    if workflow and resources.world_size is not None:
        raise ResourceError(
            "a @workflow runs once and submits children; nodes/ntasks_per_node would run it once per "
            "rank: put them on the @task it submits instead"
        )


class _Decorator:
    """``@task`` / ``@workflow``, bare or called with ``TaskOptions`` (typed both ways for type checkers)."""

    def __init__(self, *, workflow: bool, doc: str) -> None:
        self.workflow, self.__doc__ = workflow, doc

    if TYPE_CHECKING:

        @overload
        def __call__(self, fn: Callable[..., Any], /) -> Task: ...

        @overload
        def __call__(
            self, fn: None = None, /, **options: Unpack[TaskOptions]
        ) -> Callable[[Callable[..., Any]], Task]: ...

    def __call__(
        self, fn: Callable[..., Any] | None = None, /, **options: Unpack[TaskOptions]
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        name = options.pop("name", None)
        if options.get("sbatch", {}) is None:
            del options["sbatch"]
        resources: Resources | None = None
        unchecked: dict[str, Any] = {}
        if node.in_job_runner:  # the module is imported to call the function: check the options only if used
            unchecked = dict(options)
        else:  # validated here, at definition time, so a typo fails on import, not at submit
            from slurm.resources import Resources

            resources = Resources.from_dict(options)
            _check_ranks(resources, self.workflow)

        def wrap(function: Callable[..., Any]) -> Task:
            defined = Task(function, resources, name=name, workflow=self.workflow)
            defined._unchecked_options = unchecked
            return defined

        return wrap if fn is None else wrap(fn)


task = _Decorator(
    workflow=False,
    doc="""Decorate a function to run as a Slurm job: ``@task`` or ``@task(time="00:10:00", cpus=2,
mem="4G", gpus=1, partition="debug", account=None, requeue=False, sbatch={"constraint": "fast"},
name="train")``. ``requeue=False`` renders ``--no-requeue``: the job fails instead of running again after a
node failure or preemption. ``checkpoint=True`` (or ``Checkpointing(signal_before=60, max_requeues=3)``):
the task saves its state with ``slurm.node.checkpoint.save`` and is requeued before its time limit.
``nodes=2, ntasks_per_node=2``: the function runs once per rank under srun (4 ranks); each rank gets its
place from ``slurm.rank_context()``; ``result()`` is rank 0's value, ``results_by_rank()`` every rank's.""",
)

workflow = _Decorator(
    workflow=True,
    doc="""Like ``@task``, for a function whose first parameter ``cluster`` receives a Cluster
that submits child jobs from inside the job's allocation (with the same packaging).""",
)
