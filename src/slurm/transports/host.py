"""This host as a transport: commands through ``sh -c`` here, files on this machine's disk (``SlurmBackend``
on a login node, and the "local" backend's own file access)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from slurm.deadline import operation_timeout
from slurm.errors import BackendError, CommandError
from slurm.inherited_env import scrub_slurm_env
from slurm.node.atomic import write_atomic
from slurm.transports.base import COMMAND_TIMEOUT, PRIVATE_UMASK, CommandResult, Transport


class HostTransport(Transport):
    """This host, the machine this process runs on: commands through ``sh -c`` (SLURM_* job variables
    scrubbed), files on its disk. (Not to be confused with the "local" backend, which runs no Slurm.)"""

    def run(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> CommandResult:
        import subprocess  # on use: building a Cluster should not pay for it (see slurm.cluster)

        timeout = operation_timeout(COMMAND_TIMEOUT if timeout is None else timeout)
        try:
            proc = subprocess.run(
                ["sh", "-c", PRIVATE_UMASK + command],  # what it creates is private (see PRIVATE_UMASK)
                env={**scrub_slurm_env(os.environ), **(env or {})},
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"command timed out after {timeout:.3g}s: {command}", transient=True) from exc
        if check and proc.returncode != 0:
            raise CommandError(command, proc.returncode, proc.stdout, proc.stderr)
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    def write_bytes(self, path: str, data: bytes, mode: int | None = None) -> None:
        self.makedirs(os.path.dirname(path))
        write_atomic(path, data, None if mode is None else mode & 0o700)  # private, as over SSH

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def makedirs(self, path: str) -> None:
        """Every directory made is 0700 (``os.makedirs`` gives only the last one its mode)."""
        missing = []
        current = os.path.abspath(path)
        while not os.path.isdir(current):
            missing.append(current)
            current = os.path.dirname(current)
        for directory in reversed(missing):
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                if not os.path.isdir(directory):
                    raise

    def put(self, local_path: str, remote_path: str) -> None:
        self.makedirs(os.path.dirname(remote_path))
        write_atomic(remote_path, self.read_bytes(local_path), os.stat(local_path).st_mode & 0o700)

    def read_from(self, path: str, offset: int, limit: int) -> tuple[bytes, int]:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                return handle.read(limit), os.fstat(handle.fileno()).st_size
        except FileNotFoundError:
            return b"", -1

    def home(self) -> str:
        return os.path.expanduser("~")
