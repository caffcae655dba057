"""One stack's Docker Compose project: its Docker client, every call to it bounded in time
(``slurm_dev_cluster.docker_deadline``), and what those calls saw of the containers.

Every Docker/Compose call goes through python-on-whales. This module knows nothing of Slurm, SSH or the
state file: it builds, starts, stops, inspects and execs, and says what happened on the way.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.components.container.models import ContainerInspectResult
from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run as docker_run

from slurm_dev_cluster import docker_deadline, preflight
from slurm_dev_cluster.errors import Say, StackError
from slurm_dev_cluster.inputs import compose_profiles
from slurm_dev_cluster.locks import EventLog
from slurm_dev_cluster.topology import node_number

COMPOSE_PROJECT_LABEL = "com.docker.compose.project"  # labels compose puts on every container it makes
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"
#: Long-running services besides the compute nodes (`slurmdbd` comes with accounting).
FIXED_SERVICES = ("slurmctld", "login")
ACCOUNTING_SERVICE = "slurmdbd"
REST_SERVICE = "slurmrestd"  # with the compose profile `rest`
REST_PORT_INSIDE = "6820/tcp"  # slurmrestd's port in its container (images/entrypoint.sh)
UP_WAIT_SECONDS = 300  # a built stack takes jobs within ~3-40 s here, even at load 30
UP_BOUND_SECONDS = UP_WAIT_SECONDS + 120  # the whole `compose up`: creating containers, then the wait
SLURMCTLD_LOG = "/var/log/slurm/slurmctld.log"
SLURMD_LOG = "/var/log/slurm/slurmd.log"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ComposeProject:
    """The compose project ``project`` made of ``compose_files``, with settings read from ``env_file``."""

    def __init__(
        self,
        project: str,
        directory: Path,
        compose_files: Sequence[Path],
        env_file: Path,
        *,
        events: EventLog,
        say: Say,
        client_call: list[str] | None = None,
    ) -> None:
        self.project = project
        self.events = events
        self.say = say
        self.docker = DockerClient(
            client_call=client_call or ["docker"],
            compose_files=list(compose_files),
            compose_project_name=project,
            compose_project_directory=directory,
            compose_env_files=[env_file],
            compose_profiles=compose_profiles(),
        )
        #: The containers by service as the last ``containers()`` call saw them, and when (monotonic).
        self.last_inspection: dict[str, ContainerInspectResult] = {}
        self.inspected_at = -float("inf")
        self.login_id: str | None = None  # id of the login container seen by that call
        self.login_port: int | None = None  # its published SSH port, read from the same inspection

    def bounded(self, seconds: float, what: str) -> AbstractContextManager[DockerClient]:
        """The Docker client for one call that must end within ``seconds`` (``docker_deadline``)."""
        return docker_deadline.bounded(self.docker, seconds, what)

    def inspecting(self) -> AbstractContextManager[DockerClient]:
        return self.bounded(docker_deadline.INSPECT_SECONDS, "docker ps/inspect")

    # ---- inspection ---------------------------------------------------------------------------

    def containers(self, max_age: float = 0.0) -> dict[str, ContainerInspectResult]:
        """The project's containers by service, a compute node's by its node name, as one `docker ps` and
        one `docker inspect` saw them (both bounded); remembers the login container's id and published SSH
        port. An inspection at most ``max_age`` seconds old is returned as it is (default: Docker is
        always asked)."""
        if time.monotonic() - self.inspected_at <= max_age:
            return self.last_inspection
        containers = {service_or_node(c): c for c in self.inspect_all()}
        self.last_inspection, self.inspected_at = containers, time.monotonic()
        login = containers.get("login")
        self.login_id = login.id if login else None
        self.login_port = published_ssh_port(login) if login else None
        return containers

    def inspect_all(self) -> list[ContainerInspectResult]:
        """Every container of the project in one `docker inspect` (python-on-whales' Container objects
        inspect again on each attribute read: ~3 inspections per container, a second per stack here).

        Listed by compose's project label with plain `docker ps` (what `compose ps` does, without loading
        the compose project: 0.03 s against 0.13-0.26 s of CPU-bound work per call here, and a start
        inspects several times while MariaDB needs the CPU)."""
        with self.inspecting() as docker:
            for attempt in range(2):
                project = ["--filter", f"label={COMPOSE_PROJECT_LABEL}={self.project}"]
                not_oneoff = ["--filter", f"label={COMPOSE_ONEOFF_LABEL}=False"]  # not `compose run` ones
                listed = docker_run(
                    [*docker.docker_cmd, "ps", "--all", "--quiet", "--no-trunc", *project, *not_oneoff]
                )
                ids = str(listed).split()
                if not ids:
                    return []
                try:
                    found = json.loads(docker_run([*docker.docker_cmd, "container", "inspect", *ids]))
                except DockerException:
                    if attempt:  # a container removed between the two calls: list them again, once
                        raise
                    continue
                return [ContainerInspectResult(**item) for item in found]
        return []

    def services(self) -> dict[str, str]:
        """State of each container of the project, e.g. ``{"login": "running (healthy)"}``."""
        result = {}
        for service, container in self.containers().items():
            state = container.state
            text = state.status
            if state.status == "running" and state.health is not None:
                text += f" ({state.health.status})"
            elif state.status == "exited":
                text += f" ({state.exit_code})"
            result[service] = text
        return result

    # ---- calls --------------------------------------------------------------------------------

    def build(self, log_path: Path) -> None:
        """`docker compose build`: echoes step headers, the full log in ``log_path``."""
        self.say(f"building images (full log: {log_path})")
        started = time.monotonic()
        tail: list[str] = []
        try:
            with (
                log_path.open("w") as log,
                self.bounded(docker_deadline.BUILD_SECONDS, "docker compose build") as docker,
            ):
                for line in output_lines(docker.compose.build(stream_logs=True), unique=False):
                    log.write(line + "\n")
                    tail = ([*tail, line])[-40:]
                    if is_build_step(line):
                        self.say(f"  {line[:150]}")
        except DockerException as exc:
            raise StackError(
                "image build failed; last lines:\n"
                + "\n".join(tail)
                + f"\nfull log: {log_path}\n{preflight._first_line(exc)}"
            ) from None
        self.say(f"images ready in {time.monotonic() - started:.0f} s")

    def up(
        self,
        session: str,
        *,
        force_recreate: bool = False,
        services: list[str],
        dependencies: bool = False,
        wait: bool = True,
    ) -> None:
        """`docker compose up -d` of ``services`` (with what they depend on when ``dependencies``), bounded by
        ``UP_BOUND_SECONDS``. Node services are always named: c3..c16 sit in a profile compose leaves alone."""
        started = time.monotonic()
        try:
            with (
                self.events.outcome(
                    "compose-up", project=self.project, session=session, force_recreate=force_recreate
                ),
                self.bounded(UP_BOUND_SECONDS, "docker compose up") as docker,
            ):
                for line in output_lines(
                    docker.compose.up(
                        services,
                        dependencies=dependencies,  # else a listed service alone: nothing it depends on
                        detach=True,
                        wait=wait,
                        # A service that exits (slurmctld refusing its state) can leave compose waiting on
                        # its dependants for ever: the wait ends, and the error below shows the logs.
                        wait_timeout=UP_WAIT_SECONDS if wait else None,
                        force_recreate=force_recreate,
                        remove_orphans=True,
                        color=False,
                        stream_logs=True,
                    )
                ):
                    if not is_transient(line):
                        self.say(f"  {line}")
        except DockerException as exc:
            raise StackError(
                f"`docker compose up` failed (or was not healthy within {UP_WAIT_SECONDS} s) "
                f"for {self.project}: "
                f"{preflight._first_line(exc)}\n--- compose logs (tail) ---\n{self.logs_tail(30)}"
                "\nfix: read the logs above (`slurm-dev-cluster logs`); "
                "`slurm-dev-cluster down` then `up` starts from scratch"
            ) from None
        self.say(f"containers up in {time.monotonic() - started:.1f} s")

    def down(self, session: str) -> None:
        """`docker compose down`: containers and volumes removed, bounded by ``DOWN_SECONDS``."""
        started = time.monotonic()
        try:
            with (
                self.events.outcome("compose-down", project=self.project, session=session),
                self.bounded(docker_deadline.DOWN_SECONDS, "docker compose down") as docker,
            ):
                # `compose down` leaves the containers of services in a profile it was not given (nodes c3
                # and up: compose.yaml), and then cannot remove the network they hold: named, they go.
                nodes = sorted({name for name in self.listed_services(docker) if node_number(name)})
                if nodes:
                    docker.compose.rm(nodes, stop=True)
                for line in output_lines(
                    docker.compose.down(volumes=True, remove_orphans=True, timeout=5, stream_logs=True)
                ):
                    if "rror" in line:
                        self.say(f"  {line}")
        except DockerException as exc:
            raise StackError(
                f"`docker compose down` failed for {self.project}: {preflight._first_line(exc)}\n"
                "fix: `slurm-dev-cluster status` shows what is left; retry `slurm-dev-cluster "
                "down --force`"
            ) from None
        self.say(f"stack stopped in {time.monotonic() - started:.0f} s")

    def listed_services(self, docker: DockerClient) -> list[str]:
        """The compose service of every container of the project, running or not (`docker ps --all`)."""
        listed = docker_run(
            [
                *docker.docker_cmd,
                *("ps", "--all", "--filter", f"label={COMPOSE_PROJECT_LABEL}={self.project}"),
                *("--format", '{{.Label "com.docker.compose.service"}}'),
            ]
        )
        return str(listed).split()

    def remove(self, services: list[str]) -> None:
        """Stop and remove the containers of ``services`` (`docker compose rm --stop --force`)."""
        self.say(f"docker compose rm --stop --force {' '.join(services)}")
        with self.bounded(docker_deadline.DOWN_SECONDS, "docker compose rm") as docker:
            docker.compose.rm(services, stop=True)

    def stop(self, services: list[str]) -> None:
        with self.bounded(docker_deadline.DOWN_SECONDS, "docker compose stop") as docker:
            docker.compose.stop(services, timeout=2)

    def exec(
        self, service: str, command: list[str], user: str | None = None, seconds: float | None = None
    ) -> str:
        """Run a command in a service's container (compute node cN is service cN). It must end within
        ``seconds`` (default ``docker_deadline.EXEC_SECONDS``)."""
        what = f"docker compose exec {service} {' '.join(command)[:60]}"
        with self.bounded(seconds or docker_deadline.EXEC_SECONDS, what) as docker:
            return docker.compose.execute(service, command, tty=False, user=user) or ""

    def logs_tail(self, lines: int = 50, services: Iterable[str] = ()) -> str:
        try:
            with self.inspecting() as docker:
                return ANSI_ESCAPE.sub("", docker.compose.logs(list(services), tail=str(lines)))
        except DockerException as exc:
            return f"(compose logs unavailable: {preflight._first_line(exc)})"
        except docker_deadline.DockerTimeout as exc:
            return f"(compose logs unavailable: {exc.what} did not end within {exc.seconds:g} s)"

    def daemon_logs_tail(self, node_names: Iterable[str], lines: int = 50) -> str:
        """Tail of slurmctld.log and each node's slurmd.log, read inside the containers."""
        parts = []
        daemons = {"slurmctld": SLURMCTLD_LOG} | {node: SLURMD_LOG for node in node_names}
        for service, path in daemons.items():
            try:
                text = self.exec(service, ["tail", "-n", str(lines), path])
            except DockerException as exc:
                text = f"(unavailable: {preflight._first_line(exc)})"
            except docker_deadline.DockerTimeout as exc:
                text = f"(unavailable: no answer within {exc.seconds:g} s)"
            parts.append(f"--- {service}:{path} ---\n{text}")
        return "\n".join(parts)


def output_lines(stream: Iterable[tuple[str, bytes]], unique: bool = True) -> Iterable[str]:
    """Decoded, de-coloured, non-empty lines; with ``unique``, each at most once (compose repeats
    its progress lines)."""
    seen: set[str] = set()
    for _, raw in stream:
        line = ANSI_ESCAPE.sub("", raw.decode(errors="replace")).rstrip()
        if line and not (unique and line in seen):
            seen.add(line)
            yield line


def service_or_node(container: ContainerInspectResult) -> str:
    """A container's compose service; a compute node's is its node name (``c<n>``)."""
    return container.config.labels.get("com.docker.compose.service", container.name.lstrip("/"))


def published_ssh_port(container: ContainerInspectResult, inside: str = "22/tcp") -> int | None:
    """Host port bound to the container's 22/tcp (or ``inside``), from its inspection (None when stopped
    or unpublished)."""
    bindings = (container.network_settings.ports or {}).get(inside) or []
    ports = [int(b["HostPort"]) for b in bindings if b.get("HostPort")]
    return ports[0] if ports else None


def is_transient(line: str) -> bool:
    """Compose progress lines such as "Container x  Waiting" that a final state line follows anyway."""
    return line.split()[-1] in ("Creating", "Starting", "Waiting", "Recreate", "Stopping", "Removing")


def is_build_step(line: str) -> bool:
    """Step headers of BuildKit (``#7 [3/9] RUN ...``) and the classic builder (``Step 3/9 : RUN``)."""
    return bool(
        re.match(r"#\d+ \[[^\]]*\d+/\d+\]", line)
        or line.startswith("Step ")
        or "ERROR" in line
        or line.startswith(" Service ")
        or "Built" in line
    )


def unwanted_containers(running: Iterable[str], nodes: Sequence[str], *, rest: bool) -> list[str]:
    """The containers of a running stack that its settings no longer want: compute nodes beyond ``nodes``
    (c3 when 2 are wanted) and slurmrestd once the ``rest`` profile is off. compose starts only the services
    it is given and leaves any it started before running, on its old configuration (a slurmrestd the
    settings do not name would still answer, and fault injection would still act on it)."""
    return [
        name
        for name in running
        if (node_number(name) and name not in nodes) or (name == REST_SERVICE and not rest)
    ]
