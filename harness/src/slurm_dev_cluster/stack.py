"""The dev-cluster stack of one checkout: find it, start it, check it, stop it.

``Stack`` decides what to do with a stack (``plan``: reuse, start, rescale, reconfigure, complete,
rebuild) and does it (``ensure_up``, ``ensure_up_shared``). Adopting or discarding a stack whose owner
died, and stopping one, are ``stack_ownership``'s. The parts it composes are ``stack_parts.StackParts``
and the modules that one names: the compose project, the stack's state, readiness as wait strategies,
SSH access, images, the air gap and the faults.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import preflight, rest_port
from slurm_dev_cluster.compose_project import (
    ACCOUNTING_SERVICE,
    COMPOSE_PROJECT_LABEL,
    UP_BOUND_SECONDS,
    UP_WAIT_SECONDS,
    unwanted_containers,
)
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.inputs import (
    ACCOUNTING_VAR,
    IMAGE_REGISTRY_ENV,
    IMAGE_REPOSITORY,
    REPO_ROOT,
    accounting_enabled,
    containers_inputs,
    inputs_hash,
    rest_enabled,
    stack_inputs,
)
from slurm_dev_cluster.kit import SDK_MOUNT
from slurm_dev_cluster.locks import SETUP_WAIT_SECONDS, Coordinator
from slurm_dev_cluster.naming import (
    DEFAULT_RELEASE,
    debian_release,
    default_project,
    project_name_for,
    project_root_of,
    state_root,
)
from slurm_dev_cluster.ssh_access import PORT_TAKEN, SSH_USER, Connection, free_port
from slurm_dev_cluster.stack_ownership import StackOwnership
from slurm_dev_cluster.stack_parts import Status
from slurm_dev_cluster.stack_state import PINNED_PORT_KEY, claim
from slurm_dev_cluster.stack_wait import INSPECTION_FRESH_SECONDS

__all__ = [  # what callers import from here; each is defined in the module that owns it
    "ACCOUNTING_SERVICE",
    "ACCOUNTING_VAR",
    "COMPOSE_PROJECT_LABEL",
    "DEFAULT_RELEASE",
    "IMAGE_REGISTRY_ENV",
    "IMAGE_REPOSITORY",
    "INSPECTION_FRESH_SECONDS",
    "PINNED_PORT_KEY",
    "REPO_ROOT",
    "SDK_MOUNT",
    "SSH_USER",
    "UP_BOUND_SECONDS",
    "UP_WAIT_SECONDS",
    "Connection",
    "Stack",
    "StackError",
    "Status",
    "UpResult",
    "accounting_enabled",
    "containers_inputs",
    "debian_release",
    "default_project",
    "inputs_hash",
    "project_name_for",
    "project_root_of",
    "stack_inputs",
    "state_root",
]
from slurm_dev_cluster.topology import Topology, node_number

#: Starts tried on another free port when the one the harness chose was taken before Docker bound it.
CHOSEN_PORT_ATTEMPTS = 3


@dataclass(frozen=True)
class UpResult:
    connection: Connection
    action: str  # "reused", "started" or "rebuilt"


class Stack(StackOwnership):
    def _plan_explained(self, expected: str) -> tuple[str, str]:
        """``plan``, with a failing Docker call explained by the preflight checks."""
        with self._explained_by_preflight():
            return self.plan(expected)

    def plan(self, expected: str | None = None) -> tuple[str, str]:
        """What ``ensure_up`` would do: ("reuse" | "start" | "rescale" | "reconfigure" | "complete" |
        "rebuild", why).

        "rescale": only the number of compute nodes differs, so only the compute replicas are touched;
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
                else "compose.yaml, pyproject.toml, images/, DEBIAN_RELEASE, SLURM_SDK_COMPOSE_PROFILES or the project mounted "
                "changed since it was built"
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
        if action == "start":
            self.discard_if_orphaned(session)
        else:
            self.adopt_if_orphaned(session, owner_pid)
        state = self.read_state()
        if action == "reuse":
            self.keep_login_port(action)  # a stack started before ports were kept: its port from now on
            self.keep_rest_port(action)
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
        self.keep_rest_port(action)
        self.say(why)
        if action == "start":  # claim it first: if we crash halfway, our session still stops what we began
            self.update_state(**claim(session, owner_pid))
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
                if not any(words in str(exc) for words in PORT_TAKEN):
                    raise
                if rest_port.choose_again(self, str(exc), last=attempt == CHOSEN_PORT_ATTEMPTS):
                    continue
                if not port:
                    raise
                if not chosen or attempt == CHOSEN_PORT_ATTEMPTS:
                    raise self.login_port_taken(port, "`docker compose up` could not publish it") from None
                self.say(f"port {port} was taken before Docker bound it: starting on another free port")
                self.pin_ssh_port(free_port())

    def _reshape(self, services: dict[str, str]) -> tuple[str, str] | None:
        """("rescale" | "reconfigure" | "complete", why) when the running stack's shape is not the wanted one.

        "rescale" when only the node count differs and the other services are healthy: a topology's GPUs
        and partitions are in every node's environment (all of them are recreated), its node count only
        in the compute service's replicas."""
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
        self.compose.stop(nodes)
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

    # ---- start, reshape, stop --------------------------------------------------------------------

    def up(self, *, force_recreate: bool = False, session: str = "cli") -> None:
        """`docker compose up -d`: every container created and started; ``wait_until_ready`` then waits
        for Slurm itself rather than for compose's healthchecks (see there)."""
        self.say("docker compose up -d" + (" --force-recreate" if force_recreate else ""))
        self.compose.up(
            session,
            services=list(self.expected_services),
            dependencies=True,
            force_recreate=force_recreate,
            wait=False,
        )
        self._remove_unwanted()

    def rescale(self, session: str = "cli") -> None:
        """Start or remove node services only (`compose up --no-deps c1 .. cN`, then `compose rm -sf` of any
        node beyond cN): login, slurmctld and slurmdbd are left alone, so SSH sessions opened before stay
        connected."""
        nodes = list(self.topology.node_names)
        self.say(f"docker compose up --wait --no-deps {' '.join(nodes)}")
        self.compose.up(session, services=nodes)
        self._remove_unwanted()

    def _remove_unwanted(self) -> None:
        """Stop and remove the containers this stack's settings do not want (``unwanted_containers``)."""
        extra = unwanted_containers(self._containers(), self.topology.node_names, rest=rest_enabled())
        if extra:
            self.say(f"removing what the settings no longer ask for: {' '.join(extra)}")
            self.compose.remove(extra)

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


def _pids(users) -> str:
    return ", ".join(str(u.pid) for u in users)
