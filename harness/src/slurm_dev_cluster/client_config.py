"""Client settings for a running stack, for use outside the harness: an SDK config file
(``slurm-dev-cluster config``, read by ``Cluster.from_env()``) and an OpenSSH ``Host`` block
(``slurm-dev-cluster ssh-config``, for ``ssh slurm-dev``).

Both name files in the stack's state directory (the copied client key, the pinned ``known_hosts``) and
the login node's port: they go stale when the stack is removed and started anew (new port, new keys); run
the verb again then. A restarted or recreated login node keeps its port (``Stack.keep_login_port``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from slurm_dev_cluster.kit import KitSettings
from slurm_dev_cluster.ssh_access import SSH_USER
from slurm_dev_cluster.stack import Connection, Stack, StackError
from slurm_dev_cluster.stack_state import write_text_atomically

SDK_CONFIG_NAME = "sdk-config.yaml"
DEFAULT_HOST_ALIAS = "slurm-dev"
#: Lifetime of the token `config --backend rest` writes (seconds): a working day.
REST_TOKEN_SECONDS = 8 * 3600


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


def rest_sdk_config(connection: Connection, settings: KitSettings, url: str, token: str) -> dict:
    """``sdk_config`` with the REST backend: slurmrestd at ``url`` with ``token`` (renewed over the SSH
    connection, which also carries the files, when it expires)."""
    config = sdk_config(connection, settings)
    ssh = {key: value for key, value in config["backend"].items() if key != "type"}
    config["backend"] = {
        "type": "rest",
        "url": url,
        "token": token,
        "token_lifespan": REST_TOKEN_SECONDS,
        "ssh": ssh,
    }
    return config


def fresh_token(stack: Stack, lifespan: int = REST_TOKEN_SECONDS) -> str:
    """A JSON Web Token for the job user, from `scontrol token` on the login node."""
    result = stack.exec("login", ["scontrol", "token", f"lifespan={lifespan}"], user=SSH_USER)
    token = result.strip().removeprefix("SLURM_JWT=")
    if not token:
        raise StackError(f"`scontrol token` on the login node of {stack.project} gave no token: {result!r}")
    return token


def write_sdk_config(
    stack: Stack, settings: KitSettings, path: Path | None = None, *, backend: str = "ssh"
) -> Path:
    """Write the SDK config for the running stack (default: ``<state dir>/sdk-config.yaml``);
    ``backend="rest"``: through its slurmrestd, with a fresh token."""
    path = (path or stack.state_dir / SDK_CONFIG_NAME).expanduser().resolve()
    header = (
        f"# SDK config for the dev cluster {stack.project}, written by `slurm-dev-cluster config`.\n"
        "# Stale once the stack is recreated or its login node restarts: run the command again.\n"
    )
    connection = running_connection(stack)
    if backend == "rest":
        issued = datetime.now(UTC)
        expires = (issued + timedelta(seconds=REST_TOKEN_SECONDS)).isoformat(timespec="seconds")
        config = rest_sdk_config(connection, settings, stack.rest_url(), fresh_token(stack))
        header += (
            f"# The token lives {REST_TOKEN_SECONDS} s (until {expires}); the backend then asks for a new\n"
            "# one with `scontrol token` over SSH.\n"
        )
    else:
        config = sdk_config(connection, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(config, sort_keys=False)
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
