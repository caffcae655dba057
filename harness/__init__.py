"""Dev-cluster harness: start, reuse and stop this checkout's Docker Compose Slurm cluster.

``python -m harness --help`` for the CLI; ``harness.pytest_plugin`` for the pytest fixtures.
"""

from harness.stack import Connection, Stack, StackError

__all__ = ["Connection", "Stack", "StackError"]
