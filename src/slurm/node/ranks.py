"""Multi-task and multi-node tasks: what each rank knows about itself and its peers.

A task with ``nodes`` or ``ntasks_per_node`` runs once per rank under ``srun``. Each rank calls
``rank_context()`` for its place in the job, and ``set_torch_env()`` to hand the same facts to
``torch.distributed`` (``init_process_group("nccl")`` then reads them from the environment):

    from slurm import rank_context, set_torch_env, task

    @task(nodes=2, ntasks_per_node=2)
    def train():
        ctx = rank_context()         # rank, local_rank, world_size, nodes, master_addr, master_port, ...
        set_torch_env()              # MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE
        ...

Everything is read from the variables Slurm gives every task of a step (``SLURM_PROCID``, ``SLURM_LOCALID``,
``SLURM_NTASKS``, ``SLURM_NODEID``, ``SLURM_STEP_NODELIST``, ``SLURM_STEP_TASKS_PER_NODE``), so the ranks
agree without talking to each other. Node-side code: standard library only.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from slurm.node.name import node_name

#: ``master_port`` is ``MASTER_PORT_BASE + job id % MASTER_PORT_SPAN``: the same on every rank, different
#: for jobs less than MASTER_PORT_SPAN ids apart (those that may share a node), and below Linux's ephemeral range (32768-60999), so no outgoing
#: connection on the master node holds it by chance.
MASTER_PORT_BASE, MASTER_PORT_SPAN = 20000, 10000
#: Set in a job's environment to choose the address or port instead (the local backend's emulated srun
#: does, so that concurrent local jobs never share a port).
MASTER_ADDR_ENV, MASTER_PORT_ENV = "SLURM_SDK_MASTER_ADDR", "SLURM_SDK_MASTER_PORT"
#: torch.distributed's own default port, used outside a job (a task called directly).
_LONE_PORT = 29500

_BRACKETS = re.compile(r"\[([^\]]*)\]")
_REPEAT = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


@dataclass(frozen=True)
class RankContext:
    """One rank's place in its job. ``nodes`` are the step's node names in rank order (rank 0 runs on
    ``nodes[0]``, which is ``master_addr`` unless ``SLURM_SDK_MASTER_ADDR`` says otherwise)."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    node_rank: int
    nodes: tuple[str, ...]
    master_addr: str
    master_port: int

    @property
    def node(self) -> str:
        """The name of the node this rank runs on."""
        return self.nodes[self.node_rank]

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    def torch_env(self) -> dict[str, str]:
        """The variables ``torch.distributed``'s ``env://`` initialisation reads."""
        return {
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "GROUP_RANK": str(self.node_rank),
        }


def rank_context(environ: Mapping[str, str] | None = None) -> RankContext:
    """This process's rank context, from the Slurm step's variables. Outside a multi-rank job (a task
    called directly, or a job without ``nodes``/``ntasks_per_node``) it is a world of one on this host."""
    env = os.environ if environ is None else environ
    if "SLURM_PROCID" not in env:
        return _lone_context(env)
    nodes = tuple(expand_hostlist(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "")))
    node_rank = int(env.get("SLURM_NODEID", "0"))
    if not nodes:
        nodes = (node_name(env),)
    per_node = expand_tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE", ""))
    world_size = int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or "1")
    return RankContext(
        rank=int(env["SLURM_PROCID"]),
        local_rank=int(env.get("SLURM_LOCALID", "0")),
        world_size=world_size,
        local_world_size=per_node[node_rank] if node_rank < len(per_node) else world_size,
        node_rank=node_rank,
        nodes=nodes,
        master_addr=env.get(MASTER_ADDR_ENV) or nodes[0],
        master_port=_master_port(env),
    )


def set_torch_env(context: RankContext | None = None) -> RankContext:
    """Put ``context``'s (default: this rank's) ``torch.distributed`` variables into ``os.environ``,
    without importing torch; returns the context."""
    context = context or rank_context()
    os.environ.update(context.torch_env())
    return context


def _lone_context(env: Mapping[str, str]) -> RankContext:
    host = node_name(env)
    port = int(env[MASTER_PORT_ENV]) if env.get(MASTER_PORT_ENV) else _LONE_PORT
    return RankContext(0, 0, 1, 1, 0, (host,), env.get(MASTER_ADDR_ENV) or "127.0.0.1", port)


def _master_port(env: Mapping[str, str]) -> int:
    if env.get(MASTER_PORT_ENV):
        return int(env[MASTER_PORT_ENV])
    # SLURM_JOB_ID is each array task's own id, so array tasks sharing a node get different ports too.
    return MASTER_PORT_BASE + int(env.get("SLURM_JOB_ID", "0")) % MASTER_PORT_SPAN


def expand_hostlist(hostlist: str) -> list[str]:
    """Slurm's compact node list as names: ``"c[1-3,7],gpu[01-02]"`` -> c1 c2 c3 c7 gpu01 gpu02
    (zero padding kept; several bracket groups in one name multiply out)."""
    names: list[str] = []
    for item in _split_top_level(hostlist.strip()):
        parts = _BRACKETS.split(item)  # text, range, text, range, ..., text
        choices = [[text] if i % 2 == 0 else _expand_ranges(text, item) for i, text in enumerate(parts)]
        names += ["".join(combo) for combo in itertools.product(*choices)]
    return names


def _split_top_level(hostlist: str) -> list[str]:
    """Split on the commas outside brackets."""
    items, depth, start = [], 0, 0
    for position, char in enumerate(hostlist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(hostlist[start:position])
            start = position + 1
    items.append(hostlist[start:])
    return [item for item in items if item]


def _expand_ranges(ranges: str, item: str) -> list[str]:
    values: list[str] = []
    for part in ranges.split(","):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"malformed node list {item!r}: {part!r} is not a number or a range a-b")
        width = len(first)
        values += [str(number).zfill(width) for number in range(int(first), int(last or first) + 1)]
    return values


def expand_tasks_per_node(spec: str) -> list[int]:
    """``SLURM_STEP_TASKS_PER_NODE`` as one count per node: ``"2(x3),1"`` -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in filter(None, spec.split(",")):
        match = _REPEAT.match(part.strip())
        if not match:
            raise ValueError(f"malformed tasks-per-node {spec!r}: expected e.g. '2(x3),1'")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts
