"""Runs ON THE LOGIN NODE as user sdk: a 2-node submitit job whose ranks meet as torch.distributed's
env:// rendezvous would, by the node NAME submitit gives as master_addr, over a plain TCP socket (no torch
needed). Started by tests/integration/test_submitit_site.py.

    PYTHONPATH=<submitit site> python3 submitit_rendezvous.py FOLDER

Prints one JSON object: the list of what each rank saw, or {"error": ...}.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any

import submitit

CONNECT_SECONDS = 120  # rank 1 may start before rank 0 listens; past this, the rendezvous failed


def meet() -> dict[str, Any]:
    """One rank: rank 0 listens on master_port, rank 1 connects to (master_addr, master_port); they trade
    node names."""
    env = submitit.helpers.TorchDistributedEnvironment()
    seen: dict[str, Any] = {
        "rank": env.rank,
        "world_size": env.world_size,
        "master_addr": env.master_addr,
        "master_port": env.master_port,
        "node": os.environ["SLURMD_NODENAME"],
        "hostname": socket.gethostname(),
        "master_resolves_to": socket.gethostbyname(env.master_addr),
    }
    me = seen["node"].encode()
    if env.rank == 0:
        with socket.create_server(("", env.master_port)) as server:
            server.settimeout(CONNECT_SECONDS)
            peer, _ = server.accept()
            with peer:
                seen["peer"] = peer.recv(64).decode()
                peer.sendall(me)
    else:
        deadline = time.monotonic() + CONNECT_SECONDS
        while True:
            try:
                connection = socket.create_connection((env.master_addr, env.master_port), timeout=10)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        with connection:
            connection.sendall(me)
            seen["peer"] = connection.recv(64).decode()
    return seen


def main() -> None:
    executor = submitit.AutoExecutor(folder=f"{sys.argv[1]}/%j", cluster="slurm")
    executor.update_parameters(nodes=2, tasks_per_node=1, timeout_min=5)
    job = executor.submit(meet)
    try:
        print(json.dumps({"ranks": job.results()}))
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {str(exc)[-1500:]}"}))


if __name__ == "__main__":
    main()
