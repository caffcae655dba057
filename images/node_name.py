#!/usr/bin/env python3
"""Print this compute container's Slurm node name and the address slurmctld reaches it by: `c2 c2`.

Each compute node is a compose service of its own whose hostname and DNS name are both the node name
(compose.yaml `c1`..`c16`), so the node registers as its hostname and is reached by it, as at a site.

Outside compose (a CI services block, where a container gets no command: docs/ci.md) the node may be
told: $SLURM_NODE_NAME (e.g. c1), reached by $SLURM_NODE_ADDRESS, default the node name itself (the
service id, which the runner makes a network alias of the container).
"""

import os
import re
import socket

NODE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def node_identity() -> tuple[str, str]:
    told = os.environ.get("SLURM_NODE_NAME", "")
    if told:
        if not NODE_NAME.fullmatch(told):
            raise SystemExit(
                f"error: SLURM_NODE_NAME={told!r} is not a Slurm node name; fix: e.g. SLURM_NODE_NAME=c1"
            )
        return told, os.environ.get("SLURM_NODE_ADDRESS", "") or told
    hostname = socket.gethostname().split(".")[0]
    return hostname, hostname


if __name__ == "__main__":
    print(*node_identity())
