"""The login node's SSH port: the one a stack was first given, kept for the life of the stack.

Every compose call reads compose.env, and the port is part of the login service's config: were it pinned
for one call only, the next `compose up` would see login's config change and recreate it on a new
ephemeral port, cutting every SSH session. So the pin is recorded in state.json, which compose.env is
written from, and lasts until ``down``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from slurm_dev_cluster import preflight
from slurm_dev_cluster.compose_project import ComposeProject
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.ssh_access import free_port, port_free
from slurm_dev_cluster.stack_state import PINNED_PORT_KEY, StackState

PORT_SETTING = "SLURM_SDK_SSH_PORT"  # a port the user fixes (compose.yaml reads it; it wins over the pin)


class LoginPort:
    """The kept port of one stack's login node; ``write_env`` rewrites compose.env after a change."""

    def __init__(self, state: StackState, compose: ComposeProject, write_env: Callable[[], Path]) -> None:
        self.state = state
        self.compose = compose
        self.write_env = write_env

    def pinned(self) -> int | None:
        return self.state.read().get(PINNED_PORT_KEY)

    def pin(self, port: int | None) -> None:
        """Publish login's SSH port on ``port`` for the life of the stack (None: an ephemeral port again)."""
        self.state.update(self.state.read(), **{PINNED_PORT_KEY: port})
        self.write_env()

    def keep(self, action: str) -> bool:
        """Pin login's port before containers are made, so restarting, recreating or re-shaping login keeps
        the port the stack was first given: SLURM_SDK_SSH_PORT when set, else (a new stack) a free port
        chosen here, where Docker's ephemeral choice was made anew on every start of the container; a
        stack started before ports were kept keeps the port it has now. True when the harness chose it."""
        setting = os.environ.get(PORT_SETTING)
        pinned = self.pinned()
        if setting and setting.isdigit():
            if int(setting) != pinned:
                self.pin(int(setting))
            return False
        if pinned:
            return False
        if action != "start" and self.compose.login_port:
            self.pin(self.compose.login_port)
            return False
        self.pin(free_port())
        return True

    def taken(self, port: int, cause: str = "") -> StackError:
        """The error for a login node that cannot get its kept port back: said at once, naming the holder."""
        holder = preflight.port_holder(self.compose.docker, port)
        return StackError(
            f"the login node of {self.compose.project} keeps 127.0.0.1:{port}, the port the stack was first "
            f"given, but {holder.who} holds it now{': ' + cause if cause else ''}\n"
            f"fix: {holder.fix}; or `slurm-dev-cluster down` then `up` (a new stack gets a new port)"
        )

    def needs_check(self) -> bool:
        return bool(os.environ.get(PORT_SETTING) or self.pinned())

    def check(self, login_running: bool) -> None:
        """The one preflight check no Docker error would explain well, run before containers are made:
        a fixed SLURM_SDK_SSH_PORT, or the kept port, that something else holds (our own running login
        may hold it: ``login_running``)."""
        setting = os.environ.get(PORT_SETTING)
        kept = self.pinned()
        problem = preflight.check_ssh_port(setting, stack_running=login_running, docker=self.compose.docker)
        if problem:
            raise preflight.PreflightError([problem])
        if kept and not setting and not login_running and not port_free(kept):
            raise self.taken(kept)
