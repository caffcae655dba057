"""The dev cluster's shape: how many compute nodes, fake GPUs per node, which partitions.

One setting, three spellings: the environment variables compose.yaml reads (``SLURM_SDK_NODES``,
``SLURM_SDK_GPUS_PER_NODE``, ``SLURM_SDK_PARTITIONS``), what the harness wrote for its stack
(``slurm-dev-cluster up --nodes N --gpus-per-node G``, remembered until ``harness down``), and the
defaults below, which compose.yaml repeats. Compute node ``c<n>`` is compose service ``c<n>`` (hostname
and DNS name ``c<n>``, as at a site); the harness starts services c1..cN (compose.yaml has c1..c16).

``clusters``: 1, or 2 for a second Slurm cluster ``two`` on the same slurmdbd (controller
``slurmctld-two``, compute node ``d1``), from ``images/multicluster.compose.yaml`` layered over compose.yaml
(``slurm-dev-cluster up --clusters 2`` or ``SLURM_SDK_CLUSTERS=2``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

NODES_VAR = "SLURM_SDK_NODES"
GPUS_VAR = "SLURM_SDK_GPUS_PER_NODE"
PARTITIONS_VAR = "SLURM_SDK_PARTITIONS"
CLUSTERS_VAR = "SLURM_SDK_CLUSTERS"
MAX_NODES = 16  # compose.yaml's node services c1..c16
MAX_GPUS_PER_NODE = 8  # images/entrypoint.sh MAX_GPUS_PER_NODE
NODE_NAME = re.compile(r"^c([1-9][0-9]*)$")
PARTITION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
MULTICLUSTER_COMPOSE_FILE = "images/multicluster.compose.yaml"  # relative to the kit's root


@dataclass(frozen=True)
class FurtherCluster:
    """A Slurm cluster beside the stack's first (``dev``), registered with the same slurmdbd."""

    name: str
    controller: str  # its slurmctld's service and hostname
    node_names: tuple[str, ...]

    @property
    def services(self) -> tuple[str, ...]:
        return (self.controller, *self.node_names)


#: What ``clusters=2`` adds (images/multicluster.compose.yaml spells the same names).
SECOND_CLUSTER = FurtherCluster("two", "slurmctld-two", ("d1",))
MAX_CLUSTERS = 2


class TopologyError(ValueError):
    """A topology setting is invalid or contradicts another; the message names the fix."""


@dataclass(frozen=True)
class Topology:
    nodes: int = 2
    gpus_per_node: int = 2
    partitions: tuple[str, ...] = ("debug", "batch")
    clusters: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.clusters <= MAX_CLUSTERS:
            raise TopologyError(
                f"{self.clusters} clusters: the dev cluster takes 1, or {MAX_CLUSTERS} for a second cluster "
                f"on the same slurmdbd (fix: --clusters N or {CLUSTERS_VAR}=N with N in that range)"
            )
        if not 1 <= self.nodes <= MAX_NODES:
            raise TopologyError(
                f"{self.nodes} compute nodes: the dev cluster takes 1 to {MAX_NODES} "
                f"(fix: --nodes N or {NODES_VAR}=N with N in that range)"
            )
        if not 0 <= self.gpus_per_node <= MAX_GPUS_PER_NODE:
            raise TopologyError(
                f"{self.gpus_per_node} fake GPUs per node: the dev cluster takes 0 to {MAX_GPUS_PER_NODE} "
                f"(fix: --gpus-per-node G or {GPUS_VAR}=G with G in that range)"
            )
        bad = [p for p in self.partitions if not PARTITION_NAME.match(p)]
        if not self.partitions or bad or len(set(self.partitions)) != len(self.partitions):
            raise TopologyError(
                f"partitions {','.join(self.partitions)!r}: need distinct names of letters, digits, _ and - "
                f"(fix: {PARTITIONS_VAR}=debug,batch; the first is the default partition)"
            )

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(node_name(number) for number in range(1, self.nodes + 1))

    @property
    def further_clusters(self) -> tuple[FurtherCluster, ...]:
        """The clusters besides the first, each with its controller and nodes."""
        return (SECOND_CLUSTER,) if self.clusters == 2 else ()

    @property
    def compose_overlays(self) -> tuple[str, ...]:
        """Compose files (relative to the kit's root) this topology adds over compose.yaml."""
        return (MULTICLUSTER_COMPOSE_FILE,) if self.further_clusters else ()

    def compose_env(self) -> dict[str, str]:
        """The variables compose.yaml reads, for this topology."""
        return {
            NODES_VAR: str(self.nodes),
            GPUS_VAR: str(self.gpus_per_node),
            PARTITIONS_VAR: ",".join(self.partitions),
            CLUSTERS_VAR: str(self.clusters),
        }

    def to_record(self) -> dict[str, object]:
        return {
            "nodes": self.nodes,
            "gpus_per_node": self.gpus_per_node,
            "partitions": list(self.partitions),
            "clusters": self.clusters,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> Topology:
        return cls(
            int(record["nodes"]),  # type: ignore[call-overload]
            int(record["gpus_per_node"]),  # type: ignore[call-overload]
            tuple(record["partitions"]),  # type: ignore[arg-type]
            int(record.get("clusters", 1)),  # type: ignore[call-overload]  # absent: a stack from before
        )

    @classmethod
    def resolve(
        cls,
        environ: Mapping[str, str],
        recorded: Mapping[str, object] | None = None,
        *,
        nodes: int | None = None,
        gpus_per_node: int | None = None,
        partitions: str | None = None,
        clusters: int | None = None,
    ) -> Topology:
        """Per field: an explicit value (a CLI flag), else the environment, else the stack's record, else
        the default. A flag that contradicts the environment is refused: compose would take the
        environment's value (the shell wins over env files), so the flag would be silently lost."""
        base = cls.from_record(recorded) if recorded else cls()
        return cls(
            _pick(nodes, environ, NODES_VAR, base.nodes, "--nodes"),
            _pick(gpus_per_node, environ, GPUS_VAR, base.gpus_per_node, "--gpus-per-node"),
            _split(
                _pick_text(partitions, environ, PARTITIONS_VAR, ",".join(base.partitions), "--partitions")
            ),
            _pick(clusters, environ, CLUSTERS_VAR, base.clusters, "--clusters"),
        )


def node_name(number: int) -> str:
    return f"c{number}"


def node_number(name: str) -> int | None:
    """1 for ``c1``; None for a name that is not a compute node's."""
    match = NODE_NAME.match(name)
    return int(match.group(1)) if match else None


def _pick(flag: int | None, environ: Mapping[str, str], var: str, fallback: int, flag_name: str) -> int:
    text = _pick_text(None if flag is None else str(flag), environ, var, str(fallback), flag_name)
    try:
        return int(text)
    except ValueError:
        raise TopologyError(f"{var}={text!r} is not a whole number (fix: e.g. {var}=2)") from None


def _pick_text(flag: str | None, environ: Mapping[str, str], var: str, fallback: str, flag_name: str) -> str:
    from_env = environ.get(var, "").strip()
    if flag is not None and from_env and from_env != flag:
        raise TopologyError(
            f"{flag_name} {flag} contradicts {var}={from_env} in the environment, which compose would use "
            f"(fix: drop one of them, or `unset {var}`)"
        )
    return flag if flag is not None else (from_env or fallback)


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())
