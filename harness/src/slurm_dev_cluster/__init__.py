"""Dev-cluster harness: start, reuse and stop this checkout's Docker Compose Slurm cluster.

``slurm-dev-cluster --help`` for the CLI; ``slurm_dev_cluster.pytest_plugin`` for the pytest fixtures.
"""

from slurm_dev_cluster.stack import Connection, Stack, StackError

__all__ = ["Connection", "Stack", "StackError"]
