"""Checks run before touching the stack, so a broken host gives one clear message (cause + fix)
instead of a Docker traceback halfway through a build."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run as docker_run

from slurm_dev_cluster import docker_deadline

BOOTSTRAP_HINT = "sudo slurm-dev-cluster setup-host (Debian/Ubuntu; installs and starts what is missing)"


@dataclass(frozen=True)
class Problem:
    code: str
    cause: str
    fix: str
    #: True when Docker is simply not usable on this host (integration tests skip, except in CI);
    #: False for a misconfiguration that should fail loudly.
    unavailable: bool

    def __str__(self) -> str:
        return f"{self.cause}\n  fix: {self.fix}"


class PreflightError(RuntimeError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("dev cluster cannot start:\n" + "\n".join(f"- {p}" for p in problems))

    @property
    def unavailable(self) -> bool:
        return all(p.unavailable for p in self.problems)


def check_docker_cli(docker: DockerClient) -> Problem | None:
    binary = docker.client_config.client_call[0]
    if shutil.which(binary):
        return None
    return Problem(
        "docker-missing",
        f"the Docker CLI `{binary}` is not on PATH",
        f"install Docker Engine: {BOOTSTRAP_HINT}",
        unavailable=True,
    )


def check_daemon(docker: DockerClient) -> Problem | None:
    try:
        with docker_deadline.bounded(docker, docker_deadline.ANSWER_SECONDS, "docker version") as bounded:
            bounded.version()
    except docker_deadline.DockerTimeout as exc:  # alive but wedged: a failure to fix, not a missing Docker
        cause, _, fix = str(exc).partition("\nfix: ")
        return Problem("daemon-hung", cause, fix, unavailable=False)
    except DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
        return Problem(
            "daemon-down",
            f"the Docker daemon at {where} does not answer: {_first_line(exc)}",
            "start the daemon (`sudo systemctl start docker`, or "
            + BOOTSTRAP_HINT
            + ")"
            + ("; or unset/fix DOCKER_HOST" if os.environ.get("DOCKER_HOST") else ""),
            unavailable=True,
        )
    return None


def check_compose_v2(docker: DockerClient) -> Problem | None:
    fix = f"install the Docker Compose v2 plugin (`docker compose version` must print 2.x): {BOOTSTRAP_HINT}"
    try:
        version = docker.compose.version()
    except DockerException as exc:
        legacy = (
            " (only the legacy v1 `docker-compose` is installed)" if shutil.which("docker-compose") else ""
        )
        return Problem(
            "compose-missing",
            f"`docker compose` does not work{legacy}: {_first_line(exc)}",
            fix,
            unavailable=True,
        )
    match = re.search(r"(\d+)\.(\d+)", version)
    if match is None or int(match.group(1)) < 2:
        return Problem(
            "compose-v1", f"Docker Compose v2 is required, found: {version.strip()!r}", fix, unavailable=True
        )
    return None


def check_ssh_port(
    setting: str | None, stack_running: bool, docker: DockerClient | None = None
) -> Problem | None:
    """A fixed ``SLURM_SDK_SSH_PORT`` must be free (unless our own stack already holds it); with ``docker``,
    a taken port's message names what holds it (``port_holder``)."""
    if not setting or stack_running:
        return None
    if not setting.isdigit() or not 0 < int(setting) < 65536:
        return Problem(
            "ssh-port-invalid",
            f"SLURM_SDK_SSH_PORT={setting!r} is not a TCP port number",
            "set it to a free port such as 2222, or unset it to get a free port",
            unavailable=False,
        )
    port = int(setting)
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
    try:
        probe.bind(("127.0.0.1", port))
    except OSError as exc:
        holder = port_holder(docker, port) if docker else None
        return Problem(
            "ssh-port-taken",
            f"SLURM_SDK_SSH_PORT={port} but 127.0.0.1:{port} is already in use ({exc.strerror})"
            + (f", by {holder.who}" if holder else ""),
            "unset SLURM_SDK_SSH_PORT (the harness then picks a free port), choose another port, "
            + (
                f"or free it: {holder.fix}" if holder else f"or stop what listens there ({_ss_command(port)})"
            ),
            unavailable=False,
        )
    finally:
        probe.close()
    return None


@dataclass(frozen=True)
class PortHolder:
    """What listens on a local port, and how to free it, for a message."""

    who: str
    fix: str


#: `docker ps` columns for ``port_holder``: the container and, when Compose made it, its project and checkout.
HOLDER_FORMAT = (
    '{{.Names}}\t{{.Label "com.docker.compose.project"}}\t{{.Label "com.docker.compose.project.working_dir"}}'
)


def port_holder(docker: DockerClient, port: int) -> PortHolder:
    """The container publishing ``port`` (its Compose project and checkout), else the host process
    listening on it (``ss``), else an unnamed holder with the command that names it."""
    try:
        with docker_deadline.bounded(docker, docker_deadline.INSPECT_SECONDS, "docker ps") as bounded:
            rows = docker_run(
                [*bounded.docker_cmd, "ps", "--filter", f"publish={port}", "--format", HOLDER_FORMAT]
            )
    except (DockerException, docker_deadline.DockerTimeout, OSError):
        rows = ""  # no Docker to ask: the host's view below still names a process
    for row in str(rows or "").splitlines():
        name, project, checkout = [*row.split("\t"), "", ""][:3]
        if project:
            return PortHolder(
                f"container {name} of Compose project {project} (started in {checkout or 'an unknown directory'})",
                f"stop that stack (`docker compose -p {project} down -v`; `slurm-dev-cluster down` in "
                f"{checkout or 'its checkout'} if the harness started it) or wait until it ends, then retry",
            )
        return PortHolder(f"container {name}", f"stop it (`docker stop {name}`), then retry")
    process = _listening_process(port)
    if process:
        return PortHolder(process, "stop that process or move it to another port, then retry")
    return PortHolder("an unknown process", f"find it with {_ss_command(port)}, stop it, then retry")


def _listening_process(port: int) -> str | None:
    """``process sshd (pid 12)`` for the host process listening on ``port``, from `ss` (None: unknown)."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    try:
        out = subprocess.run(
            [ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return f"process {match.group(1)} (pid {match.group(2)})" if match else None


def _ss_command(port: int) -> str:
    return f"`ss -ltnp 'sport = :{port}'`"


def run_checks(docker: DockerClient) -> list[Problem]:
    """The Docker problems found, in dependency order (no daemon check without a CLI, and so on). The SSH
    port is checked apart (``check_ssh_port``; ``Stack._check_ssh_port``): it asks a working Docker
    whether our own stack holds the port."""
    problem = check_docker_cli(docker)
    if problem:
        return [problem]
    # Each of these starts a Docker CLI process (0.1 s or more here): side by side they cost a warm start
    # one wait, not two. Reported in dependency order all the same: the daemon's problem first.
    with ThreadPoolExecutor(max_workers=2) as pool:
        daemon, compose = pool.map(lambda check: check(docker), (check_daemon, check_compose_v2))
    problem = daemon or compose
    return [problem] if problem else []


def _first_line(exc: DockerException) -> str:
    if docker_deadline.ended_by_its_limit(exc):
        return "no answer from dockerd: the call was ended by its time limit (is dockerd wedged?)"
    text = (getattr(exc, "stderr", None) or str(exc)).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
