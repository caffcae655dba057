"""Run Python functions as Slurm jobs.

from slurm import Cluster, task

@task(time="00:05:00", cpus=2, mem="1G")
def add(a, b):
    return a + b

cluster = Cluster.from_env()          # or Cluster(backend=..., packaging={"type": "none"})
job = cluster.submit(add, 1, 2)
assert job.result(timeout=600) == 3
"""

from __future__ import annotations

TYPE_CHECKING = False  # not from typing: a job's runner imports `slurm` and typing costs it ~5 ms
if TYPE_CHECKING:
    from typing import Any

# Public names are imported on first use: a job's runner imports `slurm` on every node for every task,
# and should not pay for the submitting side (Cluster, config, YAML, backends).
_EXPORTS = {
    "JobState": "slurm.backends.base",
    "Callback": "slurm.callbacks",
    "Checkpointing": "slurm.node.checkpoint",
    "Cluster": "slurm.cluster",
    "MappedJobs": "slurm.job",
    "Job": "slurm.job",
    "as_completed": "slurm.waiting",
    "wait_all": "slurm.waiting",
    "as_completed_async": "slurm.awaiting",
    "wait_async": "slurm.awaiting",
    "Resources": "slurm.resources",
    "RankContext": "slurm.node.ranks",
    "rank_context": "slurm.node.ranks",
    "set_torch_env": "slurm.node.ranks",
    "ParentResultError": "slurm.dataflow",
    **dict.fromkeys(
        [
            "BackendError",
            "CommandError",
            "ConfigError",
            "DependencyError",
            "JobFailedError",
            "JobTimeoutError",
            "ResourceError",
            "SerializationError",
            "SlurmSDKError",
            "SSHError",
            "SubmitError",
            "SubmitLimitError",
            "UnknownJobError",
        ],
        "slurm.errors",
    ),
}

if TYPE_CHECKING:
    from slurm.awaiting import as_completed_async, wait_async
    from slurm.backends.base import JobState
    from slurm.callbacks import Callback
    from slurm.cluster import Cluster
    from slurm.dataflow import ParentResultError
    from slurm.errors import (
        BackendError,
        CommandError,
        ConfigError,
        DependencyError,
        JobFailedError,
        JobTimeoutError,
        ResourceError,
        SerializationError,
        SlurmSDKError,
        SSHError,
        SubmitError,
        SubmitLimitError,
        UnknownJobError,
    )
    from slurm.job import Job, MappedJobs
    from slurm.node.checkpoint import Checkpointing
    from slurm.node.ranks import RankContext, rank_context, set_torch_env
    from slurm.resources import Resources
    from slurm.waiting import as_completed, wait_all

# Eager: the submodule `slurm.task` would otherwise shadow the decorator `slurm.task` (the errors are
# lazy like the rest: a job's runner needs none of them but the node side's own, slurm.node.errors).
from slurm.task import Task, task, workflow  # noqa: E402

#: Public modules loaded on first use: ``from slurm import checkpoint`` in a task (it lives in the node-side
#: package), and ``slurm.errors`` after a bare ``import slurm``.
_MODULES = {"checkpoint": "slurm.node.checkpoint", "errors": "slurm.errors"}


def __getattr__(name: str) -> Any:
    import importlib  # here, not above: the runner imports this package for every task

    if name in _MODULES:
        module = importlib.import_module(_MODULES[name])
        globals()[name] = module
        return module
    if name not in _EXPORTS:
        raise AttributeError(f"module 'slurm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_MODULES])


__all__ = [
    "BackendError",
    "Callback",
    "Checkpointing",
    "Cluster",
    "CommandError",
    "ConfigError",
    "DependencyError",
    "Job",
    "JobFailedError",
    "JobState",
    "JobTimeoutError",
    "MappedJobs",
    "ParentResultError",
    "RankContext",
    "ResourceError",
    "Resources",
    "SSHError",
    "SerializationError",
    "SlurmSDKError",
    "SubmitError",
    "SubmitLimitError",
    "Task",
    "UnknownJobError",
    "as_completed",
    "as_completed_async",
    "rank_context",
    "set_torch_env",
    "task",
    "wait_all",
    "wait_async",
    "workflow",
]
