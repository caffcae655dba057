"""Commands and files on a login node over SSH (paramiko): one connection, reused, reconnected when dropped
(``ssh_connection.SSHConnection``); here the files: read and written over SFTP, many at once in one
command (a tar each way).
"""

from __future__ import annotations

import io
import os
import posixpath
import shlex
import tarfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from slurm.errors import CommandError
from slurm.transports import ssh_channel, wanted_files
from slurm.transports.base import CommandResult
from slurm.transports.ssh_connection import SSHConnection

# Part of this module's interface: key parsing, and the note a removed key leaves (see ssh_keys).
from slurm.transports.ssh_keys import KEY_REMOVED_SUFFIX as KEY_REMOVED_SUFFIX
from slurm.transports.ssh_keys import parse_public_key as parse_public_key

#: Directories listed per command by existing (keeps the command line far below ARG_MAX).
_FILES_PER_COMMAND = 500
#: The line ``write_files_then`` prints once the files are in place, before its command runs.
_WRITTEN = "slurm-sdk:files-written"


class SSHTransport(SSHConnection):
    """A login node over SSH: commands (``SSHConnection``) and files."""

    # -- files ------------------------------------------------------------------------------------

    def _path(self, path: str) -> str:
        return self.expand_home(path)

    def read_bytes(self, path: str) -> bytes:
        def read(sftp: Any) -> bytes:
            with sftp.open(self._path(path), "rb") as handle:
                size = handle.stat().st_size
                handle.prefetch(size)  # requests all chunks at once instead of one round trip per 32 KB
                data: bytes = handle.read()
            if len(data) < size:  # cut short: read again (_sftp_call takes EOFError for a dropped connection)
                raise EOFError(f"read {len(data)} of the {size} bytes of {path}")
            return data

        return self._sftp_call(read)

    def write_bytes(self, path: str, data: bytes, mode: int | None = None) -> None:
        def write(sftp: Any, tmp: str) -> None:
            with ssh_channel.create_private(sftp, tmp) as handle:
                handle.set_pipelined(True)  # no wait for each 32 KB chunk's answer (a map's payload is big)
                handle.write(data)

        self._atomic_upload(path, write, mode)

    def put(self, local_path: str, remote_path: str) -> None:
        def copy(sftp: Any, tmp: str) -> None:
            with open(local_path, "rb") as source, ssh_channel.create_private(sftp, tmp) as handle:
                handle.set_pipelined(True)
                while piece := source.read(ssh_channel.PIECE):
                    handle.write(piece)

        mode = os.stat(local_path).st_mode & 0o777  # like cp: an executable stays executable
        self._atomic_upload(remote_path, copy, mode)

    def _atomic_upload(self, path: str, upload: Callable[[Any, str], None], mode: int | None) -> None:
        """Upload to a temp name beside ``path``, then rename over it: readers never see half a file. The
        file is private: created 0600, then ``mode`` limited to its owner's bits (0755 -> 0700)."""
        path = self._path(path)
        self.makedirs(posixpath.dirname(path))
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"

        def finish(sftp: Any) -> None:
            upload(sftp, tmp)
            if mode is not None and mode & 0o700 != 0o600:
                sftp.chmod(tmp, mode & 0o700)
            sftp.posix_rename(tmp, path)

        self._sftp_call(finish)

    def write_files(self, directory: str, files: Mapping[str, tuple[bytes, int]]) -> None:
        """One command instead of about five SFTP round trips per file: a tar of the files on its stdin,
        unpacked into a fresh temporary directory beside ``directory``, checked (every file there, at its
        size) and only then renamed into place, so the directory appears complete or not at all.

        Safe to run again after a dropped connection, which is what the caller does (``Cluster``): a new
        attempt writes to a new temporary name, and a ``directory`` an earlier attempt completed (its
        answer lost) counts as written. An interrupted attempt removes its temporary directory.
        ``directory`` must not exist yet (a new job's) unless it holds exactly these files already."""
        command, archive = self._upload(directory, files)
        code, _, stderr = self._exec(
            command + "exit 0",
            None,
            lambda out: out.read(),
            stdin=archive,
            what=f"the upload of {directory} ({len(archive):,} bytes)",
        )
        if code != 0:
            raise CommandError(f"writing {directory}", code, "", stderr)

    def write_files_then(
        self, directory: str, files: Mapping[str, tuple[bytes, int]], command: str
    ) -> CommandResult:
        """``write_files``, then ``command`` once the files are in place, in the same remote command: one
        round trip. A dropped connection is a transient ``SSHError`` saying the command may or may not
        have run (the caller finds out, as after a lost ``sbatch`` answer)."""
        upload, archive = self._upload(directory, files)
        # A line the files were written, then what the command prints: stdout tells the two failures apart.
        code, stdout, stderr = self._exec(
            f"{upload}echo {_WRITTEN}; {command}", None, ssh_channel.text, stdin=archive
        )
        written, _, rest = stdout.partition("\n")
        if written != _WRITTEN:
            raise CommandError(f"writing {directory}", code, "", stderr)
        return CommandResult(code, rest, stderr)

    def _upload(self, directory: str, files: Mapping[str, tuple[bytes, int]]) -> tuple[str, bytes]:
        """The shell of ``write_files`` (it exits on failure, goes on when the directory is in place) and
        the tar for its stdin."""
        path = self._path(directory)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name, (data, mode) in files.items():
                member = tarfile.TarInfo(name)
                member.size, member.mode, member.mtime = len(data), mode, int(time.time())
                archive.addfile(member, io.BytesIO(data))
        quoted, quoted_tmp = shlex.quote(path), shlex.quote(tmp)
        # complete DIR: every file there at its size (GNU tar takes a stream cut between two members for
        # a whole archive and exits 0).
        checks = " && ".join(
            f'[ -f "$1"/{shlex.quote(name)} ] && [ $(wc -c < "$1"/{shlex.quote(name)}) -eq {len(data)} ]'
            for name, (data, _) in files.items()
        )
        command = (
            f"umask 077; dir={quoted}; tmp={quoted_tmp}; complete() {{ {checks or 'true'}; }}; "
            # Whatever ends this shell (tar failing on a cut stream, a hangup, a closed pipe) removes the
            # temporary directory; after the rename there is nothing left to remove.
            """trap 'rm -rf "$tmp"' EXIT; trap 'exit 129' HUP; trap 'exit 141' PIPE; trap 'exit 143' TERM; """
            f'{{ mkdir -p {shlex.quote(posixpath.dirname(path))} && mkdir "$tmp" && '
            """tar -xf - -C "$tmp" --no-same-owner --no-same-permissions && complete "$tmp" && mv -T "$tmp" "$dir"; } || """
            # An earlier attempt (its answer lost) may have put the directory in place already.
            """{ code=$?; complete "$dir" || exit $code; }; """
        )
        return command, buffer.getvalue()

    def read_existing(self, paths: Sequence[str]) -> dict[str, bytes]:
        """All of ``paths`` that exist in one stream: one command per 500 directories, which finds the
        existing ones (``wanted_files``: the far side lists the directories and keeps the wanted names, so a
        check costs what appeared, not what was asked) and sends them as a raw tar read as it arrives (no
        SFTP round trip per 32 KB chunk, no base64). A 200 MB result costs its bytes once here, plus the
        value unpickled from them. Each file comes whole or the call fails (``ssh_channel.untar`` checks sizes
        and the archive's end): a transient ``SSHError`` when the connection dropped, after which the caller
        fetches again (``Job``)."""
        found: dict[str, bytes] = {}
        for asked in self._by_directories(paths):
            wanted = list(asked)
            code, files, stderr = self._exec(
                f"{wanted_files.command(wanted)} | tar -cf - -P -T -",
                300,
                ssh_channel.untar,
                stdin=wanted_files.describe(wanted).encode(),
                what=f"the fetch of {len(wanted)} file(s)",
            )
            if code != 0:
                raise CommandError("tar of result files (find | awk | tar)", code, "", stderr)
            found.update({path: data for name, data in files.items() for path in asked.get(name, ())})
        return found

    def _by_directories(self, paths: Sequence[str]) -> list[dict[str, list[str]]]:
        """``paths`` as full far-side names (each -> the paths given for it), in groups of at most
        ``_FILES_PER_COMMAND`` directories: the directories go on a command line, kept far below ARG_MAX."""
        asked: dict[str, list[str]] = {}
        for path in paths:
            full = self._path(path)
            asked.setdefault(full if posixpath.dirname(full) else f"./{full}", []).append(path)
        by_directory: dict[str, list[str]] = {}
        for full in asked:
            by_directory.setdefault(posixpath.dirname(full), []).append(full)
        directories = sorted(by_directory)
        return [
            {
                full: asked[full]
                for d in directories[start : start + _FILES_PER_COMMAND]
                for full in by_directory[d]
            }
            for start in range(0, len(directories), _FILES_PER_COMMAND)
        ]

    def exists(self, path: str) -> bool:
        return self._sftp_call(lambda sftp: ssh_channel.sftp_exists(sftp, self._path(path)))

    def makedirs(self, path: str) -> None:
        path = self._path(path)

        def make(sftp: Any) -> None:
            missing = []
            current = path.rstrip("/")
            while current and not ssh_channel.sftp_exists(sftp, current):
                missing.append(current)
                current = posixpath.dirname(current)
            for directory in reversed(missing):
                try:
                    sftp.mkdir(directory, mode=0o700)  # private, as every directory the SDK makes
                except OSError:
                    # another process may have created it meanwhile
                    if not ssh_channel.sftp_exists(sftp, directory):
                        raise

        if path:
            self._sftp_call(make)

    def home(self) -> str:
        if self._home is None:
            self._home = self._sftp_call(lambda sftp: sftp.normalize("."))
        return self._home
