"""A stack's parts composed: what ``slurm_dev_cluster.stack.Stack`` is made of and asks.

- ``compose_project``: the Docker Compose project (build, up, down, exec, inspection; every call bounded);
- ``stack_state``: ``state.json`` and who owns the stack; ``login_port``: the port login keeps;
- ``readiness``: wait strategies, each naming what it waits for; ``stack_wait``: those run on a stack;
- ``ssh_access``: the client key, known_hosts, the connection and the probe;
- ``images``, ``airgap``: the images built or pulled; the air gap lifted when the stack goes.

Here they answer together: the stack's status, its readiness, its connection; ``stack.Stack`` adds the
decisions (``plan``) and the lifecycle (``ensure_up``).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from python_on_whales import DockerClient
from python_on_whales.client_config import ClientNotFoundError
from python_on_whales.components.container.models import ContainerInspectResult
from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import preflight, stack_wait
from slurm_dev_cluster.compose_project import (
    ACCOUNTING_SERVICE,
    FIXED_SERVICES,
    REST_PORT_INSIDE,
    REST_SERVICE,
    UP_WAIT_SECONDS,
    ComposeProject,
    published_ssh_port,
)
from slurm_dev_cluster.errors import Say, StackError, say_stderr
from slurm_dev_cluster.images import Images
from slurm_dev_cluster.inputs import (
    REST_PROFILE,
    accounting_enabled,
    containers_inputs,
    image_repository,
    rest_enabled,
    sdk_package_dir,
)
from slurm_dev_cluster.kit import KitSettings, cluster_root
from slurm_dev_cluster.locks import EventLog
from slurm_dev_cluster.login_port import LoginPort
from slurm_dev_cluster.naming import debian_release, default_project, project_root_of, state_root
from slurm_dev_cluster.readiness import Clock
from slurm_dev_cluster.ssh_access import SSH_HOST, SSH_USER, Connection, SSHAccess, free_port
from slurm_dev_cluster.stack_state import PINNED_PORT_KEY, REST_PORT_KEY, StackState, write_text_atomically
from slurm_dev_cluster.topology import Topology

#: slurmrestd's port on 127.0.0.1 that the user fixes (compose.yaml reads it; it wins over the kept one).
REST_PORT_SETTING = "SLURM_SDK_REST_PORT"


def _on_compose(name: str) -> property:
    """An attribute of the stack's compose project, read and set through the stack."""
    return property(
        lambda self: getattr(self.compose, name),
        lambda self, value: setattr(self.compose, name, value),
        doc=f"``compose.{name}``",
    )


@dataclass(frozen=True)
class Status:
    project: str
    state_dir: Path
    services: dict[str, str]  # service -> "running (healthy)", "exited (0)", ...
    port: int | None
    inputs_current: bool | None  # None: no record of what the running stack was built from
    orphaned_by: str | None = None  # the test session that started it and died without stopping it
    expected: tuple[str, ...] = ()  # services and compute nodes the topology asks for
    ready: tuple[str, ...] = ()  # of those, the ones known ready (``Stack.is_ready``)

    @property
    def up(self) -> bool:
        return set(self.expected) <= set(self.ready)


class StackParts:
    """A stack's parts composed, and what they say together (status, readiness, connection); the
    decisions and the lifecycle that use them are ``slurm_dev_cluster.stack.Stack``."""

    def __init__(
        self,
        repo_root: Path | None = None,
        *,
        project: str | None = None,
        state_dir: Path | None = None,
        client_call: list[str] | None = None,
        say: Say = say_stderr,
        project_source: Path | None = None,
        compose_files: Sequence[Path] = (),
        topology: Topology | None = None,
    ) -> None:
        self.repo_root = (repo_root or cluster_root()).resolve()
        # The project under test, mounted read-only at /opt/project (slurm_dev_cluster.kit); default: the
        # project around the current directory.
        self.project_source = (project_source or project_root_of(Path.cwd())).resolve()
        self.project = project or default_project(self.project_source)
        self.state_dir = state_dir or state_root() / self.project
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.say = say
        self.state = StackState(self.state_dir)
        #: What this stack should look like: given, else the environment, else what it was started with.
        self.topology = topology or Topology.resolve(os.environ, self.read_state().get("topology"))
        # A second cluster is an overlay of the kit's own (images/multicluster.compose.yaml).
        self.extra_compose_files = [
            *(Path(f).resolve() for f in compose_files),
            *(self.repo_root / f for f in self.topology.compose_overlays),
        ]
        self.events = EventLog(self.state_dir / "events.log")
        self._preflight_passed = False
        self.compose = ComposeProject(
            self.project,
            self.repo_root,
            [self.repo_root / "compose.yaml", *self.extra_compose_files],
            self.state_dir / "compose.env",
            events=self.events,
            say=say,
            client_call=client_call,
        )
        self.docker: DockerClient = self.compose.docker
        self.image_build = Images(self.compose, self.repo_root, self.state_dir)
        self.access = SSHAccess(self.compose, self.state_dir, say)
        self.login_port = LoginPort(self.state, self.compose, self._compose_env_file)
        self._compose_env_file()

    @classmethod
    def for_kit(cls, settings: KitSettings, say: Say = say_stderr, topology: Topology | None = None) -> Self:
        """The stack serving ``settings``' project (its own name, mount and compose files)."""
        return cls(
            settings.kit_root,
            project=settings.project,
            say=say,
            project_source=settings.project_dir,
            compose_files=settings.compose_files,
            topology=topology,
        )

    def inputs(self) -> str:
        """What the running containers must have been made from (``containers_inputs``)."""
        return containers_inputs(self.repo_root, self.project_source, self.extra_compose_files)

    # ---- the parts, by their old names (callers and tests use them) -----------------------------

    key_path = property(lambda self: self.access.key_path)
    key_removed_note = property(lambda self: self.access.key_removed_note)
    known_hosts_path = property(lambda self: self.access.known_hosts_path)
    state_file = property(lambda self: self.state.file)

    _last_inspection = _on_compose("last_inspection")
    _inspected_at = _on_compose("inspected_at")
    _login_id = _on_compose("login_id")
    _login_port = _on_compose("login_port")

    def _bounded(self, seconds: float, what: str) -> AbstractContextManager[DockerClient]:
        return self.compose.bounded(seconds, what)

    def _containers(self, max_age: float = 0.0) -> dict[str, ContainerInspectResult]:
        return self.compose.containers(max_age)

    def services(self) -> dict[str, str]:
        """State of each container of the project, e.g. ``{"login": "running (healthy)"}``."""
        return self.compose.services()

    def container_names(self) -> dict[str, str]:
        return {service: container.name.lstrip("/") for service, container in self._containers().items()}

    def exec(
        self, service: str, command: list[str], user: str | None = None, seconds: float | None = None
    ) -> str:
        """Run a command in a service's container (a compute node by its node name, ``c2``), bounded."""
        return self.compose.exec(service, command, user, seconds)

    def logs_tail(self, lines: int = 50, services: Iterable[str] = ()) -> str:
        return self.compose.logs_tail(lines, services)

    def daemon_logs_tail(self, lines: int = 50) -> str:
        """Tail of slurmctld.log and each slurmd.log, read inside the containers."""
        return self.compose.daemon_logs_tail(self.topology.node_names, lines)

    def read_state(self) -> dict:
        return self.state.read()

    def update_state(self, **changes: object) -> None:
        self.state.update(self.read_state(), **changes)

    @property
    def release(self) -> str:
        return debian_release()

    @property
    def image_tag(self) -> str:
        """``<release>-<inputs hash>``: an image with this tag was built from exactly these inputs."""
        return self.image_build.tag

    def images(self, repository: str | None = None) -> list[str]:
        """The images compose runs (``repository`` default: ``image_repository()``)."""
        return self.image_build.names(repository)

    def build(self, pull: bool = True) -> None:
        """Build (or, from $SLURM_SDK_IMAGE_REGISTRY, pull) the images unless they exist (``images``)."""
        self.image_build.build(pull)

    def refresh_wheelhouse(self, *, force: bool = False, strict: bool = False) -> bool:
        return self.image_build.refresh_wheelhouse(force=force, strict=strict)

    # ---- the login node's port and the compose settings -----------------------------------------

    def _compose_env_file(self) -> Path:
        # Empty port = Docker picks a free one, unless the stack pinned its login port (``pin_ssh_port``).
        # A SLURM_SDK_SSH_PORT in the environment wins over this file (compose gives the shell
        # environment precedence), so users can pin a port.
        # The image tag names the inputs it was built from, so checkouts with different images/ never
        # overwrite each other's image and a changed input can never start an old image.
        path = self.state_dir / "compose.env"
        settings = {
            "SLURM_SDK_SSH_PORT": str(self.read_state().get(PINNED_PORT_KEY) or ""),
            "SLURM_SDK_REST_PORT": str(self.read_state().get(REST_PORT_KEY) or ""),
            "SLURM_SDK_IMAGE_TAG": self.image_tag,
            "SLURM_SDK_IMAGE_REPOSITORY": image_repository(),
            "SLURM_SDK_PROJECT_SOURCE": str(self.project_source),
            "SLURM_SDK_PACKAGE_DIR": str(sdk_package_dir()),
        } | self.topology.compose_env()
        content = "".join(f"{name}={value}\n" for name, value in settings.items())
        if not path.exists() or path.read_text() != content:
            write_text_atomically(path, content)  # another process's compose may be reading it right now
        return path

    def pin_ssh_port(self, port: int | None) -> None:
        """Publish login's SSH port on ``port`` for the life of the stack (``LoginPort.pin``)."""
        self.login_port.pin(port)

    def keep_login_port(self, action: str) -> bool:
        """Pin login's port before containers are made (``LoginPort.keep``); True when the harness chose it."""
        return self.login_port.keep(action)

    def keep_rest_port(self, action: str) -> None:
        """Pin slurmrestd's port for the life of the stack (until ``down``), as login's is: Docker gives a
        restarted container a new ephemeral port, and every client's URL would go stale. SLURM_SDK_REST_PORT
        wins (compose reads it from the environment); a running slurmrestd keeps the port it has; a new
        one gets a free port chosen here. Without the profile ``rest`` there is nothing to keep."""
        if not rest_enabled() or os.environ.get(REST_PORT_SETTING) or self.read_state().get(REST_PORT_KEY):
            return
        running = None if action == "start" else self._containers().get(REST_SERVICE)
        port = published_ssh_port(running, REST_PORT_INSIDE) if running is not None else None
        self.update_state(**{REST_PORT_KEY: port or free_port()})
        self._compose_env_file()

    def rest_port_pinned(self) -> bool:
        """Whether the slurmrestd container asks Docker for a fixed host port (an empty one is ephemeral)."""
        container = self._containers().get(REST_SERVICE)
        bindings = (container.host_config.port_bindings or {}) if container is not None else {}
        return any(binding.host_port for binding in bindings.get(REST_PORT_INSIDE) or [])

    def login_port_taken(self, port: int, cause: str = "") -> StackError:
        return self.login_port.taken(port, cause)

    def _check_ssh_port(self) -> None:
        """The SSH port preflight check, run before containers are made (``LoginPort.check``)."""
        if self.login_port.needs_check():  # our own running login may hold the port
            self.login_port.check(login_running=self.services().get("login", "").startswith("running"))

    # ---- inspection ---------------------------------------------------------------------------

    @property
    def cluster_services(self) -> tuple[str, ...]:
        """Every container that runs Slurm's config and the SDK (repo mounted): slurmctld, each compute
        node by its node name (``c1``...), login; then each further cluster's controller and nodes."""
        further = (s for cluster in self.topology.further_clusters for s in cluster.services)
        return (FIXED_SERVICES[0], *self.topology.node_names, *FIXED_SERVICES[1:], *further)

    @property
    def expected_services(self) -> tuple[str, ...]:
        """Every long-running service: the cluster's, slurmdbd with accounting, slurmrestd with its profile."""
        return (
            self.cluster_services
            + ((ACCOUNTING_SERVICE,) if accounting_enabled() else ())
            + ((REST_SERVICE,) if rest_enabled() else ())
        )

    def status(self) -> Status:
        services = self.services()
        recorded = self.read_state().get("inputs_hash")
        current = None if recorded is None else recorded == self.inputs()
        port = self._login_port if services.get("login", "").startswith("running") else None
        ready = self.ready_services(services)
        return Status(
            self.project,
            self.state_dir,
            services,
            port,
            current,
            self.orphaned_by(),
            self.expected_services,
            ready,
        )

    def published_port(self, refresh: bool = True) -> int:
        """The login node's SSH port on 127.0.0.1, read afresh from Docker unless ``refresh`` is False (the
        caller inspected the containers just now)."""
        if refresh:
            self._containers()
        if self._login_port is None:
            raise StackError(
                f"the login container of {self.project} publishes no SSH port (is it running?); "
                "check compose.yaml's `ports:` for login, or `slurm-dev-cluster status`"
            )
        return self._login_port

    # ---- host checks and readiness -----------------------------------------------------------

    def preflight(self) -> None:
        """Host checks (Docker CLI, daemon, compose v2, SSH port) naming cause and fix; passes once per object."""
        if self._preflight_passed:
            return
        problems = preflight.run_checks(self.docker)  # Docker first: the port check asks it
        if problems:
            raise preflight.PreflightError(problems)
        self._check_ssh_port()
        self._preflight_passed = True

    @contextmanager
    def _explained_by_preflight(self) -> Iterator[None]:
        """A failing Docker call explained by the preflight checks, which the happy path skips (reusing a
        running stack or starting one: they cost two Docker CLI processes, a tenth of a warm start's CPU
        budget here): a missing compose v2 or a dead daemon still gets its cause and fix."""
        try:
            yield
        except (StackError, DockerException, ClientNotFoundError, OSError):
            self.preflight()  # raises PreflightError naming the host problem, if there is one
            raise

    def ready_services(self, services: dict[str, str]) -> tuple[str, ...]:
        """The expected services that are ready (``is_ready``), in order; state.json is read once."""
        ready_ids = frozenset(self.read_state().get("ready_containers") or ())
        return tuple(s for s in self.expected_services if self.is_ready(s, services.get(s, ""), ready_ids))

    def is_ready(self, service: str, state: str, ready_ids: Collection[str]) -> bool:
        """Healthy, or still "starting" (its first healthcheck not run yet) in a container that passed
        ``wait_until_ready`` (``ready_ids``: state.json's ``ready_containers``): that wait ends before
        Docker's first healthcheck tick."""
        if state == "running (healthy)":
            return True
        container = self._last_inspection.get(service)
        return state == "running (starting)" and container is not None and container.id in ready_ids

    # ---- ownership ----------------------------------------------------------------------------

    def orphaned_by(self, state: dict | None = None) -> str | None:
        """The session recorded as the stack's owner, when that session's process is gone; else None.
        Only test sessions record an owner: a stack the user started is never an orphan."""
        return self.state.orphaned_by(self.read_state() if state is None else state)

    # ---- access -------------------------------------------------------------------------------

    def connect_info(self, inspection_max_age: float = 0.0) -> Connection:
        """Port, copied client key (0600) and host key of the running stack; the containers are inspected
        unless the last inspection is at most ``inspection_max_age`` seconds old."""
        containers = self._containers(inspection_max_age)  # learns the login container's id and port, too
        port = self.published_port(refresh=False)
        host_key, _ = self.access.read_keys(port, self._login_id)
        names = {service: container.name.lstrip("/") for service, container in containers.items()}
        return Connection(self.project, SSH_HOST, port, SSH_USER, self.key_path, host_key, names)

    def rest_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running stack's slurmrestd (the profile ``rest``)."""
        container = self._containers(stack_wait.INSPECTION_FRESH_SECONDS).get(REST_SERVICE)
        port = published_ssh_port(container, REST_PORT_INSIDE) if container is not None else None
        if port is None:
            raise StackError(
                f"stack {self.project} has no slurmrestd publishing a port; fix: start it with "
                f"SLURM_SDK_COMPOSE_PROFILES={REST_PROFILE} (`slurm-dev-cluster up`)"
            )
        return f"http://{SSH_HOST}:{port}"

    def _recorded_connection(self, state: dict) -> Connection | None:
        return self.access.recorded(state, self._login_id, self._login_port)

    def probe(self, connection: Connection, quick: bool = False) -> list[str]:
        """Prove the stack works end to end (``SSHAccess.probe``); the nodes Slurm knows."""
        return self.access.probe(connection, lambda: self.daemon_logs_tail(20), quick)

    def wait_until_ready(
        self, timeout: float = UP_WAIT_SECONDS, clock: Clock | None = None
    ) -> tuple[Connection, list[str]]:
        """Wait until the stack takes jobs (``stack_wait.wait_until_ready``); the connection and the nodes."""
        return stack_wait.wait_until_ready(self, timeout, clock)
