"""The errors code on the node raises: ``slurm.errors`` re-exports them with the rest, so callers catch one
class wherever it was raised. Here, not in ``slurm.errors``, because the node-side package imports nothing
outside itself (see docs/architecture.md)."""

from __future__ import annotations


class SlurmSDKError(Exception):
    """Base class of all SDK errors."""


class ResourceError(SlurmSDKError, ValueError):
    """A task's resources (time, cpus, mem, ...) cannot be turned into valid ``#SBATCH`` lines."""


class SerializationError(SlurmSDKError):
    """A function, argument or result cannot be pickled, or cannot travel to the node's Python."""


class RankTerminated(BaseException):
    """Raised in a rank of a multi-rank task on SIGTERM (srun stopping it because another rank failed, a
    cancel or a requeue), so it leaves an outcome that says it was a victim, not the cause. Not in
    ``slurm.node.gather``: the runner's signal handler must not import anything."""
