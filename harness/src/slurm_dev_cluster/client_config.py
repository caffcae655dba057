"""Client settings for a running stack, for use outside the harness: an SDK config file
(``slurm-dev-cluster config``, read by ``Cluster.from_env()``) and an OpenSSH ``Host`` block
(``slurm-dev-cluster ssh-config``, for ``ssh slurm-dev``).

Both name files in the stack's state directory (the copied client key, the pinned ``known_hosts``) and
the login node's port: they go stale when the stack is removed and started anew (new port, new keys); run
the verb again then. A restarted or recreated login node keeps its port (``Stack.keep_login_port``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from slurm_dev_cluster.kit import KitSettings
from slurm_dev_cluster.stack import Connection, Stack, StackError
from slurm_dev_cluster.stack_state import write_text_atomically

SDK_CONFIG_NAME = "sdk-config.yaml"
DEFAULT_HOST_ALIAS = "slurm-dev"


def running_connection(stack: Stack) -> Connection:
    """The connection of the running stack; never starts one (say how instead)."""
    if not stack.services().get("login", "").startswith("running"):
        raise StackError(
            f"stack {stack.project} is not running, so there is nothing to connect to; "
            "fix: `slurm-dev-cluster up` first"
        )
    return stack.connect_info()


def sdk_config(connection: Connection, settings: KitSettings) -> dict:
    """An SDK config (``slurm.config`` schema) reaching the stack over SSH, with the SDK checkout and the
    project's import roots on the nodes' PYTHONPATH (packaging ``none``: the code is mounted there)."""
    return {
        "backend": {
            "type": "ssh",
            "host": connection.host,
            "port": connection.port,
            "user": connection.user,
            "key_filename": str(connection.key_path),
            "known_host_key": connection.host_key,
        },
        "packaging": {
            "type": "none",
            "pythonpath": settings.node_import_roots(),
        },
    }


def write_sdk_config(stack: Stack, settings: KitSettings, path: Path | None = None) -> Path:
    """Write the SDK config for the running stack (default: ``<state dir>/sdk-config.yaml``)."""
    path = (path or stack.state_dir / SDK_CONFIG_NAME).expanduser().resolve()
    header = (
        f"# SDK config for the dev cluster {stack.project}, written by `slurm-dev-cluster config`.\n"
        "# Stale once the stack is recreated or its login node restarts: run the command again.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(sdk_config(running_connection(stack), settings), sort_keys=False)
    write_text_atomically(path, header + body)
    return path


def ssh_config(connection: Connection, known_hosts: Path, alias: str = DEFAULT_HOST_ALIAS) -> str:
    """An OpenSSH ``Host`` block: key only, the stack's host key pinned (no prompt, no trust on first use)."""
    if not alias or any(c.isspace() or c in "*?!" for c in alias):
        raise ValueError(
            f"host alias {alias!r} must be one word without wildcards, e.g. {DEFAULT_HOST_ALIAS}"
        )
    lines = [
        f"Host {alias}",
        f"    HostName {connection.host}",
        f"    Port {connection.port}",
        f"    User {connection.user}",
        f"    IdentityFile {_quoted(connection.key_path)}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {_quoted(known_hosts)}",
        "    StrictHostKeyChecking yes",
        "    PasswordAuthentication no",
    ]
    return "\n".join(lines) + "\n"


def _quoted(path: Path) -> str:
    """OpenSSH splits arguments on spaces; double quotes keep a path with spaces whole."""
    text = str(path)
    return f'"{text}"' if any(c.isspace() for c in text) else text
