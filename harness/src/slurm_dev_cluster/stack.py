"""The dev-cluster stack of one checkout: find it, start it, check it, stop it.

Every Docker/Compose call goes through python-on-whales. The compose project name is derived from
the checkout's absolute path, so two checkouts never share a stack and a checkout always finds its
own stack again. Per-project state (locks, copied SSH key, ``state.json``, ``events.log``,
``build.log``) lives in ``~/.cache/slurm-sdk-dev/<project>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import paramiko
from python_on_whales import DockerClient
from python_on_whales.client_config import ClientNotFoundError
from python_on_whales.components.container.models import ContainerInspectResult
from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run as docker_run

from slurm_dev_cluster import docker_deadline, preflight, ssh, wheelhouse
from slurm_dev_cluster.kit import SDK_MOUNT, KitSettings, cluster_root, definition_dir
from slurm_dev_cluster.locks import (
    SETUP_WAIT_SECONDS,
    Coordinator,
    EventLog,
    User,
    is_alive,
    process_start_time,
)
from slurm_dev_cluster.topology import Topology, node_number

#: Where the cluster's definition is read from: the slurm-sdk checkout for an editable kit (this repo's
#: tests), else the installed package's data. Builds use ``cluster_root()``, a writable copy of it.
REPO_ROOT = definition_dir()
#: Long-running services besides the compute nodes (`slurmdbd` comes with accounting).
FIXED_SERVICES = ("slurmctld", "login")
ACCOUNTING_SERVICE = "slurmdbd"
ACCOUNTING_VAR = "SLURM_SDK_ACCOUNTING"  # compose.yaml: slurmdbd's replicas, 1 (default) or 0
SSH_USER = "sdk"
UP_WAIT_SECONDS = 300  # a built stack takes jobs within ~3-40 s here, even at load 30
UP_BOUND_SECONDS = UP_WAIT_SECONDS + 120  # the whole `compose up`: creating containers, then the wait
READY_POLL_SECONDS = 0.1  # ``wait_until_ready``: how often Slurm is asked over the one SSH connection
INSPECT_EVERY_SECONDS = 1.0  # ... and how often Docker, to fail at once when a container stopped
#: An inspection at most this old is current enough for ``wait_until_ready`` to connect from: it inspected
#: the containers a moment before, and nothing of ours recreates one while it waits.
INSPECTION_FRESH_SECONDS = 0.5
NOT_READY = 75  # READY_CHECK's exit status while something is still starting (EX_TEMPFAIL)
SSH_HOST = "127.0.0.1"
CLIENT_KEY_IN_STACK = "/etc/slurm-sdk/ssh/client_ed25519"
HOST_KEY_IN_STACK = "/etc/slurm-sdk/ssh/host_ed25519.pub"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"  # labels compose puts on every container it makes
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"
IMAGE_REPOSITORY = "slurm-sdk-dev"  # compose.yaml's image name (without a registry)
#: Registry (``HOST:PORT`` or ``ghcr.io/owner``) to pull the images from instead of building them.
IMAGE_REGISTRY_ENV = "SLURM_SDK_IMAGE_REGISTRY"
#: images/healthcheck.sh as installed in the image (/usr/local/sbin is not on a user's PATH): the one home of
#: the node states that count as ready and of how the cluster's name is read (READY_CHECK asks it).
HEALTHCHECK_IN_STACK = "/usr/local/sbin/healthcheck.sh"
#: What `wait_until_ready` asks over SSH until it exits 0: slurmctld answers, has registered with slurmdbd
#: (with accounting: from then on sacct sees jobs), and every node of the topology is registered and usable.
#: While something is still starting it prints what and exits NOT_READY.
READY_CHECK = """not_yet() {{ echo "$1"; exit {not_ready}; }}
(exec 3<>/dev/tcp/slurmctld/6817) 2>/dev/null || not_yet "slurmctld to listen"
scontrol ping 2>/dev/null | grep -q 'is UP' || not_yet "slurmctld to answer"
{accounting}unready=$({healthcheck} unready-nodes {nodes})
[ -z "$unready" ] || not_yet "nodes to register and be idle (not yet: ${{unready% }})"
"""
ACCOUNTING_READY_CHECK = """sacctmgr -n -P show cluster "$({healthcheck} cluster-name)" format=controlhost 2>/dev/null \\
  | grep -q . || not_yet "slurmctld to register with slurmdbd"
"""
#: The nodes Slurm knows (one line each), then a tiny job run on a node with `srun`: an interactive
#: allocation is granted inside the request, while a batch job waits for the scheduler's next pass (up
#: to 1 s: slurmctld's background loop runs once a second), then the poll that sees it finish.
PROBE_TIMEOUT_SECONDS = 60
PROBE_JOB = f"""sinfo -h -N -o %N | sort -u
timeout {PROBE_TIMEOUT_SECONDS} srun --quiet -J harness-probe -N1 -n1 true || {{
  echo "probe job (srun true) failed or did not end within {PROBE_TIMEOUT_SECONDS} s (exit $?)" >&2; exit 1; }}"""
SLURMCTLD_LOG = "/var/log/slurm/slurmctld.log"
SLURMD_LOG = "/var/log/slurm/slurmd.log"
#: state.json key: the login node's SSH port (``Stack.pin_ssh_port``): the one the stack was first given
#: (SLURM_SDK_SSH_PORT, else a free port the harness chose), kept until ``down`` (``Stack.keep_login_port``).
PINNED_PORT_KEY = "pinned_ssh_port"
#: What Docker says when a container cannot publish its port because something else holds it now.
PORT_TAKEN = ("port is already allocated", "address already in use")
#: Starts tried on another free port when the one the harness chose was taken before Docker bound it.
CHOSEN_PORT_ATTEMPTS = 3
#: Files whose content decides the images and containers (the Dockerfile COPYs pyproject.toml).
INPUT_FILES = ("compose.yaml", "pyproject.toml")
INPUT_DIRS = ("images",)
#: Derived from pyproject.toml and the release (both inputs already) and rewritten by builds, so it is not
#: hashed itself: a session's expected hash must not move when the harness refreshes it before a build.
INPUT_EXCLUDED = (wheelhouse.WHEELHOUSE_DIR,)
INPUT_ENV = ("DEBIAN_RELEASE", "SLURM_SDK_COMPOSE_PROFILES")
#: 1: the login node's sshd allows TCP and agent forwarding (default: none; images/sshd_config).
SSH_FORWARDING_VAR = "SLURM_SDK_SSH_FORWARDING"

Say = Callable[[str], None]


class StackError(RuntimeError):
    """The stack could not be brought to a usable state; the message says why and what to do."""


def say_stderr(message: str) -> None:
    print(f"[harness] {message}", file=sys.stderr, flush=True)


def project_name_for(repo_root: Path) -> str:
    """``slurmsdk-<dir>-<sha1(path)[:8]>``: stable per checkout, distinct between checkouts."""
    resolved = repo_root.resolve()
    slug = re.sub(r"[^a-z0-9]+", "-", resolved.name.lower()).strip("-")[:30] or "repo"
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
    return f"slurmsdk-{slug}-{digest}"


def project_root_of(directory: Path) -> Path:
    """The nearest directory at or above ``directory`` that holds a project (pyproject.toml, setup.py or
    .git), else ``directory``: the CLI serves the same project from any of its subdirectories."""
    directory = directory.resolve()
    for candidate in (directory, *directory.parents):
        if any((candidate / marker).exists() for marker in ("pyproject.toml", "setup.py", ".git")):
            return candidate
    return directory


#: The Debian release the images are built from when DEBIAN_RELEASE is unset (compose.yaml says the same).
DEFAULT_RELEASE = "trixie"


def debian_release() -> str:
    """The Debian release the nodes are built from ($DEBIAN_RELEASE), which decides the Slurm version."""
    return os.environ.get("DEBIAN_RELEASE") or DEFAULT_RELEASE


def default_project(repo_root: Path) -> str:
    """The checkout's project, plus ``-<release>`` for a release other than the default: slurmctld's state
    and the accounting database are kept in volumes in a Slurm version's own format (an older slurmctld
    cannot read a newer one's), so each release's stack has its own volumes, state dir and containers."""
    if os.environ.get("SLURM_SDK_PROJECT"):
        return os.environ["SLURM_SDK_PROJECT"]
    release = debian_release()
    suffix = "" if release == DEFAULT_RELEASE else f"-{release}"
    return project_name_for(repo_root) + suffix


def state_root() -> Path:
    if os.environ.get("SLURM_SDK_STATE_HOME"):
        return Path(os.environ["SLURM_SDK_STATE_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "slurm-sdk-dev"


def inputs_hash(repo_root: Path) -> str:
    """sha256 over compose.yaml, pyproject.toml, every file under images/ and the build env vars."""
    digest = hashlib.sha256()
    paths = [repo_root / name for name in INPUT_FILES]
    for directory in INPUT_DIRS:
        paths += sorted(
            p for p in (repo_root / directory).rglob("*") if p.is_file() and not _excluded(p, repo_root)
        )
    for path in paths:
        digest.update(str(path.relative_to(repo_root)).encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
        digest.update(b"\0")
    for name in INPUT_ENV:
        digest.update(f"{name}={os.environ.get(name, '')}\0".encode())
    return digest.hexdigest()


def containers_inputs(repo_root: Path, project_source: Path, compose_files: Sequence[Path] = ()) -> str:
    """The image inputs, plus what the containers mount (the project's source, the SDK package) and the
    extra compose files: a change to any of them recreates the containers."""
    images = inputs_hash(repo_root)
    # The login node reads its forwarding setting at start (images/entrypoint.sh): a change recreates it.
    forwarding = os.environ.get(SSH_FORWARDING_VAR, "0")
    digest = hashlib.sha256(
        f"{images}\0project={project_source.resolve()}\0sdk={sdk_package_dir()}\0{SSH_FORWARDING_VAR}={forwarding}".encode()
    )
    for path in compose_files:
        digest.update(f"\0{path}\0".encode() + Path(path).read_bytes())
    return digest.hexdigest()


def sdk_package_dir() -> Path:
    """The directory of the ``slurm`` package this host imports: the nodes import the same files (it is
    mounted read-only over the image's editable install), so the SDK on both sides is one version."""
    import slurm  # the SDK (a dependency of the kit); imported only when a stack is configured

    return Path(slurm.__file__).resolve().parent


def stack_inputs(settings: KitSettings) -> str:
    """``containers_inputs`` of the stack serving ``settings`` (computed without touching its state)."""
    return containers_inputs(settings.kit_root, settings.project_dir, settings.compose_files)


def _excluded(path: Path, repo_root: Path) -> bool:
    return any(path.is_relative_to(repo_root / excluded) for excluded in INPUT_EXCLUDED)


def image_repository() -> str:
    """``slurm-sdk-dev``, or ``<registry>/slurm-sdk-dev`` when $SLURM_SDK_IMAGE_REGISTRY names a registry."""
    registry = os.environ.get(IMAGE_REGISTRY_ENV, "").strip().rstrip("/")
    return f"{registry}/{IMAGE_REPOSITORY}" if registry else IMAGE_REPOSITORY


def accounting_enabled() -> bool:
    """Accounting (slurmdbd + MariaDB, so sacct works) is on unless SLURM_SDK_ACCOUNTING=0."""
    value = os.environ.get(ACCOUNTING_VAR, "1").strip() or "1"
    if value not in ("0", "1"):
        raise StackError(f"{ACCOUNTING_VAR}={value!r}: use 1 (accounting, the default) or 0 (none)")
    return value == "1"


def compose_profiles() -> list[str]:
    """Extra compose profiles, e.g. SLURM_SDK_COMPOSE_PROFILES=a,b (accounting is not one: it is on by default)."""
    return [p.strip() for p in os.environ.get("SLURM_SDK_COMPOSE_PROFILES", "").split(",") if p.strip()]


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


@dataclass(frozen=True)
class UpResult:
    connection: Connection
    action: str  # "reused", "started" or "rebuilt"


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


class Stack:
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
        self.extra_compose_files = [Path(f).resolve() for f in compose_files]
        self.project = project or default_project(self.project_source)
        self.state_dir = state_dir or state_root() / self.project
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.say = say
        #: What this stack should look like: given, else the environment, else what it was started with.
        self.topology = topology or Topology.resolve(os.environ, self.read_state().get("topology"))
        self.events = EventLog(self.state_dir / "events.log")
        self._preflight_passed = False
        self._last_inspection: dict[str, ContainerInspectResult] = {}  # by the last services() call
        self._inspected_at = -float("inf")  # time.monotonic() of that call
        self._login_id: str | None = None  # id of the login container seen by the last services() call
        self._login_port: int | None = None  # its published SSH port, read from the same inspection
        self.docker = DockerClient(
            client_call=client_call or ["docker"],
            compose_files=[self.repo_root / "compose.yaml", *self.extra_compose_files],
            compose_project_name=self.project,
            compose_project_directory=self.repo_root,
            compose_env_files=[self._compose_env_file()],
            compose_profiles=compose_profiles(),
        )

    @classmethod
    def for_kit(cls, settings: KitSettings, say: Say = say_stderr, topology: Topology | None = None) -> Stack:
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

    # ---- paths and recorded state -------------------------------------------------------------

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

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def read_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def update_state(self, **changes: object) -> None:
        _write_atomically(self.state_file, json.dumps(self.read_state() | changes, indent=2))

    def _compose_env_file(self) -> Path:
        # Empty port = Docker picks a free one, unless the stack pinned its login port (``pin_ssh_port``).
        # A SLURM_SDK_SSH_PORT in the environment wins over this file (compose gives the shell
        # environment precedence), so users can pin a port.
        # The image tag names the inputs it was built from, so checkouts with different images/ never
        # overwrite each other's image and a changed input can never start an old image.
        path = self.state_dir / "compose.env"
        settings = {
            "SLURM_SDK_SSH_PORT": str(self.read_state().get(PINNED_PORT_KEY) or ""),
            "SLURM_SDK_IMAGE_TAG": self.image_tag,
            "SLURM_SDK_IMAGE_REPOSITORY": image_repository(),
            "SLURM_SDK_PROJECT_SOURCE": str(self.project_source),
            "SLURM_SDK_PACKAGE_DIR": str(sdk_package_dir()),
        } | self.topology.compose_env()
        content = "".join(f"{name}={value}\n" for name, value in settings.items())
        if not path.exists() or path.read_text() != content:
            _write_atomically(path, content)  # another process's compose may be reading it right now
        return path

    def pin_ssh_port(self, port: int | None) -> None:
        """Publish login's SSH port on ``port`` for the life of the stack (None: an ephemeral port again).

        Every compose call reads compose.env, and the port is part of the login service's config: were
        it pinned for one call only, the next `compose up` would see login's config change and recreate
        it on a new ephemeral port, cutting every SSH session (the reshape bug). So the pin is recorded in
        state.json, which compose.env is written from, and lasts until ``down``."""
        self.update_state(**{PINNED_PORT_KEY: port})
        self._compose_env_file()

    def keep_login_port(self, action: str) -> bool:
        """Pin login's port before containers are made, so restarting, recreating or re-shaping login keeps
        the port the stack was first given: SLURM_SDK_SSH_PORT when set, else (a new stack) a free port
        chosen here, where Docker's ephemeral choice was made anew on every start of the container; a
        stack started before ports were kept keeps the port it has now. True when the harness chose it."""
        setting = os.environ.get("SLURM_SDK_SSH_PORT")
        pinned = self.read_state().get(PINNED_PORT_KEY)
        if setting and setting.isdigit():
            if int(setting) != pinned:
                self.pin_ssh_port(int(setting))
            return False
        if pinned:
            return False
        if action != "start" and self._login_port:
            self.pin_ssh_port(self._login_port)
            return False
        self.pin_ssh_port(_free_port())
        return True

    def login_port_taken(self, port: int, cause: str = "") -> StackError:
        """The error for a login node that cannot get its kept port back: said at once, naming the holder."""
        holder = preflight.port_holder(self.docker, port)
        return StackError(
            f"the login node of {self.project} keeps 127.0.0.1:{port}, the port the stack was first given, "
            f"but {holder.who} holds it now{': ' + cause if cause else ''}\n"
            f"fix: {holder.fix}; or `slurm-dev-cluster down` then `up` (a new stack gets a new port)"
        )

    # ---- inspection ---------------------------------------------------------------------------

    @property
    def cluster_services(self) -> tuple[str, ...]:
        """Every container that runs Slurm's config and the SDK (repo mounted): slurmctld, each compute
        node by its node name (``c1``...), login."""
        return (FIXED_SERVICES[0], *self.topology.node_names, *FIXED_SERVICES[1:])

    @property
    def expected_services(self) -> tuple[str, ...]:
        """Every long-running service: the cluster's, and slurmdbd with accounting."""
        return self.cluster_services + ((ACCOUNTING_SERVICE,) if accounting_enabled() else ())

    def _containers(self, max_age: float = 0.0) -> dict[str, ContainerInspectResult]:
        """The project's containers by service, a compute node's by its node name, as one `docker ps` and
        one `docker inspect` saw them (both bounded: ``_inspecting``); remembers the login container's id
        and published SSH port (the one the stack keeps, ``keep_login_port``). An inspection at
        most ``max_age`` seconds old is returned as it is (default: Docker is always asked)."""
        if time.monotonic() - self._inspected_at <= max_age:
            return self._last_inspection
        containers = {_service_or_node(c): c for c in self._inspect_all()}
        self._last_inspection, self._inspected_at = containers, time.monotonic()
        login = containers.get("login")
        self._login_id = login.id if login else None
        self._login_port = _published_ssh_port(login) if login else None
        return containers

    def _bounded(self, seconds: float, what: str) -> AbstractContextManager[DockerClient]:
        """The Docker client for one call that must end within ``seconds`` (``slurm_dev_cluster.docker_deadline``)."""
        return docker_deadline.bounded(self.docker, seconds, what)

    def _inspect_all(self) -> list[ContainerInspectResult]:
        """Every container of the project in one `docker inspect` (python-on-whales' Container objects
        inspect again on each attribute read: ~3 inspections per container, a second per stack here).

        Listed by compose's project label with plain `docker ps` (what `compose ps` does, without loading
        the compose project: 0.03 s against 0.13-0.26 s of CPU-bound work per call here, and a start
        inspects several times while MariaDB needs the CPU)."""
        with self._inspecting() as docker:
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

    def _inspecting(self) -> AbstractContextManager[DockerClient]:
        return self._bounded(docker_deadline.INSPECT_SECONDS, "docker ps/inspect")

    def services(self) -> dict[str, str]:
        """State of each container of the project, e.g. ``{"login": "running (healthy)"}``."""
        result = {}
        for service, container in self._containers().items():
            state = container.state
            text = state.status
            if state.status == "running" and state.health is not None:
                text += f" ({state.health.status})"
            elif state.status == "exited":
                text += f" ({state.exit_code})"
            result[service] = text
        return result

    def container_names(self) -> dict[str, str]:
        return {service: container.name.lstrip("/") for service, container in self._containers().items()}

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

    # ---- lifecycle ----------------------------------------------------------------------------

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

    def _plan_explained(self, expected: str) -> tuple[str, str]:
        """``plan``, with a failing Docker call explained by the preflight checks."""
        with self._explained_by_preflight():
            return self.plan(expected)

    def _check_ssh_port(self) -> None:
        """The one preflight check no Docker error would explain well, run before containers are made:
        a fixed SLURM_SDK_SSH_PORT that something else holds."""
        setting = os.environ.get("SLURM_SDK_SSH_PORT")
        kept = self.read_state().get(PINNED_PORT_KEY)
        if not setting and not kept:
            return
        running = self.services().get("login", "").startswith("running")  # our own login may hold it
        problem = preflight.check_ssh_port(setting, stack_running=running, docker=self.docker)
        if problem:
            raise preflight.PreflightError([problem])
        if kept and not setting and not running and not _port_free(kept):
            raise self.login_port_taken(kept)

    def plan(self, expected: str | None = None) -> tuple[str, str]:
        """What ``ensure_up`` would do: ("reuse" | "start" | "rescale" | "reconfigure" | "complete" |
        "rebuild", why).

        "rescale": only the number of compute nodes differs, so only the node services are touched;
        "reconfigure": GPUs or partitions changed, which every node (login too) is recreated for."""
        expected = expected or self.inputs()
        recorded = self.read_state().get("inputs_hash")
        services = self.services()
        running = sorted(s for s, v in services.items() if v.startswith("running"))
        if not running:
            return "start", f"starting stack {self.project} (state: {self.state_dir})"
        if recorded != expected:
            why = (
                "no record of what it was built from"
                if recorded is None
                else "compose.yaml, pyproject.toml, images/, DEBIAN_RELEASE or the project mounted changed since it was built"
            )
            return "rebuild", f"stack {self.project} is running but {why}: rebuilding and recreating it"
        if self.read_state().get("accounting", True) != accounting_enabled():
            # Every node decides at its start whether accounting is on: all of them start again.
            return "rebuild", f"stack {self.project}: {ACCOUNTING_VAR} changed: recreating it"
        reshape = self._reshape(services)
        if reshape:
            return reshape[0], f"stack {self.project}: {reshape[1]}"
        if self.ready_services(services) == self.expected_services:
            return "reuse", f"reusing stack {self.project}"
        return "complete", f"stack {self.project} is partly up ({', '.join(running)}); completing it"

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

    def ensure_up(
        self, session: str = "cli", expected: str | None = None, owner_pid: int | None = None
    ) -> UpResult:
        """Reuse the running stack if it was built from the current inputs; otherwise (re)build and start.

        ``expected`` is the inputs hash the caller wants (a pytest session pins the one it started with,
        so all its workers agree even if files change meanwhile). ``owner_pid``: the process whose end
        ends the session (the xdist controller); a stack whose recorded owner died is adopted (see
        ``adopt_if_orphaned``). Callers serialise this with ``Coordinator.exclusive()`` (see
        ``ensure_up_shared``) so only one process runs compose up.
        """
        expected = expected or self.inputs()
        action, why = self._plan_explained(expected)
        if action != "start":
            self.adopt_if_orphaned(session, owner_pid)
        state = self.read_state()
        if action == "reuse":
            self.keep_login_port(action)  # a stack started before ports were kept: its port from now on
            self._reset_abandoned_faults(state)
            connection = self._recorded_connection(state) or self.connect_info()
            if state.get("verified_by") != session:
                self.probe(connection, quick=True)  # it passed the full probe when it was started
                self.update_state(verified_by=session)
            self._remember(connection)
            self.events.record("reuse", project=self.project, session=session)
            return UpResult(connection, "reused")
        self._check_ssh_port()  # containers are about to be made
        chosen = self.keep_login_port(action)
        self.say(why)
        if action == "start":  # claim it first: if we crash halfway, our session still stops what we began
            self.update_state(started_by=session, owner=_owner_record(owner_pid), teardown_requested=False)
            state = self.read_state()
        with self._explained_by_preflight():
            self.build()
        if action == "rescale":
            with self._explained_by_preflight():
                self.rescale(session=session)
            connection = self.connect_info()
            nodes = self.probe(connection)
        else:
            if action == "reconfigure":
                self._prepare_reconfigure()
            with self._explained_by_preflight():
                self._up_on_kept_port(action, chosen, session)
            connection, nodes = self.wait_until_ready()
        self.forget_removed_nodes(nodes)
        # Rebuilding or completing someone else's stack does not make it ours to tear down; fresh
        # containers carry no fault.
        self.update_state(
            inputs_hash=expected,
            verified_by=session,
            started_by=state.get("started_by", "unknown"),
            owner=state.get("owner"),
            started_at=time.time(),
            faults={},
            topology=self.topology.to_record(),
            accounting=accounting_enabled(),
            # As inspected during the wait (after `compose up`): no extra `docker inspect` on the way.
            ready_containers=sorted(c.id for c in self._last_inspection.values()),
        )
        self._remember(connection)
        return UpResult(connection, "rebuilt" if action == "rebuild" else "started")

    def _up_on_kept_port(self, action: str, chosen: bool, session: str) -> None:
        """``up``; when login cannot publish its kept port, another free port if the harness chose it for
        this start (taken between the choice and Docker's bind), else the error at once."""
        for attempt in range(1, CHOSEN_PORT_ATTEMPTS + 1):
            try:
                self.up(force_recreate=action == "rebuild", session=session)
                return
            except StackError as exc:
                port = self.read_state().get(PINNED_PORT_KEY)
                if not port or not any(words in str(exc) for words in PORT_TAKEN):
                    raise
                if not chosen or attempt == CHOSEN_PORT_ATTEMPTS:
                    raise self.login_port_taken(port, "`docker compose up` could not publish it") from None
                self.say(f"port {port} was taken before Docker bound it: starting on another free port")
                self.pin_ssh_port(_free_port())

    def _reshape(self, services: dict[str, str]) -> tuple[str, str] | None:
        """("rescale" | "reconfigure" | "complete", why) when the running stack's shape is not the wanted one.

        "rescale" when only the node count differs and the other services are healthy: a topology's GPUs
        and partitions are in every node's environment (all of them are recreated), its node count only
        in which node services (c1..cN) run."""
        recorded = self.read_state().get("topology")
        if recorded and replace(Topology.from_record(recorded), nodes=self.topology.nodes) != self.topology:
            return "reconfigure", f"topology changed to {self.topology}: recreating what it affects"
        running_nodes = sorted((s for s in services if node_number(s)), key=node_number)
        if running_nodes == list(self.topology.node_names):
            return None
        others = [s for s in self.expected_services if not node_number(s)]
        healthy = all(services.get(s) == "running (healthy)" for s in others)
        why = f"{len(running_nodes)} compute node(s) run, {self.topology.nodes} wanted: rescaling"
        return ("rescale" if healthy else "complete"), why

    def _prepare_reconfigure(self) -> None:
        """Before GPUs or partitions change (every node, login too, is recreated; login on its kept port, so
        it comes back where open sessions look for it): stop the node services and delete their nodes from
        Slurm. A dynamic node keeps the GPUs it first registered with in slurmctld's state (on its volume,
        so a recreated slurmctld too), and one that comes back with another count is refused (INVAL,
        "gres/gpu count reported lower than configured"); deleted, it registers afresh."""
        nodes = [name for name in self.services() if node_number(name)]
        if not nodes:
            return
        with self._bounded(docker_deadline.DOWN_SECONDS, "docker compose stop") as docker:
            docker.compose.stop(nodes, timeout=2)
        try:
            self.exec("slurmctld", ["scontrol", "delete", f"nodename={','.join(nodes)}"])
        except DockerException as exc:  # jobs still allocated there: Slurm refuses, say so
            raise StackError(
                f"cannot change the GPUs or partitions of {self.project}: Slurm keeps nodes {','.join(nodes)} "
                f"({preflight._first_line(exc)})\nfix: wait for their jobs to end (or `scancel -u sdk`), "
                "then `harness up` again; or `slurm-dev-cluster down` then `up` with the new topology"
            ) from None

    def forget_removed_nodes(self, known: Sequence[str] | None = None) -> list[str]:
        """Delete from Slurm the compute nodes the topology no longer has (their containers are gone after
        a scale-down, but slurmctld keeps a registered node, DOWN, until told). ``known``: the nodes Slurm
        lists (sinfo), asked for here when not given."""
        if known is None:
            known = self.exec("slurmctld", ["sinfo", "-h", "-N", "-o", "%N"]).split()
        removed = sorted(
            {n for n in known if node_number(n)} - set(self.topology.node_names), key=node_number
        )
        for node in removed:
            try:
                self.exec("slurmctld", ["scontrol", "delete", f"nodename={node}"])
            except DockerException as exc:  # jobs still allocated there: Slurm refuses, say so
                self.say(
                    f"warning: node {node} was scaled away but Slurm keeps it: {preflight._first_line(exc)}"
                )
        return removed

    def _remember(self, connection: Connection) -> None:
        """Record the connection for the next reuse, if anything about it changed (port, login container)."""
        state = self.read_state()
        record = dict(
            port=connection.port,
            host_key=connection.host_key,
            login_id=self._login_id,
            containers=connection.containers,
        )
        if any(state.get(key) != value for key, value in record.items()):
            self.update_state(**record)

    # ---- ownership ----------------------------------------------------------------------------

    def orphaned_by(self, state: dict | None = None) -> str | None:
        """The session recorded as the stack's owner, when that session's process is gone; else None.

        Only test sessions record an owner: a stack started with ``slurm-dev-cluster up`` (or kept with
        --keep-cluster) belongs to the user and is never an orphan.
        """
        state = self.read_state() if state is None else state
        owner = state.get("owner")
        if not owner or is_alive(User(owner["pid"], owner.get("start_time", ""), "", "")):
            return None
        return str(state.get("started_by", "unknown"))

    def adopt_if_orphaned(self, session: str, owner_pid: int | None) -> None:
        """Documented default: a stack whose owning test session died (a SIGKILLed xdist controller
        never tears down) is *adopted* by the next caller. A test session then stops it at its end as if
        it had started it; ``harness up`` takes it over for the user (left up, as every stack it starts)."""
        previous = self.orphaned_by()
        if previous is None or previous == session:
            return
        self.update_state(started_by=session, owner=_owner_record(owner_pid), teardown_requested=False)
        self.events.record("adopt", project=self.project, session=session, previous=previous)
        self.say(
            f"adopting stack {self.project}: the test session that started it ({previous}) died without "
            "stopping it" + ("; this session stops it at its end" if owner_pid else "; it stays up")
        )

    def _reset_abandoned_faults(self, state: dict) -> None:
        """Undo faults left on by a process that died (a killed test); a live owner resets its own."""
        from slurm_dev_cluster.faults import Faults  # faults builds on this module

        faults = Faults(self)
        if state.get("faults") and not faults.owner_alive():
            self.say(f"resetting faults left on by a process that ended: {', '.join(faults.active())}")
            faults.reset()
            self._containers()  # the login container may have been recreated: new id, port

    def ensure_up_shared(
        self,
        coordinator: Coordinator,
        session: str,
        expected: str | None = None,
        timeout: float = SETUP_WAIT_SECONDS,
        poll: float = 2.0,
        owner_pid: int | None = None,
    ) -> UpResult:
        """``ensure_up`` under the setup lock; a rebuild waits until no other session uses the stack.

        Recreating containers under another pytest session would break its running tests, so we wait
        (without holding the lock, so that session's late workers can still attach) and say why.
        """
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            with coordinator.exclusive(say=self.say, timeout=timeout):
                action, _ = self._plan_explained(expected or self.inputs())
                others = coordinator.live_users(exclude_session=session) if action == "rebuild" else []
                if not others:
                    return self.ensure_up(session, expected, owner_pid)
            if time.monotonic() > deadline:
                raise StackError(
                    f"stack {self.project} must be rebuilt (its inputs changed) but pid(s) "
                    f"{_pids(others)} still use it after {timeout:.0f} s; stop them, or run "
                    "this elsewhere with SLURM_SDK_PROJECT=<another name>"
                )
            if not announced:
                self.say(
                    f"stack {self.project} must be rebuilt (inputs changed) but other test sessions use it "
                    f"(pid {_pids(others)}); waiting for them to finish"
                )
                announced = True
            time.sleep(poll)

    @property
    def release(self) -> str:
        return debian_release()

    @property
    def image_tag(self) -> str:
        """``<release>-<inputs hash>``: an image with this tag was built from exactly these inputs."""
        return f"{self.release}-{inputs_hash(self.repo_root)[:12]}"

    def images(self, repository: str | None = None) -> list[str]:
        """The images compose runs (``repository`` default: ``image_repository()``)."""
        suffixes = [""] + (["-accounting"] if accounting_enabled() else [])
        return [f"{repository or image_repository()}:{self.image_tag}{suffix}" for suffix in suffixes]

    def build(self, pull: bool = True) -> None:
        """Build the images unless images tagged with these inputs exist (a warm start then skips even
        the cached build); echoes step headers, full log in build.log. With $SLURM_SDK_IMAGE_REGISTRY
        set (and ``pull``), the images published for these inputs are pulled instead when the registry
        has them (slurm_dev_cluster.images)."""
        missing = self._missing_images()
        if not missing:
            return
        if pull and image_repository() != IMAGE_REPOSITORY:
            from slurm_dev_cluster import images  # images builds on this module

            if images.pull(self, missing):
                return
        self.refresh_wheelhouse()
        log_path = self.state_dir / "build.log"
        self.say(f"building images (full log: {log_path})")
        started = time.monotonic()
        tail: list[str] = []
        try:
            with (
                log_path.open("w") as log,
                self._bounded(docker_deadline.BUILD_SECONDS, "docker compose build") as docker,
            ):
                for line in _lines(docker.compose.build(stream_logs=True), unique=False):
                    log.write(line + "\n")
                    tail = ([*tail, line])[-40:]
                    if _is_build_step(line):
                        self.say(f"  {line[:150]}")
        except DockerException as exc:
            raise StackError(
                "image build failed; last lines:\n"
                + "\n".join(tail)
                + f"\nfull log: {log_path}\n{preflight._first_line(exc)}"
            ) from None
        self.say(f"images ready in {time.monotonic() - started:.0f} s")

    def _missing_images(self) -> list[str]:
        """Which of ``images()`` this host lacks, in one `docker image ls` (not a call per image)."""
        wanted = self.images()
        references = [arg for image in wanted for arg in ("--filter", f"reference={image}")]
        with self._bounded(docker_deadline.INSPECT_SECONDS, "docker image ls") as docker:
            listed = docker_run(
                [*docker.docker_cmd, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", *references]
            )
        present = set(str(listed).split())
        return [image for image in wanted if image not in present]

    def refresh_wheelhouse(self, *, force: bool = False, strict: bool = False) -> bool:
        """Fill images/wheelhouse/<release>/ with pyproject.toml's dependencies for the nodes (no-op while
        current). A failed download only warns unless ``strict``: the Debian packages may satisfy
        everything, and if not, the image build fails naming the fix."""
        try:
            with self._bounded(docker_deadline.ANSWER_SECONDS, "docker info") as docker:
                architecture = docker.system.info().architecture
            target = wheelhouse.target_for(self.release, architecture)
            return wheelhouse.ensure(self.repo_root, target, self.say, force=force)
        except wheelhouse.WheelhouseError as exc:
            if strict:
                raise StackError(str(exc)) from None
            self.say(f"warning: {exc}\nbuilding with the wheelhouse as it is")
            return False

    def up(self, *, force_recreate: bool = False, session: str = "cli") -> None:
        """`docker compose up -d`: every container created and started; ``wait_until_ready`` then waits
        for Slurm itself rather than for compose's healthchecks (see there)."""
        self.say("docker compose up -d" + (" --force-recreate" if force_recreate else ""))
        self._compose_up(session, force_recreate=force_recreate, wait=False)

    def wait_until_ready(self, timeout: float = UP_WAIT_SECONDS) -> tuple[Connection, list[str]]:
        """Wait until the stack takes jobs, checked the way a user reaches it: SSH login with the key,
        ``READY_CHECK`` (slurmctld answers, is registered with slurmdbd, every node usable) every 0.1 s on
        that one connection, then ``PROBE_JOB``; returns the connection and the nodes Slurm knows.

        It ends as soon as Slurm is ready: compose's `up --wait` ends later on this Docker (20.10 runs
        a container's first healthcheck an interval (compose.yaml: 2 s) after its start, with no
        start_interval, and compose looks at the health every 0.5 s). The healthchecks stay, for
        `docker compose up --wait` and `harness status`. It fails at once when a container stops, and at
        the deadline says what it was still waiting for."""
        self.say("waiting until Slurm takes jobs (SSH login, slurmctld, every node, a tiny job)")
        deadline = time.monotonic() + timeout
        next_inspection = 0.0
        waiting_for = "the login container's SSH keys"
        connection: Connection | None = None
        client: paramiko.SSHClient | None = None
        check = self._ready_check()
        try:
            while True:
                now = time.monotonic()
                if now > deadline:
                    raise StackError(
                        f"stack {self.project} did not take jobs within {timeout:.0f} s: still waiting for "
                        f"{waiting_for}\n--- compose logs (tail) ---\n{self.logs_tail(30)}"
                        "\nfix: read the logs above (`slurm-dev-cluster logs`); "
                        "`slurm-dev-cluster down` then `up` starts from scratch"
                    )
                if now >= next_inspection:
                    self._fail_if_a_container_stopped()
                    next_inspection = now + INSPECT_EVERY_SECONDS
                try:
                    if connection is None:
                        connection = self.connect_info(INSPECTION_FRESH_SECONDS)
                        waiting_for = "sshd on the login node"
                    if client is None:
                        client = ssh.connect(
                            connection.host,
                            connection.port,
                            connection.user,
                            connection.key_path,
                            connection.host_key,
                        )
                    code, out, err = ssh.run(client, check)
                except docker_deadline.DockerTimeout:
                    raise  # dockerd itself hangs: waiting longer will not help
                except Exception as exc:  # not up yet: no login container, no keys, sshd not listening
                    waiting_for = f"{waiting_for.split(' (last error')[0]} (last error: {_one_line(exc)})"
                    if client is not None:  # sshd restarted under us: the next try opens a new one
                        client.close()
                        client = None
                    time.sleep(READY_POLL_SECONDS)
                    continue
                if code == 0:
                    break
                if code != NOT_READY:
                    raise StackError(f"readiness check failed (exit {code}): {err.strip() or out.strip()}")
                waiting_for = out.strip()
                time.sleep(READY_POLL_SECONDS)
            self.say("probe: a tiny job (srun)")
            return connection, self._run_probe(client)
        finally:
            if client is not None:
                client.close()

    def _ready_check(self) -> str:
        accounting = (
            ACCOUNTING_READY_CHECK.format(healthcheck=HEALTHCHECK_IN_STACK) if accounting_enabled() else ""
        )
        return READY_CHECK.format(
            not_ready=NOT_READY,
            accounting=accounting,
            healthcheck=HEALTHCHECK_IN_STACK,
            nodes=",".join(self.topology.node_names),
        )

    def _fail_if_a_container_stopped(self) -> None:
        """A container that exited while the stack starts (slurmctld refusing its state, a bad setting)
        will not come back: say which, with its logs, instead of waiting out the deadline."""
        services = self.services()
        stopped = {s: services[s] for s in self.expected_services if s in services}
        stopped = {s: v for s, v in stopped.items() if not v.startswith("running")}
        if stopped:
            names = ", ".join(f"{s} ({v})" for s, v in stopped.items())
            raise StackError(
                f"stack {self.project}: {names} stopped while the stack was starting\n"
                f"--- its logs (tail) ---\n{self.logs_tail(40, self._compose_services(stopped))}"
                "\nfix: the logs above say why; `slurm-dev-cluster down` then `up` starts from scratch"
            )

    def _compose_services(self, services: Iterable[str]) -> list[str]:
        """Compose service names for services or node names: the same (node cN is service cN)."""
        return sorted(set(services))

    def rescale(self, session: str = "cli") -> None:
        """Start or remove node services only (`compose up --no-deps c1 .. cN`, then `compose rm -sf` of
        any node beyond cN): login, slurmctld and slurmdbd are left alone, so SSH sessions opened before
        stay connected."""
        nodes = list(self.topology.node_names)
        self.say(f"docker compose up --wait --no-deps {' '.join(nodes)}")
        self._compose_up(session, services=nodes)
        self._remove_extra_nodes()

    def _remove_extra_nodes(self) -> None:
        """Stop and remove the node containers the topology does not have (c3 when 2 nodes are wanted):
        compose starts only the node services named, and leaves one started before running."""
        extra = [
            name for name in self._containers() if node_number(name) and name not in self.topology.node_names
        ]
        if extra:
            self.say(f"docker compose rm --stop --force {' '.join(extra)}")
            with self._bounded(docker_deadline.DOWN_SECONDS, "docker compose rm") as docker:
                docker.compose.rm(extra, stop=True)

    def _compose_up(
        self,
        session: str,
        *,
        force_recreate: bool = False,
        services: list[str] | None = None,
        wait: bool = True,
    ) -> None:
        """`docker compose up` of ``services`` alone (no dependencies), or by default of every service of
        the topology (node services c1..cN only: c3..c16 are in a profile), then removes node containers
        beyond cN."""
        started = time.monotonic()
        everything = services is None
        try:
            with (
                self.events.outcome(
                    "compose-up", project=self.project, session=session, force_recreate=force_recreate
                ),
                self._bounded(UP_BOUND_SECONDS, "docker compose up") as docker,
            ):
                for line in _lines(
                    docker.compose.up(
                        services or list(self.expected_services),
                        dependencies=everything,  # a listed service alone: nothing it depends on
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
                    if not _is_transient(line):
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
        if everything:
            self._remove_extra_nodes()

    def down(self, session: str = "cli", by: str = "") -> None:
        """Stop the stack and remove its containers and volumes. ``by`` says what stopped it (for the note
        a client still using the stack reads, see ``key_removed_note``; default: the session)."""
        self.say(f"stopping stack {self.project} (containers and volumes)")
        started = time.monotonic()
        try:
            with (
                self.events.outcome("compose-down", project=self.project, session=session),
                self._bounded(docker_deadline.DOWN_SECONDS, "docker compose down") as docker,
            ):
                # `compose down` leaves the containers of services in a profile it was not given (nodes c3
                # and up: compose.yaml), and then cannot remove the network they hold: named, they go.
                listed = docker_run(
                    [
                        *docker.docker_cmd,
                        *("ps", "--all", "--filter", f"label={COMPOSE_PROJECT_LABEL}={self.project}"),
                        *("--format", '{{.Label "com.docker.compose.service"}}'),
                    ]
                )
                nodes = sorted({name for name in str(listed).split() if node_number(name)})
                if nodes:
                    docker.compose.rm(nodes, stop=True)
                for line in _lines(
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
        self._restore_egress()
        # The note first: a client reconnecting between the two reads why its key is missing.
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        _write_atomically(
            self.key_removed_note,
            f"the dev cluster {self.project} was stopped by {by or f'session {session}'} "
            f"(pid {os.getpid()}, {stamp}); start it again with `slurm-dev-cluster up`\n",
        )
        for path in (self.key_path, self.known_hosts_path, self.state_file):
            path.unlink(missing_ok=True)
        self._compose_env_file()  # the state (and its login port pin) went: the next stack starts unpinned

    def _restore_egress(self) -> None:
        """An air gap (slurm_dev_cluster.airgap) must not outlive its stack: its rules name the project's old subnet."""
        from slurm_dev_cluster import (
            airgap,
        )  # airgap needs a Stack; importing it here keeps the modules acyclic

        try:
            if airgap.restore_egress(self):
                self.say("air gap removed (its firewall rules went with the stack)")
        except airgap.AirgapError as exc:
            self.say(f"could not remove the air gap's firewall rules: {exc}")

    # ---- access -------------------------------------------------------------------------------

    def exec(
        self, service: str, command: list[str], user: str | None = None, seconds: float | None = None
    ) -> str:
        """Run a command in a service's container; a compute node is named by its node name (``c2``).
        It must end within ``seconds`` (default ``docker_deadline.EXEC_SECONDS``)."""
        what = f"docker compose exec {service} {' '.join(command)[:60]}"
        with self._bounded(seconds or docker_deadline.EXEC_SECONDS, what) as docker:
            return docker.compose.execute(service, command, tty=False, user=user) or ""

    def connect_info(self, inspection_max_age: float = 0.0) -> Connection:
        """Port, copied client key (0600) and host key of the running stack; the containers are inspected
        unless the last inspection is at most ``inspection_max_age`` seconds old."""
        containers = self._containers(inspection_max_age)  # learns the login container's id and port, too
        port = self.published_port(refresh=False)
        # One plain `docker exec` for both files (no compose project to load): each costs a few hundred ms
        # of a warm start.
        with self._bounded(docker_deadline.EXEC_SECONDS, "docker exec login: read the SSH keys") as docker:
            both = (
                docker.container.execute(
                    self._login_id, ["sh", "-c", f"cat {HOST_KEY_IN_STACK} && cat {CLIENT_KEY_IN_STACK}"]
                )
                or ""
            )
        host_line, _, key = both.partition("\n")
        key = key.strip("\n") + "\n"
        if not self.key_path.exists() or self.key_path.read_text() != key:
            _write_atomically(self.key_path, key, mode=0o600)
        self.key_removed_note.unlink(missing_ok=True)
        host_key = " ".join(host_line.split()[:2])
        self._write_known_hosts(port, host_key)
        names = {service: container.name.lstrip("/") for service, container in containers.items()}
        return Connection(self.project, SSH_HOST, port, SSH_USER, self.key_path, host_key, names)

    def _recorded_connection(self, state: dict) -> Connection | None:
        """The connection recorded for this very login container (same id: same keys), with the port just
        read from Docker (a restart changes it), so reusing a stack needs no `docker exec`; None when
        anything is missing or stale."""
        if not (
            self._login_id
            and state.get("login_id") == self._login_id
            and self.key_path.exists()
            and self._login_port
            and state.get("host_key")
            and state.get("containers")
        ):
            return None
        if state.get("port") != self._login_port:
            self._write_known_hosts(self._login_port, state["host_key"])
        return Connection(
            self.project,
            SSH_HOST,
            self._login_port,
            SSH_USER,
            self.key_path,
            state["host_key"],
            dict(state["containers"]),
        )

    def _write_known_hosts(self, port: int, host_key: str) -> None:
        _write_atomically(self.known_hosts_path, f"[{SSH_HOST}]:{port} {host_key}\n")

    def probe(self, connection: Connection, quick: bool = False) -> list[str]:
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
            return self._run_probe(client, command)
        finally:
            client.close()

    def _run_probe(self, client: paramiko.SSHClient, command: str = PROBE_JOB) -> list[str]:
        """Run a probe command on the login node; the nodes it lists (PROBE_JOB), or StackError."""
        code, out, err = ssh.run(client, command)
        if code != 0:
            raise StackError(
                f"probe `{command}` failed (exit {code}): {err.strip() or out.strip()}\n"
                f"--- daemon logs ---\n{self.daemon_logs_tail(20)}"
            )
        return out.split()

    def logs_tail(self, lines: int = 50, services: Iterable[str] = ()) -> str:
        try:
            with self._inspecting() as docker:
                return ANSI_ESCAPE.sub("", docker.compose.logs(list(services), tail=str(lines)))
        except DockerException as exc:
            return f"(compose logs unavailable: {preflight._first_line(exc)})"
        except docker_deadline.DockerTimeout as exc:
            return f"(compose logs unavailable: {exc.what} did not end within {exc.seconds:.0f} s)"

    def daemon_logs_tail(self, lines: int = 50) -> str:
        """Tail of slurmctld.log and each slurmd.log, read inside the containers."""
        parts = []
        daemons = {"slurmctld": SLURMCTLD_LOG} | {node: SLURMD_LOG for node in self.topology.node_names}
        for service, path in daemons.items():
            try:
                text = self.exec(service, ["tail", "-n", str(lines), path])
            except DockerException as exc:
                text = f"(unavailable: {preflight._first_line(exc)})"
            except docker_deadline.DockerTimeout as exc:
                text = f"(unavailable: no answer within {exc.seconds:.0f} s)"
            parts.append(f"--- {service}:{path} ---\n{text}")
        return "\n".join(parts)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _lines(stream: Iterable[tuple[str, bytes]], unique: bool = True) -> Iterable[str]:
    """Decoded, de-coloured, non-empty lines; with ``unique``, each at most once (compose repeats
    its progress lines)."""
    seen: set[str] = set()
    for _, raw in stream:
        line = ANSI_ESCAPE.sub("", raw.decode(errors="replace")).rstrip()
        if line and not (unique and line in seen):
            seen.add(line)
            yield line


def _service_or_node(container: ContainerInspectResult) -> str:
    """A container's compose service; a compute node's is its node name (``c<n>``)."""
    return container.config.labels.get("com.docker.compose.service", container.name.lstrip("/"))


def _free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (the kernel's choice, as Docker's ephemeral one is)."""
    with socket.socket() as probe:
        probe.bind((SSH_HOST, 0))
        return int(probe.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            probe.bind((SSH_HOST, port))
        except OSError:
            return False
        return True


def _write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Readers in other processes see the old or the new content, never a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)  # the umask may have narrowed it; the key must be exactly 0600
    tmp.replace(path)


def _one_line(exc: BaseException) -> str:
    text = (getattr(exc, "stderr", None) or str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _published_ssh_port(container: ContainerInspectResult) -> int | None:
    """Host port bound to the container's 22/tcp, from its inspection (None when stopped or unpublished)."""
    bindings = (container.network_settings.ports or {}).get("22/tcp") or []
    ports = [int(b["HostPort"]) for b in bindings if b.get("HostPort")]
    return ports[0] if ports else None


def _owner_record(pid: int | None) -> dict | None:
    """What identifies the owning process later on: its pid and start time (a recycled pid differs)."""
    return None if pid is None else {"pid": pid, "start_time": process_start_time(pid)}


def _pids(users) -> str:
    return ", ".join(str(u.pid) for u in users)


def _is_transient(line: str) -> bool:
    """Compose progress lines such as "Container x  Waiting" that a final state line follows anyway."""
    return line.split()[-1] in ("Creating", "Starting", "Waiting", "Recreate", "Stopping", "Removing")


def _is_build_step(line: str) -> bool:
    """Step headers of BuildKit (``#7 [3/9] RUN ...``) and the classic builder (``Step 3/9 : RUN``)."""
    return bool(
        re.match(r"#\d+ \[[^\]]*\d+/\d+\]", line)
        or line.startswith("Step ")
        or "ERROR" in line
        or line.startswith(" Service ")
        or "Built" in line
    )
