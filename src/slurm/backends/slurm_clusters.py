"""Several Slurm clusters on one slurmdbd: the ``--clusters`` (``-M``) option every command of a
``SlurmBackend`` with ``slurm_cluster`` gets, ``--clusters=all`` in a federation, and the header lines
``-M`` adds to squeue's output."""

from __future__ import annotations

import re
from collections.abc import Sequence

from slurm.errors import ConfigError

#: A Slurm cluster's name as slurmdbd keeps it; one name, since ``-M a,b`` would let Slurm pick the cluster.
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
#: What squeue (and sinfo) print before a cluster's lines when given ``-M``, even with ``--noheader``.
_CLUSTER_HEADER = re.compile(r"^CLUSTER: ")


def without_cluster_headers(stdout: str) -> str:
    """squeue's output without the ``CLUSTER: <name>`` line ``-M`` adds."""
    return "".join(line for line in stdout.splitlines(keepends=True) if not _CLUSTER_HEADER.match(line))


def checked_cluster(slurm_cluster: str | None) -> str | None:
    if slurm_cluster is None or (isinstance(slurm_cluster, str) and _CLUSTER_NAME.fullmatch(slurm_cluster)):
        return slurm_cluster
    raise ConfigError(
        f"slurm_cluster={slurm_cluster!r} is not one Slurm cluster name: give the name `sacctmgr show "
        "clusters` lists (e.g. slurm_cluster='two'), or leave it out for the login node's own cluster",
        key="slurm_cluster",
    )


def targeted(args: Sequence[str], slurm_cluster: str | None, *, federation: bool) -> list[str]:
    """A Slurm command with ``--clusters=<slurm_cluster>`` after its name, when one is set; in a
    federation sacct and squeue ask every cluster, since a job may run on any sibling."""
    if federation and args[0] in ("sacct", "squeue"):
        return [args[0], "--clusters=all", *args[1:]]
    if slurm_cluster is None:
        return list(args)
    return [args[0], f"--clusters={slurm_cluster}", *args[1:]]
