"""The node a job runs on, as Slurm names it: the one name every job-side report uses.

A node's host name need not be its Slurm name (a site may name hosts ``gpu07.cluster.example`` and nodes
``gpu07``; the dev cluster names both ``c2``), so a job that says where it ran asks Slurm first. Standard library
only (``os``): the runner imports this for every array task, and ``collections.abc`` would cost it
``collections`` (~1 ms on a node) for a name only type checkers read.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def node_name(environ: Mapping[str, str] | None = None) -> str:
    """``$SLURMD_NODENAME`` (set by slurmd for every job and step), else the last part of
    ``$SLURM_TOPOLOGY_ADDR`` (``switch1.switch3.node7``: the switches down to the node), else the host
    name (outside a Slurm job)."""
    env = os.environ if environ is None else environ
    name = env.get("SLURMD_NODENAME", "").strip()
    if name:
        return name
    topology = env.get("SLURM_TOPOLOGY_ADDR", "").strip()
    if topology:
        return topology.rsplit(".", 1)[-1]
    return os.uname().nodename
