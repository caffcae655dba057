"""SSH keys for ``slurm.transports.ssh``: the server's host key pinned (an unknown host refused, with the fix),
and a failed connection or a missing client key explained in words that name the cause and the fix."""

from __future__ import annotations

import base64
import binascii
import socket
from typing import Any

from slurm.errors import ConfigError, SSHError
from slurm.transports import ssh_channel


def parse_public_key(text: str) -> Any:
    """``"ssh-ed25519 AAAA... comment"`` (a ``*.pub`` line) -> paramiko public key."""
    parts = text.split()
    if len(parts) < 2:
        raise ConfigError(f"known_host_key must look like 'ssh-ed25519 AAAA...', got {text!r}")
    try:
        return ssh_channel.require_paramiko().PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except (binascii.Error, ValueError, ssh_channel.require_paramiko().SSHException) as exc:
        raise ConfigError(f"known_host_key {text[:40]!r}... is not a valid public key: {exc}") from exc


class RejectUnknownHost:
    """paramiko host-key policy that refuses unknown hosts with an explanation of the fix."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise SSHError(
            f"unknown host key for {hostname} ({key.get_name()} {key.fingerprint}); "
            "pass known_host_key='<type> <base64>' (the server's *.pub line) to pin it, "
            "or trust_unknown_host=True if you accept the risk"
        )


#: A key file's note of why it was removed: ``<key file><suffix>``, plain text, written by whatever removed
#: the key, read only when the key is missing. A convention, not an import: the SDK knows no provider.
KEY_REMOVED_SUFFIX = ".removed"


def missing_key_error(key_filename: str, address: str, key_was_there: bool) -> SSHError:
    """Why the key is gone, in the words of whatever removed it when it left a note beside it
    (``<key>.removed``, see ``KEY_REMOVED_SUFFIX``): the dev cluster's kit does when it stops its stack."""
    try:
        with open(key_filename + KEY_REMOVED_SUFFIX, encoding="utf-8", errors="replace") as handle:
            why = " ".join(handle.read(1000).split())
    except OSError:
        why = ""
    if why:
        return SSHError(f"cannot connect to {address}: {why} (the SSH key {key_filename} went with it)")
    if key_was_there:
        return SSHError(
            f"SSH key file {key_filename} was removed after this client connected with it; "
            "whatever provided the key (and perhaps the cluster) is gone"
        )
    return SSHError(f"SSH key file {key_filename} does not exist")


def connect_error(
    exc: Exception, *, host: str, port: int, user: str | None, key_filename: str, address: str
) -> SSHError:
    pm = ssh_channel.require_paramiko()
    user = user or "(local user name)"
    if isinstance(exc, pm.BadHostKeyException):
        return SSHError(
            f"host key mismatch for {host}:{port}: server sent "
            f"{exc.key.get_name()} {exc.key.fingerprint}, expected {exc.expected_key.fingerprint}; "
            "the cluster was rebuilt (pass its new known_host_key) or someone is in between"
        )
    if isinstance(exc, pm.AuthenticationException):
        return SSHError(
            f"{host}:{port} refused the key {key_filename} for user {user}; "
            "is its public key in that user's authorized_keys?"
        )
    if isinstance(exc, pm.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
        return SSHError(
            f"connection to {host}:{port} refused; is the cluster up and the port right?",
            transient=True,
        )
    if isinstance(exc, socket.timeout | TimeoutError):
        return SSHError(f"connecting to {host}:{port} timed out", transient=True)
    if isinstance(exc, pm.SSHException) and "key" in str(exc).lower() and "banner" not in str(exc).lower():
        return SSHError(f"cannot use SSH key {key_filename} for {address}: {exc}")
    return SSHError(f"SSH connection to {address} failed: {type(exc).__name__}: {exc}", transient=True)
