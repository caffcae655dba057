"""Faults on the containers: a compute node killed and started again, a service paused (a hung host) or
restarted, the login node kept on its port."""

from __future__ import annotations

import time

from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import docker_deadline
from slurm_dev_cluster.compose_project import REST_SERVICE
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.fault_base import FaultsBase, check_choice
from slurm_dev_cluster.ssh_access import PORT_TAKEN, Connection
from slurm_dev_cluster.stack_state import PINNED_PORT_KEY

PAUSE_ATTEMPTS = 10


class ContainerFaults(FaultsBase):
    """Compute nodes and services stopped, paused or restarted, and put back."""

    def stop_node(self, node: str = "c1", *, mark_down: bool = True) -> None:
        """A compute node fails: its container is killed (SIGKILL, no clean shutdown). With ``mark_down``
        slurmctld is told at once (`scontrol update state=down`), as its own ping would after
        SlurmdTimeout (30 s here): jobs on the node are requeued, or fail if they may not be requeued."""
        check_choice("compute node", node, self.compute_nodes)
        # Recorded first: if marking it DOWN fails, the fault's undo still starts the node again.
        self._update(f"stop {node}", stopped=sorted({*self._record().get("stopped", []), node}))
        with self._container_call(f"docker kill {node}") as docker:
            docker.container.kill(self._name(node))
        if mark_down:
            self._mark_down(node)

    def _mark_down(self, node: str, settle: float = 1.0, attempts: int = 5) -> None:
        """DOWN, and still DOWN a moment later: a registration the node sent just before it was killed can
        reach slurmctld after the update and return it to service (ReturnToService=2), and a requeued job
        would then be started on the dead node."""
        for _ in range(attempts):
            self._controller(f"scontrol update nodename={node} state=down reason=harness-fault-node-stopped")
            time.sleep(settle)
            shown = self._controller(f"sinfo -h -n {node} -o %T")
            if "DOWN" in shown.upper():
                return
        raise StackError(
            f"{node} keeps returning to service after being killed and marked DOWN (sinfo: {shown.split()})"
        )

    def start_node(self, node: str = "c1") -> None:
        """The node comes back; returns once slurmd has registered and the node takes jobs again."""
        check_choice("compute node", node, self.compute_nodes)
        with self._container_call(f"docker start {node}") as docker:
            docker.container.start(self._name(node))
        self._wait_ready([node])
        self._update(f"start {node}", stopped=[s for s in self._record().get("stopped", []) if s != node])

    def pause(self, service: str) -> None:
        """Freeze every process of a container (``docker pause``): it accepts TCP but never answers,
        like a hung host. ``slurmctld``: an outage; ``login``: a frozen login node."""
        check_choice("service", service, self.configured)
        for attempt in range(PAUSE_ATTEMPTS):
            try:
                with self._container_call(f"docker pause {service}") as docker:
                    docker.container.pause(self._name(service))
                break
            except DockerException as exc:
                # The cgroup freezer gives up when a process is mid-exec (a healthcheck, a `docker exec`);
                # runc thaws the container again, so a later try starts from a running container.
                if "unable to freeze" not in str(exc) or attempt == PAUSE_ATTEMPTS - 1:
                    raise
                time.sleep(0.5)
        self._update(f"pause {service}", paused=sorted({*self._record().get("paused", []), service}))

    def unpause(self, service: str) -> None:
        check_choice("service", service, self.configured)
        with self._container_call(f"docker unpause {service}") as docker:
            docker.container.unpause(self._name(service))
        self._update(
            f"unpause {service}", paused=[s for s in self._record().get("paused", []) if s != service]
        )
        self._wait_ready([service])

    @property
    def restartable(self) -> tuple[str, ...]:
        """The services ``restart`` takes: the cluster's, and slurmrestd when the stack runs it."""
        return self.configured + ((REST_SERVICE,) if REST_SERVICE in self.stack.container_names() else ())

    def restart(self, service: str) -> Connection | None:
        """Restart a container and wait until it is ready again. ``login`` comes back on the port it had
        (the stack keeps it: ``Stack.keep_login_port``), as a real login node does, so clients waiting on it
        reconnect by themselves; its connection is returned. ``slurmrestd`` too keeps its port
        (``Stack.keep_rest_port``): its clients' URL stays good. If something took the port meanwhile, the
        error says so at once."""
        check_choice("service", service, self.restartable)
        if service == REST_SERVICE and not self.stack.rest_port_pinned():
            # Made before the kit kept slurmrestd's port: made again on its kept port first, or the
            # restart would move it and the URL its clients hold would go stale.
            self.stack.keep_rest_port("reuse")
            self.stack.compose.up("faults", services=[REST_SERVICE], force_recreate=True)
            self._wait_ready([REST_SERVICE])
        if service == "login" and not self._login_port_pinned():
            # A login container made before ports were kept asks Docker for an ephemeral port, which a
            # restart would move: made again on the port it has now, first.
            port = self.stack.published_port()
            self.stack.pin_ssh_port(port)
            self._recreate_login(port)
        try:
            with self._container_call(f"docker restart {service}") as docker:
                docker.container.restart(self._name(service), time=2)
        except DockerException as exc:
            if service == "login" and any(words in str(exc) for words in PORT_TAKEN):
                raise self.stack.login_port_taken(self.stack.read_state()[PINNED_PORT_KEY]) from None
            raise
        self._wait_ready([service])
        self._update(f"restart {service}")
        return self.connection() if service == "login" else None

    def connection(self) -> Connection:
        """The stack's connection as it is now (port read afresh from Docker)."""
        return self.stack.connect_info()

    def _restore_login_port(self, port: int) -> None:
        """Recreate the login container on ``port`` (its keys live in the secrets volume, /home is
        shared): connections the test session handed out before the restart work again. Only a fault record
        of a harness from before ports were kept has a ``login_port`` to restore."""
        if self.stack.published_port() != port:
            self._recreate_login(port)
        self._update("login port restored", login_port=None)

    def _recreate_login(self, port: int | None) -> None:
        """A new login container on ``port``, or on an ephemeral port as compose.yaml makes it (None).
        The pin is the stack's (``Stack.pin_ssh_port``), so a later `compose up` keeps login as it is."""
        self.stack.pin_ssh_port(port)
        self.stack.compose.up("faults", services=["login"], force_recreate=True)
        self.stack.connect_info()  # refreshes the copied known_hosts for the port

    def _login_port_pinned(self) -> bool:
        """Whether the login container asks Docker for a fixed host port (an empty one is ephemeral)."""
        with self.stack.compose.bounded(docker_deadline.INSPECT_SECONDS, "docker inspect login") as docker:
            bindings = docker.container.inspect(self._name("login")).host_config.port_bindings or {}
        return any(binding.host_port for binding in bindings.get("22/tcp") or [])
