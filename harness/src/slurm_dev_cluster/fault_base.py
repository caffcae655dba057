"""What every kind of fault shares: the stack it changes (``Stack``, a Protocol), the record of what is
changed in the stack's ``state.json``, and the calls into its containers."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Protocol

from python_on_whales import DockerClient

from slurm_dev_cluster import docker_deadline
from slurm_dev_cluster.compose_project import ComposeProject
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.locks import EventLog, process_start_time
from slurm_dev_cluster.readiness import ServicesHealthy, wait_for
from slurm_dev_cluster.ssh_access import Connection
from slurm_dev_cluster.topology import Topology

READY_SECONDS = 120.0


class Stack(Protocol):
    """What fault injection needs of a running stack (``slurm_dev_cluster.stack.Stack`` is one)."""

    project: str
    topology: Topology
    events: EventLog
    compose: ComposeProject
    cluster_services: tuple[str, ...]

    def say(self, message: str) -> None: ...
    def read_state(self) -> dict: ...
    def update_state(self, **changes: object) -> None: ...
    def services(self) -> dict[str, str]: ...
    def container_names(self) -> dict[str, str]: ...
    def exec(
        self, service: str, command: list[str], user: str | None = None, seconds: float | None = None
    ) -> str: ...
    def daemon_logs_tail(self, lines: int = 50) -> str: ...
    def published_port(self, refresh: bool = True) -> int: ...
    def pin_ssh_port(self, port: int | None) -> None: ...
    def keep_rest_port(self, action: str) -> None: ...
    def rest_port_pinned(self) -> bool: ...
    def login_port_taken(self, port: int, cause: str = "") -> StackError: ...
    def connect_info(self, inspection_max_age: float = 0.0) -> Connection: ...


class FaultsBase:
    """One running stack and the record of its faults; the kinds of fault (``fault_slurm``,
    ``fault_containers``, ``fault_ssh``) build on it, and ``faults.Faults`` is all of them."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.say = stack.say

    # ---- the record in state.json ---------------------------------------------------------------

    def _record(self) -> dict:
        return dict(self.stack.read_state().get("faults") or {})

    def _update(self, event: str, **changes: object) -> None:
        """Record a fault (owned by this process from now on) after it took effect."""
        owner = {"pid": os.getpid(), "start_time": process_start_time(os.getpid())}
        record = self._record() | changes | {"owner": owner}
        self.stack.update_state(faults=record)
        self.stack.events.record("fault", project=self.stack.project, action=event)

    # ---- helpers --------------------------------------------------------------------------------

    def _controller(self, command: str) -> str:
        return self.stack.exec("slurmctld", ["sh", "-c", command])

    @property
    def configured(self) -> tuple[str, ...]:
        """Every container whose slurm.conf includes faults.conf; they must agree (Slurm compares config
        hashes): slurmctld, each compute node, login."""
        return self.stack.cluster_services

    @property
    def compute_nodes(self) -> tuple[str, ...]:
        return self.stack.topology.node_names

    def _container_call(self, what: str) -> AbstractContextManager[DockerClient]:
        """The Docker client for one call on one container (``docker_deadline.CONTAINER_SECONDS``)."""
        return self.stack.compose.bounded(docker_deadline.CONTAINER_SECONDS, what)

    def _name(self, service: str) -> str:
        return self.stack.container_names()[service]

    def _wait_ready(self, services: list[str], timeout: float = READY_SECONDS) -> None:
        """Until each service's healthcheck passes again (slurmd registered, sshd takes the key, ...)."""
        wait_for(
            [ServicesHealthy(services, self.stack.services)],
            timeout,
            subject=", ".join(services),
            poll=0.5,
            explain=lambda: f"\n{self.stack.daemon_logs_tail(20)}",
        )


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")
