"""SSH access to a stack's login node: the client key and known_hosts copied out of the stack, the
connection a client needs, and the probe that proves a login and a tiny job work.

The keys are made inside the stack (images/entrypoint.sh); the kit copies the client key (0600) and writes
a known_hosts line for the published port into the stack's state directory, where clients read them.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from slurm_dev_cluster import docker_deadline, ssh
from slurm_dev_cluster.compose_project import ComposeProject
from slurm_dev_cluster.errors import Say, StackError
from slurm_dev_cluster.kit import SDK_MOUNT
from slurm_dev_cluster.stack_state import write_text_atomically

SSH_USER = "sdk"
SSH_HOST = "127.0.0.1"
CLIENT_KEY_IN_STACK = "/etc/slurm-sdk/ssh/client_ed25519"
HOST_KEY_IN_STACK = "/etc/slurm-sdk/ssh/host_ed25519.pub"
#: What Docker says when a container cannot publish its port because something else holds it now.
PORT_TAKEN = ("port is already allocated", "address already in use")
PROBE_TIMEOUT_SECONDS = 60


def probe_job(timeout: int = PROBE_TIMEOUT_SECONDS) -> str:
    """The probe's shell. When the job fails or times out, it lists the jobs pending or running meanwhile:
    the usual cause is a queue the probe waited behind (a restarted stack's own jobs, recovered by
    slurmctld from its state), and the fix is the user's to choose."""
    return f"""sinfo -h -N -o %N | sort -u
timeout {timeout} srun --quiet -J harness-probe -N1 -n1 true || {{
  echo "probe job (srun true) failed or did not end within {timeout} s (exit $?)" >&2
  squeue -h -t PD,R -o '%i %u %T %r %j' | grep -v ' harness-probe$' | sed \
    -e '1i the jobs pending or running meanwhile, which it may have waited behind (id, user, state, reason, name):' \
    -e '$a fix: wait for them, cancel them (scancel), or start from scratch: slurm-dev-cluster down, then up' >&2
  exit 1; }}"""


#: The nodes Slurm knows (one line each), then a tiny job run on a node with `srun`: an interactive
#: allocation is granted inside the request, while a batch job waits for the scheduler's next pass (up
#: to 1 s: slurmctld's background loop runs once a second), then the poll that sees it finish.
PROBE_JOB = probe_job()


@dataclass(frozen=True)
class Connection:
    """Everything a client needs to reach a running stack."""

    project: str
    host: str
    port: int
    user: str
    key_path: Path
    host_key: str  # public key line, "ssh-ed25519 AAAA..."
    containers: dict[str, str] = field(default_factory=dict)  # service -> container name
    sdk_path: str = SDK_MOUNT


class SSHAccess:
    """The login node's SSH access for one stack, its files in ``state_dir``."""

    def __init__(self, compose: ComposeProject, state_dir: Path, say: Say) -> None:
        self.compose = compose
        self.state_dir = state_dir
        self.say = say

    @property
    def key_path(self) -> Path:
        return self.state_dir / "client_ed25519"

    @property
    def key_removed_note(self) -> Path:
        """Why ``key_path`` is gone, beside it: the SDK's SSH transport quotes it when a client finds its key
        missing (the SDK's ``KEY_REMOVED_SUFFIX`` convention; no import either way)."""
        return self.key_path.with_name(self.key_path.name + ".removed")

    @property
    def known_hosts_path(self) -> Path:
        return self.state_dir / "known_hosts"

    def read_keys(self, port: int, login_id: str | None) -> tuple[str, str]:
        """(host key line, client key) read from the login container, the client key copied out (0600)."""
        # One plain `docker exec` for both files (no compose project to load): each costs a few hundred ms
        # of a warm start.
        with self.compose.bounded(
            docker_deadline.EXEC_SECONDS, "docker exec login: read the SSH keys"
        ) as docker:
            both = (
                docker.container.execute(
                    login_id, ["sh", "-c", f"cat {HOST_KEY_IN_STACK} && cat {CLIENT_KEY_IN_STACK}"]
                )
                or ""
            )
        host_line, _, key = both.partition("\n")
        key = key.strip("\n") + "\n"
        if not self.key_path.exists() or self.key_path.read_text() != key:
            write_text_atomically(self.key_path, key, mode=0o600)
        self.key_removed_note.unlink(missing_ok=True)
        host_key = " ".join(host_line.split()[:2])
        self.write_known_hosts(port, host_key)
        return host_key, key

    def recorded(self, state: dict, login_id: str | None, port: int | None) -> Connection | None:
        """The connection recorded for this very login container (same id: same keys), with ``port`` just
        read from Docker (a restart changes it), so reusing a stack needs no `docker exec`; None when
        anything is missing or stale."""
        if not (
            login_id
            and state.get("login_id") == login_id
            and self.key_path.exists()
            and port
            and state.get("host_key")
            and state.get("containers")
        ):
            return None
        if state.get("port") != port:
            self.write_known_hosts(port, state["host_key"])
        return Connection(
            self.compose.project,
            SSH_HOST,
            port,
            SSH_USER,
            self.key_path,
            state["host_key"],
            dict(state["containers"]),
        )

    def write_known_hosts(self, port: int, host_key: str) -> None:
        write_text_atomically(self.known_hosts_path, f"[{SSH_HOST}]:{port} {host_key}\n")

    def remove(self, by: str) -> None:
        """The stack is gone: remove the key and known_hosts, leaving a note saying by what (written first:
        a client reconnecting between the two reads why its key is missing)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        write_text_atomically(
            self.key_removed_note,
            f"the dev cluster {self.compose.project} was stopped by {by} "
            f"(pid {os.getpid()}, {stamp}); start it again with `slurm-dev-cluster up`\n",
        )
        for path in (self.key_path, self.known_hosts_path):
            path.unlink(missing_ok=True)

    def probe(self, connection: Connection, daemon_logs: Callable[[], str], quick: bool = False) -> list[str]:
        """Prove the stack works end to end: SSH login with the key, then a tiny batch job run to completion.
        Returns the nodes Slurm knows (listed on the way; none for ``quick``).

        ``quick`` (a running stack that passed the full probe when it started): SSH login and
        ``scontrol ping`` only, which never waits behind other sessions' jobs.
        """
        command = "scontrol ping | grep -q 'is UP'" if quick else PROBE_JOB
        self.say("probe: SSH login + " + ("scontrol ping" if quick else "a tiny job (srun)"))
        try:
            client = ssh.connect(
                connection.host, connection.port, connection.user, connection.key_path, connection.host_key
            )
        except Exception as exc:  # paramiko raises many unrelated types
            raise StackError(
                f"SSH login to {connection.user}@{connection.host}:{connection.port} failed: "
                f"{exc!r}\nfix: `slurm-dev-cluster logs login`; `slurm-dev-cluster down` "
                "then `up` recreates keys"
            ) from None
        try:
            return run_probe(client, daemon_logs, command)
        finally:
            client.close()


def run_probe(
    client: paramiko.SSHClient, daemon_logs: Callable[[], str], command: str = PROBE_JOB
) -> list[str]:
    """Run a probe command on the login node; the nodes it lists (PROBE_JOB), or StackError."""
    code, out, err = ssh.run(client, command)
    if code != 0:  # what the probe printed says what failed (PROBE_JOB's own lines), not its shell text
        said = err.strip() or out.strip() or f"`{command}` printed nothing"
        raise StackError(
            f"the probe on the login node failed (exit {code}):\n{said}\n--- daemon logs ---\n{daemon_logs()}"
        )
    return out.split()


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (the kernel's choice, as Docker's ephemeral one is)."""
    with socket.socket() as probe:
        probe.bind((SSH_HOST, 0))
        return int(probe.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            probe.bind((SSH_HOST, port))
        except OSError:
            return False
        return True
