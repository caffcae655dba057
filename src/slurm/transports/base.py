"""The interface every transport implements: where commands run and files live (this host, or a login
node over SSH). Backends (``slurm.backends``) run Slurm's commands through one; transports know nothing
of backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Longest any single command may run when its caller gave no timeout: nothing blocks forever.
COMMAND_TIMEOUT = 300.0
#: What every transport puts before each command: whatever the SDK creates on the cluster (directories,
#: files, the venvs it builds, the jobs sbatch submits, which inherit the umask, and their logs) is the
#: user's alone: 0700 directories, 0600 files. Files the transports write themselves are created 0600.
PRIVATE_UMASK = "umask 077; "


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class Transport(ABC):
    """Runs shell commands and moves files on the machine where jobs are submitted."""

    #: Whether each command costs a network round trip (SSH), so that steps are worth joining into one
    #: command (``write_files_then``); on this host they are not.
    remote: bool = False

    @abstractmethod
    def run(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``command`` through ``sh -c``; raise ``CommandError`` on non-zero exit if ``check``."""

    @abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, path: str, data: bytes, mode: int | None = None) -> None:
        """Write atomically (temp file + rename), creating parent directories."""

    def write_files(self, directory: str, files: Mapping[str, tuple[bytes, int]]) -> None:
        """Create ``directory`` (parents too) holding ``files`` (name -> (data, mode)). Written in the
        order given, each complete before the next, so the last one may be what a reader waits for.
        Transports where each file costs round trips override this to send them all at once."""
        for name, (data, mode) in files.items():
            self.write_bytes(f"{directory}/{name}", data, mode=mode)

    def write_files_then(
        self, directory: str, files: Mapping[str, tuple[bytes, int]], command: str
    ) -> CommandResult:
        """``write_files``, then ``command`` (its result, whatever its exit code). Transports where each
        command costs a round trip override this to do both in one."""
        self.write_files(directory, files)
        return self.run(command, check=False)

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def makedirs(self, path: str) -> None: ...

    @abstractmethod
    def put(self, local_path: str, remote_path: str) -> None:
        """Copy one local file to ``remote_path`` (parents created)."""

    def read_existing(self, paths: Sequence[str]) -> dict[str, bytes]:
        """Contents of those ``paths`` that exist (missing ones are left out). Transports where each file
        costs a round trip override this to fetch them all at once (results of a 1,000-task map)."""
        return {path: self.read_bytes(path) for path in paths if self.exists(path)}

    def read_from(self, path: str, offset: int, limit: int) -> tuple[bytes, int]:
        """Up to ``limit`` bytes of ``path`` from byte ``offset`` on, and the file's size (-1 when it does
        not exist yet): how growing logs are followed without fetching them again, and a truncated one
        (a requeued job's log starts over) is noticed. One command; binary safe."""
        import base64
        import shlex

        quoted = shlex.quote(path)
        output = self.run(
            f"if [ -f {quoted} ]; then wc -c < {quoted}; tail -c +{int(offset) + 1} {quoted} "
            f"| head -c {int(limit)} | base64; else echo -1; fi"
        ).stdout
        size, _, data = output.partition("\n")
        return base64.b64decode(data), int(size)

    @abstractmethod
    def home(self) -> str:
        """Absolute home directory of the user on the far side (used for default job roots)."""

    def expand_home(self, path: str) -> str:
        """``~`` or ``~/x`` on the far side -> an absolute path there; other paths unchanged. Slurm does not
        expand ``~`` in ``#SBATCH`` paths and SFTP does not either, so every far-side path goes through this."""
        if path == "~" or path.startswith("~/"):
            return self.home().rstrip("/") + path[1:]
        return path

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
