"""Waiting until a stack takes jobs: the wait strategies of ``readiness`` run against one stack, checked
the way a user reaches it, and stopped at once when a container of the stack exits.

The stack is typed by what the wait needs of it (``Waitable``, a Protocol), so this module sits below
``stack_parts`` (which delegates ``wait_until_ready`` here) and never imports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from slurm_dev_cluster.compose_project import UP_WAIT_SECONDS
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.inputs import accounting_enabled, rest_enabled
from slurm_dev_cluster.readiness import (
    Clock,
    Guard,
    LoginKeys,
    RestAnswers,
    SlurmTakesJobs,
    SSHLogin,
    ready_check,
    wait_for,
)
from slurm_dev_cluster.ssh_access import Connection, run_probe
from slurm_dev_cluster.topology import Topology

#: An inspection at most this old is current enough for ``wait_until_ready`` to connect from: it inspected
#: the containers a moment before, and nothing of ours recreates one while it waits.
INSPECTION_FRESH_SECONDS = 0.5


class Waitable(Protocol):
    """What waiting needs of a stack (``slurm_dev_cluster.stack_parts.StackParts`` is one)."""

    project: str
    topology: Topology

    @property
    def expected_services(self) -> tuple[str, ...]: ...
    def say(self, message: str) -> None: ...
    def services(self) -> dict[str, str]: ...
    def connect_info(self, inspection_max_age: float = 0.0) -> Connection: ...
    def logs_tail(self, lines: int = 50, services: Iterable[str] = ()) -> str: ...
    def daemon_logs_tail(self, lines: int = 50) -> str: ...
    def rest_url(self) -> str: ...


def wait_until_ready(
    stack: Waitable, timeout: float = UP_WAIT_SECONDS, clock: Clock | None = None
) -> tuple[Connection, list[str]]:
    """Wait until ``stack`` takes jobs, checked the way a user reaches it: the login container's keys,
    an SSH login with them, then ``readiness.READY_CHECK`` (slurmctld answers, is registered with
    slurmdbd, every node usable) every 0.1 s on that one connection, then the probe job; returns the
    connection and the nodes Slurm knows.

    It ends as soon as Slurm is ready: compose's `up --wait` ends later on this Docker (20.10 runs
    a container's first healthcheck an interval (compose.yaml: 2 s) after its start, with no
    start_interval, and compose looks at the health every 0.5 s). The healthchecks stay, for
    `docker compose up --wait` and `harness status`. It fails at once when a container stops, and at
    the deadline names the wait strategy it was on and what that one saw last."""
    stack.say("waiting until Slurm takes jobs (SSH login, slurmctld, every node, a tiny job)")
    keys = LoginKeys(lambda: stack.connect_info(INSPECTION_FRESH_SECONDS))
    login = SSHLogin(keys)
    slurm = SlurmTakesJobs(
        login,
        ready_check(stack.topology.node_names, accounting_enabled(), stack.topology.further_clusters),
    )
    rest = [RestAnswers(login, stack.rest_url)] if rest_enabled() else []
    try:
        wait_for(
            [keys, login, slurm, *rest],
            timeout,
            subject=f"stack {stack.project}",
            guards=[Guard(lambda: fail_if_a_container_stopped(stack))],
            clock=clock,
            explain=lambda: (
                f"\n--- compose logs (tail) ---\n{stack.logs_tail(30)}"
                "\nfix: read the logs above (`slurm-dev-cluster logs`); "
                "`slurm-dev-cluster down` then `up` starts from scratch"
            ),
        )
        assert keys.connection is not None and login.client is not None
        stack.say("probe: a tiny job (srun)")
        return keys.connection, run_probe(login.client, lambda: stack.daemon_logs_tail(20))
    finally:
        login.close()


def fail_if_a_container_stopped(stack: Waitable) -> None:
    """A container that exited while the stack starts (slurmctld refusing its state, a bad setting)
    will not come back: say which, with its logs, instead of waiting out the deadline."""
    services = stack.services()
    stopped = {s: services[s] for s in stack.expected_services if s in services}
    stopped = {s: v for s, v in stopped.items() if not v.startswith("running")}
    if stopped:
        names = ", ".join(f"{s} ({v})" for s, v in stopped.items())
        # Compose service names are the node names (node cN is service cN): the logs of those stopped.
        raise StackError(
            f"stack {stack.project}: {names} stopped while the stack was starting\n"
            f"--- its logs (tail) ---\n{stack.logs_tail(40, sorted(stopped))}"
            "\nfix: the logs above say why; `slurm-dev-cluster down` then `up` starts from scratch"
        )
