"""Minimal paramiko client for the harness's own checks (probe, CLI), verifying the stack's host key.

Tests of the SDK use the SDK's ``SSHTransport``; the harness keeps its own few lines so that it can
check the stack even while the SDK is broken.
"""

from __future__ import annotations

import base64
import logging
import socket
from pathlib import Path

import paramiko

# Readiness probes connect while sshd is still starting: paramiko then logs "Error reading SSH protocol banner"
# with a traceback, which logging's last resort would print in the middle of `up`'s progress lines. The probe
# reports what it waits for itself; an application that configures logging still gets paramiko's records.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def host_key_from_line(line: str) -> paramiko.PKey:
    """``"ssh-ed25519 AAAA... comment"`` -> key object."""
    key_type, data, *_ = line.split()
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(data))


def connect(
    host: str, port: int, user: str, key_path: Path, host_key_line: str, timeout: float = 10.0
) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    key = host_key_from_line(host_key_line)
    client.get_host_keys().add(f"[{host}]:{port}" if port != 22 else host, key.get_name(), key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())  # never trust an unknown server
    client.connect(
        host,
        port=port,
        username=user,
        key_filename=str(key_path),
        timeout=timeout,
        allow_agent=False,
        look_for_keys=False,
    )
    # Each command is a few small packets: without TCP_NODELAY, Nagle plus delayed ACKs stall each one
    # ~40 ms (the SDK's SSHTransport does the same; measured there: 55 ms -> 6 ms for `true`).
    transport = client.get_transport()
    if transport is not None:
        transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def run(client: paramiko.SSHClient, command: str, timeout: float = 120.0) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode(errors="replace")
    err = stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status(), out, err
