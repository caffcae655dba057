"""A stack's recorded state (``state.json`` in its state directory) and who owns it.

``state.json`` is what outlives the processes that use a stack: what it was built from, its topology,
the connection to reuse, its faults, and the test session that owns it. A stack whose owning session died
without stopping it is adopted by the next caller (``adopt_if_orphaned``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from slurm.node.atomic import write_atomic
from slurm_dev_cluster.locks import User, is_alive, process_start_time

#: state.json key: the login node's SSH port (``Stack.pin_ssh_port``): the one the stack was first given
#: (SLURM_SDK_SSH_PORT, else a free port the harness chose), kept until ``down`` (``Stack.keep_login_port``).
PINNED_PORT_KEY = "pinned_ssh_port"
#: state.json key: slurmrestd's port on 127.0.0.1 (profile ``rest``), kept the same way
#: (``Stack.keep_rest_port``): a restarted slurmrestd answers at the URL its clients were given.
REST_PORT_KEY = "pinned_rest_port"


def write_text_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Readers in other processes see the old or the new content, never a half-written file (the SDK's
    atomic write: one implementation of it in the tree)."""
    write_atomic(os.fspath(path), text.encode(), mode)


class StackState:
    """``state.json`` of one stack: read whole, changed key by key, each change written atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def file(self) -> Path:
        return self.state_dir / "state.json"

    def read(self) -> dict:
        try:
            return json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}

    def update(self, current: dict, **changes: object) -> None:
        """Write ``current`` (the state as just read) with ``changes`` applied."""
        write_text_atomically(self.file, json.dumps(current | changes, indent=2))

    # ---- ownership ----------------------------------------------------------------------------

    def orphaned_by(self, state: dict) -> str | None:
        """The session recorded as the stack's owner, when that session's process is gone; else None.

        Only test sessions record an owner: a stack started with ``slurm-dev-cluster up`` (or kept with
        --keep-cluster) belongs to the user and is never an orphan.
        """
        owner = state.get("owner")
        if not owner or is_alive(User(owner["pid"], owner.get("start_time", ""), "", "")):
            return None
        return str(state.get("started_by", "unknown"))


def owner_record(pid: int | None) -> dict | None:
    """What identifies the owning process later on: its pid and start time (a recycled pid differs)."""
    return None if pid is None else {"pid": pid, "start_time": process_start_time(pid)}


def claim(session: str, owner_pid: int | None) -> dict:
    """The state changes that make ``session`` (its process ``owner_pid``, if a test session) the owner."""
    return {"started_by": session, "owner": owner_record(owner_pid), "teardown_requested": False}
