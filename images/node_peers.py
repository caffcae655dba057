#!/usr/bin/env python3
"""Print every address Docker's DNS gives for a name, one a line: `node_peers.py c2`.

The container's own /etc/hosts maps its hostname to itself alone (and glibc reads it first), so this asks
the nameserver of /etc/resolv.conf directly, with one plain A query over UDP. Two answers for a compute
node's name mean a second container was started for the same node (`docker compose up --scale`).
"""

import random
import socket
import struct
import sys


def nameserver() -> str:
    with open("/etc/resolv.conf") as resolv:
        for line in resolv:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                return fields[1]
    raise SystemExit("no nameserver in /etc/resolv.conf")


def a_records(name: str, server: str) -> list[str]:
    query_id = random.randrange(1 << 16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(packet, (server, 53))
        reply = sock.recv(4096)
    answers = struct.unpack(">H", reply[6:8])[0]
    offset = 12 + len(question) + 4
    addresses = []
    for _ in range(answers):
        offset += 2 if reply[offset] & 0xC0 == 0xC0 else len(question)  # compressed pointer or full name
        rtype, _class, _ttl, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(reply[offset : offset + 4]))
        offset += length
    return addresses


if __name__ == "__main__":
    print("\n".join(a_records(sys.argv[1], nameserver())))
