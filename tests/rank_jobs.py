"""Multi-rank tasks for the rank tests (fast tier on the local backend, integration tier across c1 and c2).

No pytest here: the nodes import this module by reference. The ranks really talk: every rank connects to
the master address and port from its rank context and sends who it is; rank 0 listens there, collects one
message per other rank and sends the whole roll back to each, so every rank returns what all saw.
"""

from __future__ import annotations

import json
import os
import socket
import time

from slurm import rank_context, set_torch_env, task

_CONNECT_FOR = (
    60.0  # s a rank keeps trying while rank 0 is not listening yet (ranks start at different times)
)


def _me() -> dict:
    context = rank_context()
    return {
        "rank": context.rank,
        "local_rank": context.local_rank,
        "world_size": context.world_size,
        "local_world_size": context.local_world_size,
        "node_rank": context.node_rank,
        "node": context.node,
        "nodes": list(context.nodes),
        "hostname": socket.gethostname(),  # the node name: dev-cluster nodes are named as at a site
        "slurmd_node": os.environ.get("SLURMD_NODENAME"),
        "address": socket.gethostbyname(socket.gethostname()),
        "master": [context.master_addr, context.master_port],
        "pid": os.getpid(),
    }


def _send(conn: socket.socket, message: object) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _receive(conn: socket.socket) -> object:
    with conn.makefile("rb") as stream:
        return json.loads(stream.readline())


def _serve(me: dict, world_size: int, address: tuple[str, int]) -> list[dict]:
    with socket.create_server(address) as server:
        server.settimeout(_CONNECT_FOR)
        peers = []
        for _ in range(world_size - 1):
            conn, _ = server.accept()
            peers.append((conn, _receive(conn)))
        roll = sorted([me, *(message for _, message in peers)], key=lambda entry: entry["rank"])
        for conn, _ in peers:
            with conn:
                _send(conn, roll)
        return roll


def _join(me: dict, address: tuple[str, int]) -> list[dict]:
    deadline = time.monotonic() + _CONNECT_FOR
    while True:
        try:
            conn = socket.create_connection(address, timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # rank 0 listens within moments of the others starting
    with conn:
        _send(conn, me)
        return _receive(conn)


def rendezvous_roll() -> list[dict]:
    """Every rank's facts, as rank 0 collected them over TCP at the master address and port."""
    me, context = _me(), rank_context()
    if context.world_size == 1:
        return [me]
    if context.rank == 0:
        # Listen on every interface: the master address is rank 0's node name, which peers resolve.
        return _serve(me, context.world_size, ("", context.master_port))
    return _join(me, (context.master_addr, context.master_port))


@task(time="00:05:00", nodes=2, ntasks_per_node=2)
def rendezvous(tag: str) -> dict:
    """The roll every rank received, with this rank's own view and its torch variables."""
    roll = rendezvous_roll()
    set_torch_env()
    torch = {
        name: os.environ[name] for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    }
    return {"tag": tag, "me": _me(), "roll": roll, "torch": torch}


@task(time="00:05:00", nodes=2, ntasks_per_node=2)
def fail_on_rank(bad_rank: int, naps: float = 0.0) -> int:
    """Rank ``bad_rank`` raises; the others return their rank (after ``naps`` seconds)."""
    context = rank_context()
    if context.rank == bad_rank:
        raise ValueError(f"rank {context.rank} refuses")
    time.sleep(naps)
    return context.rank


@task(time="00:05:00", nodes=2, ntasks_per_node=2)
def rank_after_first_run(first_run_naps: float) -> int:
    """Each rank returns its rank: on the job's first run only after ``first_run_naps`` seconds (long enough
    for a test to preempt it there), at once when the job runs again (SLURM_RESTART_COUNT set)."""
    if not int(os.environ.get("SLURM_RESTART_COUNT") or 0):
        time.sleep(first_run_naps)
    return rank_context().rank


@task(time="00:05:00", nodes=1, ntasks_per_node=2)
def exit_on_rank(bad_rank: int, settle: float = 3.0, others_running: str | None = None) -> int:
    """Rank ``bad_rank`` is killed outright (no result, no exception): os._exit, after ``settle`` seconds,
    or, given ``others_running`` (a path every rank can see), as soon as another rank has created that file
    from its task (its SIGTERM handler is in place by then)."""
    context = rank_context()
    if context.rank == bad_rank:
        if others_running is None:
            time.sleep(settle)  # the other rank is running its task by now, its SIGTERM handler in place
        else:
            while not os.path.exists(others_running):
                time.sleep(0.01)
        os._exit(3)
    if others_running is not None:
        open(others_running, "a").close()
    time.sleep(30)  # killed by srun's --kill-on-bad-exit long before this ends
    return context.rank


@task(time="00:05:00", ntasks_per_node=2)
def item_and_rank(item: int) -> tuple[int, int, int]:
    """For a map of multi-rank tasks: the item, this rank, and the array task it belongs to."""
    return item, rank_context().rank, int(os.environ.get("SLURM_ARRAY_TASK_ID", "-1"))
