"""What ``slurm-sdk cluster status`` reports: is the cluster reachable, its partitions, this user's queue."""

from __future__ import annotations

import shlex
from collections import Counter
from typing import TYPE_CHECKING, Any

from slurm.errors import BackendError

if TYPE_CHECKING:
    from slurm.cluster import Cluster

_SINFO = "sinfo -h -o '%P|%a|%D|%T|%N'"
_MY_QUEUE = "squeue -h -u \"$(id -un)\" -o '%T'"


def cluster_status(cluster: Cluster) -> dict[str, Any]:
    """Backend, where it runs, the job root, and: partitions (name, availability, node count, node state,
    nodes) plus this user's queued jobs per state on Slurm; jobs per state in the state dir locally."""
    backend = cluster.backend
    status: dict[str, Any] = {"backend": backend.type_name, "job_root": cluster.resolve_job_root()}
    address = getattr(backend.transport, "address", None)
    if address:
        status["address"] = address
    if backend.type_name == "local":
        ids = backend.job_ids()  # type: ignore[attr-defined]
        status["state_dir"] = backend.state_dir  # type: ignore[attr-defined]
        status["jobs"] = dict(Counter(state.value for state in backend.states(ids).values()))
        return status
    slurm_cluster = getattr(backend, "slurm_cluster", None)
    if slurm_cluster:
        status["slurm_cluster"] = slurm_cluster
    sinfo, my_queue = (_on(slurm_cluster, command) for command in (_SINFO, _MY_QUEUE))
    status["partitions"] = [_partition(line) for line in _run(cluster, sinfo).splitlines() if line.strip()]
    status["my_queue"] = dict(
        Counter(line.strip() for line in _run(cluster, my_queue).splitlines() if line.strip())
    )
    return status


def _on(slurm_cluster: str | None, command: str) -> str:
    """``command`` (sinfo or squeue) asking the backend's named cluster, when it has one."""
    if not slurm_cluster:
        return command
    name, _, rest = command.partition(" ")
    return f"{name} {shlex.quote('--clusters=' + slurm_cluster)} {rest}"


def _run(cluster: Cluster, command: str) -> str:
    result = cluster.backend.transport.run(command, check=False)
    if result.returncode != 0:
        raise BackendError(
            f"`{command}` failed (exit code {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-500:]}; is slurmctld up and reachable "
            "from the submitting host?"
        )
    return result.stdout


def _partition(line: str) -> dict[str, Any]:
    name, available, nodes, state, nodelist = (line.split("|") + [""] * 5)[:5]
    return {
        "name": name,
        "available": available,
        "nodes": int(nodes) if nodes.isdigit() else nodes,
        "state": state,
        "nodelist": nodelist,
    }


def format_status(status: dict[str, Any]) -> str:
    """Plain text for people."""
    lines = [
        f"backend:   {status['backend']}" + (f" ({status['address']})" if "address" in status else ""),
        *([f"cluster:   {status['slurm_cluster']}"] if "slurm_cluster" in status else []),
        f"job root:  {status['job_root']}",
    ]
    if "state_dir" in status:
        lines.append(f"state dir: {status['state_dir']}")
        lines.append("jobs:      " + (_counts(status["jobs"]) or "none"))
        return "\n".join(lines)
    lines.append("partitions:")
    for part in status["partitions"]:
        lines.append(
            f"  {part['name']:<12} {part['available']:<6} {part['nodes']!s:>3} {part['state']:<10} "
            f"{part['nodelist']}"
        )
    lines.append("your queue: " + (_counts(status["my_queue"]) or "empty"))
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
