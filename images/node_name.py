#!/usr/bin/env python3
"""Print this compute container's Slurm node name and the DNS name that reaches it: `c2 proj-compute-2`.

Compute nodes are replicas of one compose service (`compute`, scaled by SLURM_SDK_NODES or `--scale`),
so no container is told its node name. Compose numbers replicas (`<project>-compute-<n>`) and Docker's
DNS answers a reverse (PTR) query for a container's address with that name, so replica n becomes node
`c<n>`, stable across restarts and recreation, and unique within the stack: a scaled-up replica is a new
node, never a second copy of one. The container's own /etc/hosts maps its address to its hostname only
(and glibc reads it first), so this asks the nameserver of /etc/resolv.conf directly, over UDP. Where
there is no such DNS (a plain `docker run`), the node is named after the hostname and reached by it.

Outside compose (a CI services block, where a container gets neither compose's name nor a command:
docs/ci.md) the node is told: $SLURM_NODE_NAME (e.g. c1), reached by $SLURM_NODE_ADDRESS, default the
node name itself (the service id, which the runner makes a network alias of the container).
"""

import os
import random
import re
import socket
import struct
import sys

REPLICA = re.compile(r"-compute-(\d+)$")
NODE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def nameserver() -> str:
    with open("/etc/resolv.conf") as resolv:
        for line in resolv:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                return fields[1]
    raise OSError("no nameserver in /etc/resolv.conf")


def read_name(reply: bytes, offset: int) -> tuple[str, int]:
    """A (possibly compressed) domain name at offset; returns it and the offset after it."""
    labels, end = [], None
    while reply[offset]:
        if reply[offset] & 0xC0 == 0xC0:  # pointer to an earlier name
            end = end or offset + 2
            offset = struct.unpack(">H", reply[offset : offset + 2])[0] & 0x3FFF
            continue
        length = reply[offset]
        labels.append(reply[offset + 1 : offset + 1 + length].decode())
        offset += 1 + length
    return ".".join(labels), end or offset + 1


def reverse_name(address: str, server: str) -> str:
    """The first PTR answer for an IPv4 address ("" when there is none)."""
    query = ".".join(reversed(address.split("."))) + ".in-addr.arpa"
    question = b"".join(bytes([len(label)]) + label.encode() for label in query.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", random.randrange(1 << 16), 0x0100, 1, 0, 0, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(packet + question + struct.pack(">HH", 12, 1), (server, 53))
        reply = sock.recv(4096)
    offset = 12 + len(question) + 4
    for _ in range(struct.unpack(">H", reply[6:8])[0]):
        _, offset = read_name(reply, offset)
        rtype, _class, _ttl, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        offset += 10
        if rtype == 12:
            return read_name(reply, offset)[0]
        offset += length
    return ""


def node_identity() -> tuple[str, str]:
    told = os.environ.get("SLURM_NODE_NAME", "")
    if told:
        if not NODE_NAME.fullmatch(told):
            raise SystemExit(
                f"error: SLURM_NODE_NAME={told!r} is not a Slurm node name; fix: e.g. SLURM_NODE_NAME=c1"
            )
        return told, os.environ.get("SLURM_NODE_ADDRESS", "") or told
    hostname = socket.gethostname()
    try:
        container = reverse_name(socket.gethostbyname(hostname), nameserver()).split(".")[0]
    except OSError as exc:
        print(
            f"warning: no reverse DNS for this container ({exc}); node named after its hostname",
            file=sys.stderr,
        )
        return hostname, hostname
    replica = REPLICA.search(container)
    return (f"c{replica.group(1)}", container) if replica else (hostname, hostname)


if __name__ == "__main__":
    print(*node_identity())
