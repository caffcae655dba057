"""Dev-cluster harness: start, reuse and stop this checkout's Docker Compose Slurm cluster.

``slurm-dev-cluster --help`` for the CLI; ``slurm_dev_cluster.pytest_plugin`` for the pytest fixtures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slurm_dev_cluster.stack import Connection, Stack, StackError

__all__ = ["Connection", "Stack", "StackError"]


def __getattr__(name: str) -> Any:
    # On first use: importing any module of the kit (the pytest plugin, in every pytest process of an
    # environment that has the kit) runs this file, and the stack's modules bring in python_on_whales and
    # paramiko (~0.4 s) that a session starting no stack never needs.
    if name in __all__:
        from slurm_dev_cluster import stack

        return getattr(stack, name)
    raise AttributeError(f"module 'slurm_dev_cluster' has no attribute {name!r}")
