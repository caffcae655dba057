"""A Cluster over the real SSH transport to the fast tier's throwaway sshd, with Slurm scripted on the far
side (a fake ``sbatch`` first on the submission command's PATH; the other commands answer from a script),
and what a node would do with an uploaded payload: for tests of what crosses the wire."""

from __future__ import annotations

import io
import pickle
import shlex
from pathlib import Path
from typing import Any

from slurm import Cluster, Task
from slurm.backends.slurm import SlurmBackend
from slurm.inherited_env import SCRUB_SLURM_ENV_SHELL
from slurm.node import layout, plain
from slurm.node.outcome import dump_result
from slurm.node.payload import LOCAL_PYTHON, read_payload
from slurm.transports.base import CommandResult
from slurm.transports.ssh import SSHTransport

FAKE_SBATCH = """#!/bin/sh
here=$(dirname "$0")
id=$(cat "$here/next-id" 2>/dev/null || echo 100)
echo $((id + 1)) > "$here/next-id"
printf '%s\\n' "$*" >> "$here/calls"
case "$1" in  # as sbatch --parsable answers: <id>, or <id>;<cluster> when given one
  --clusters=*) echo "$id;${1#--clusters=}" ;;
  *) echo "$id" ;;
esac
"""


class ScriptedSlurmOverSSH(SSHTransport):
    """The real SSH transport; a fake ``sbatch`` first on the submission command's PATH, and the other
    Slurm commands answer from a script."""

    def __init__(self, *args, bin_dir: Path, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bin_dir = bin_dir
        bin_dir.mkdir()
        (bin_dir / "sbatch").write_text(FAKE_SBATCH)
        (bin_dir / "sbatch").chmod(0o755)

    @property
    def sbatch_calls(self) -> list[str]:
        calls = self.bin_dir / "calls"
        return calls.read_text().splitlines() if calls.exists() else []

    def write_files_then(self, directory, files, command):
        path = f"PATH={shlex.quote(str(self.bin_dir))}:$PATH; "
        return super().write_files_then(directory, files, path + command)

    def run(self, command, *, env=None, check=True, timeout=None):
        if not command.startswith(SCRUB_SLURM_ENV_SHELL):
            return super().run(command, env=env, check=check, timeout=timeout)
        argv = shlex.split(command[len(SCRUB_SLURM_ENV_SHELL) :])
        if argv[0] == "sacct":
            return CommandResult(1, "", "sacct: error: Slurm accounting storage is disabled\n")
        if argv[0] == "squeue" and "--me" not in argv:  # every job asked about is running
            ids = argv[argv.index("-j") + 1].split(",")
            return CommandResult(0, "".join(f"{job_id}|RUNNING|None|0\n" for job_id in ids), "")
        return CommandResult(0, "", "")


def scripted_transport(sshd, bin_dir: Path) -> ScriptedSlurmOverSSH:
    """``ScriptedSlurmOverSSH`` to ``sshd`` (the fast tier's fixture), its fake sbatch in ``bin_dir``."""
    return ScriptedSlurmOverSSH(
        "127.0.0.1",
        sshd.port,
        sshd.user,
        key_filename=sshd.client_key,
        known_host_key=sshd.host_pub,
        bin_dir=bin_dir,
    )


def scripted_cluster(
    sshd,
    tmp_path: Path,
    slurm_cluster: str | None = None,
    *,
    transport: ScriptedSlurmOverSSH | None = None,
    **settings,
) -> Cluster:
    """A Cluster submitting over SSH to ``sshd`` (the fast tier's fixture) through ``ScriptedSlurmOverSSH``
    (``transport``, one several clusters share, or a new one); ``slurm_cluster``: the backend's named
    cluster; ``settings`` add to or override the Cluster's quick test cadence."""
    transport = transport or scripted_transport(sshd, tmp_path / "bin")
    cadence = {"poll_interval_seconds": 30, "result_poll_interval_seconds": 0.05}
    return Cluster(
        SlurmBackend(transport, slurm_cluster=slurm_cluster),
        {"type": "none"},
        job_root=str(tmp_path / "jobs"),
        node_python=LOCAL_PYTHON,
        **(cadence | settings),
    )


def read_call(payload: bytes, index: int = 0) -> tuple[Any, Any]:
    """The task and call ``index`` of a payload, read and loaded as the runner does (``slurm.node``); a
    plain payload's function comes back as a Task, as a pickled one does."""
    is_plain, task_data, call = read_payload(io.BytesIO(payload), index)
    if is_plain:
        function = plain.load_reference(task_data)
        return (function if isinstance(function, Task) else Task(function)), plain.loads(call)
    return pickle.loads(task_data), pickle.loads(call)


def run_on_node(job, index: int = 0) -> None:
    """What the runner does on a node, here (sshd runs on this host): the call from the uploaded payload,
    its outcome written beside it."""
    task, (args, kwargs) = read_call(Path(layout.payload_path(job.job_dir)).read_bytes(), index)
    Path(layout.result_path(job.job_dir, index)).write_bytes(dump_result(task.fn(*args, **kwargs)))
