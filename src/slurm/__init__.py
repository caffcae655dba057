"""Run Python functions as Slurm jobs.

    from slurm import Cluster, task

    @task(time="00:05:00", cpus=2, mem="1G")
    def add(a, b):
        return a + b

    cluster = Cluster.from_env()          # or Cluster(backend=..., packaging={"type": "none"})
    job = cluster.submit(add, 1, 2)
    assert job.result(timeout=600) == 3
"""

from slurm.backends.base import JobState
from slurm.callbacks import Callback
from slurm.cluster import Cluster
from slurm.errors import (BackendError, CommandError, ConfigError, JobFailedError, JobTimeoutError, ResourceError,
                          SerializationError, SlurmSDKError, SSHError, SubmitError)
from slurm.job import ArrayJob, Job
from slurm.resources import Resources
from slurm.task import Task, task, workflow

__all__ = [
    "ArrayJob", "BackendError", "Callback", "Cluster", "CommandError", "ConfigError", "Job", "JobFailedError",
    "JobState", "JobTimeoutError", "ResourceError", "Resources", "SSHError", "SerializationError", "SlurmSDKError",
    "SubmitError", "Task", "task", "workflow",
]
