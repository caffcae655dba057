"""Commands and files on a login node over SSH (paramiko): one connection, reused, reconnected when dropped.

Key authentication only, and the server's host key must be known (``known_host_key``) unless the caller
explicitly opts out with ``trust_unknown_host=True``: a silently trusted key would let anyone on the path
impersonate the cluster and receive the pickled code and data.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import shlex
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from slurm.deadline import operation_timeout
from slurm.errors import CommandError, ConfigError, SSHError
from slurm.transports import ssh_channel, ssh_keys, wanted_files
from slurm.transports.base import COMMAND_TIMEOUT, PRIVATE_UMASK, CommandResult, Transport

# Part of this module's interface: key parsing, and the note a removed key leaves (see ssh_keys).
from slurm.transports.ssh_keys import KEY_REMOVED_SUFFIX as KEY_REMOVED_SUFFIX
from slurm.transports.ssh_keys import parse_public_key as parse_public_key

#: Directories listed per command by existing (keeps the command line far below ARG_MAX).
_FILES_PER_COMMAND = 500
#: Longest one SFTP request may take without an answer (a frozen login node must not hold a wait).
_SFTP_TIMEOUT = 60.0
#: The line ``write_files_then`` prints once the files are in place, before its command runs.
_WRITTEN = "slurm-sdk:files-written"


T = TypeVar("T")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SSHTransport(Transport):
    remote = True

    def __init__(
        self,
        host: str,
        port: int = 22,
        user: str | None = None,
        key_filename: str | None = None,
        known_host_key: str | None = None,
        connect_timeout: float = 10,
        trust_unknown_host: bool = False,
    ) -> None:
        if not key_filename:
            raise ConfigError(f"SSH to {host}:{port} needs key_filename (only key authentication is used)")
        self.host, self.port, self.user = host, int(port), user
        self.key_filename = os.path.expanduser(key_filename)
        self.known_host_key = parse_public_key(known_host_key) if known_host_key else None
        self.connect_timeout = connect_timeout
        self.trust_unknown_host = trust_unknown_host
        self._client: Any = None
        self._sftp: tuple[Any, Any] | None = None  # (client it belongs to, SFTP session)
        self._home: str | None = None
        self._key_was_there = False  # connected with the key once: its absence now is news
        self._connect_lock = threading.RLock()  # one connection, opened once even when threads race
        #: Where the connection settings came from, asked again before each reconnect (``Cluster.from_env``
        #: sets it for a config file): the backend options when they changed since, else None.
        self.reload_settings: Callable[[], Mapping[str, Any] | None] | None = None
        self._sftp_lock = threading.Lock()  # SFTP requests of one session go one at a time
        #: Remote commands run so far (each one a channel, i.e. at least one round trip), and SFTP
        #: operations (each several requests): what a submission or a result check costs, counted.
        self.commands = 0
        self.sftp_operations = 0

    # -- connection -------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    def _connected(self) -> Any:
        """The live client, connecting (or reconnecting after a drop) when needed."""
        with self._connect_lock:
            transport = self._client.get_transport() if self._client else None
            if transport is None or not transport.is_active():
                self._reset()
                self._reload()
                self._client = self._connect()
            return self._client

    def _reload(self) -> None:
        """New connection settings from where they came from, when they changed (a dev cluster's
        ``slurm-dev-cluster config`` run again): a long-lived client follows them on its next connection.
        A file that cannot be read now keeps the settings it had."""
        if self.reload_settings is None:
            return
        try:
            settings = self.reload_settings()
        except Exception:  # a half-written or broken file: the next reconnect tries again
            return
        if not settings or settings.get("type", "ssh") != "ssh":
            return
        self.host = str(settings.get("host", self.host))
        self.port = int(settings.get("port", 22))
        self.user = settings.get("user", self.user)
        if settings.get("key_filename"):
            self.key_filename = os.path.expanduser(str(settings["key_filename"]))
        if settings.get("known_host_key"):
            self.known_host_key = parse_public_key(str(settings["known_host_key"]))

    def _connect(self) -> Any:
        pm = ssh_channel.require_paramiko()
        if not os.path.isfile(self.key_filename):
            raise ssh_keys.missing_key_error(self.key_filename, self.address, self._key_was_there)
        client = pm.SSHClient()
        if self.known_host_key is not None:
            name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
            client.get_host_keys().add(name, self.known_host_key.get_name(), self.known_host_key)
        client.set_missing_host_key_policy(
            pm.AutoAddPolicy() if self.trust_unknown_host else ssh_keys.RejectUnknownHost()
        )
        timeout = operation_timeout(self.connect_timeout)
        try:
            client.connect(
                self.host,
                self.port,
                username=self.user,
                key_filename=self.key_filename,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                look_for_keys=False,
                allow_agent=False,
            )
        except SSHError:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise ssh_keys.connect_error(
                exc,
                host=self.host,
                port=self.port,
                user=self.user,
                key_filename=self.key_filename,
                address=self.address,
            ) from exc
        self._key_was_there = True
        transport = client.get_transport()
        transport.set_keepalive(30)  # keeps NAT/firewall state alive between polls; surfaces dead peers
        # Every command is a few small packets each way; with Nagle's algorithm on, each one waits for
        # the peer's delayed ACK (~40 ms). OpenSSH's client turns Nagle off too; paramiko does not.
        transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.known_host_key is None:
            # Trusted once (trust_unknown_host): reconnects must meet the same server, not any server.
            self.known_host_key = transport.get_remote_server_key()
        return client

    def _reset(self) -> None:
        """Forget a dead connection (closing what's left of it)."""
        for closable in (self._sftp[1] if self._sftp else None, self._client):
            if closable is not None:
                try:
                    closable.close()
                except Exception:
                    pass
        self._sftp = self._client = None

    def close(self) -> None:
        with self._connect_lock:
            self._reset()

    # -- commands ---------------------------------------------------------------------------------

    def run(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> CommandResult:
        bad = [k for k in (env or {}) if not _ENV_NAME.match(k)]
        if bad:
            raise ConfigError(f"invalid environment variable name(s) {bad} for a command on {self.address}")
        exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in (env or {}).items())
        returncode, stdout, stderr = self._exec(exports + command, timeout, ssh_channel.text)
        result = CommandResult(returncode, stdout, stderr)
        if check and returncode != 0:
            raise CommandError(command, returncode, stdout, stderr)
        return result

    def _exec(
        self,
        command: str,
        timeout: float | None,
        consume: Callable[[Any], T],
        stdin: bytes | None = None,
        *,
        what: str | None = None,
    ) -> tuple[int, T, str]:
        """Run ``command`` through ``sh -c`` on a fresh channel: ``stdin`` sent, then closed; stdout handed
        to ``consume`` as a binary file as it arrives (so big outputs stream instead of piling up), stderr
        drained meanwhile. Returns the exit status, what ``consume`` returned, and stderr.

        Whatever breaks once the connection is gone (paramiko's errors, a closed socket, a stream that
        ends early and so cannot be parsed by ``consume``) is a transient ``SSHError``, never the raw
        error: retried by the caller when that is safe. ``what`` names an operation that is safe to run
        again (an upload to a fresh name, a read): its messages say so instead of "it may or may not
        have run", which is what a plain command (sbatch) says."""
        timeout = operation_timeout(COMMAND_TIMEOUT if timeout is None else timeout)
        channel = self._open_channel()
        self.commands += 1
        unreadable: Exception | None = None
        try:
            channel.settimeout(timeout)  # every read on it, stdout and stderr alike
            # The login shell of the user differs between clusters; sh -c gives the same semantics everywhere.
            channel.exec_command("sh -c " + shlex.quote(PRIVATE_UMASK + command))
            if stdin is not None:
                ssh_channel.send_all(channel, stdin)
            channel.shutdown_write()
            stdout, stderr, unreadable = ssh_channel.read_all(channel, consume)
            if not channel.status_event.wait(timeout):
                raise TimeoutError("no exit status")
            returncode = channel.recv_exit_status()
            if returncode == -1:
                # paramiko's way of saying the channel closed without an exit status: the connection
                # dropped mid-command, which is not an answer from the command.
                raise EOFError("channel closed without an exit status") from unreadable
        except TimeoutError as exc:
            # A login node that does not answer within the timeout is frozen or gone: start afresh next time.
            self._forget_transport(channel.get_transport())
            raise SSHError(
                f"{what or 'command'} on {self.address} did not finish within {timeout:.3g}s"
                + (f": {command}; it may or may not have run" if what is None else "; safe to try again"),
                transient=True,
            ) from exc
        except ssh_channel.UnreadableOutput as exc:
            raise SSHError(
                f"the output of {what or command} on {self.address} is not what was expected: {exc.__cause__!r}"
            ) from exc.__cause__
        except Exception as exc:
            if not ssh_channel.lost(exc, channel):
                raise
            # Not re-run here: the command may already have run (e.g. sbatch); callers decide (see
            # Cluster._submit_once, which looks the job up first).
            raise SSHError(
                f"connection to {self.address} dropped during {what} ({exc!r}); safe to try again"
                if what is not None
                else f"connection to {self.address} dropped while running: {command} ({exc!r}); "
                "it may or may not have run",
                transient=True,
            ) from exc
        finally:
            ssh_channel.close_quietly(channel)
        if unreadable is not None:
            # The command ended with a status, yet its output could not be read: not a dropped connection.
            if returncode != 0:
                raise CommandError(what or command, returncode, "", stderr) from unreadable
            raise SSHError(
                f"the output of {what or command} on {self.address} is unreadable though it succeeded: "
                f"{unreadable!r}"
            ) from unreadable
        return returncode, stdout, stderr

    def _open_channel(self) -> Any:
        """A fresh session channel; a drop noticed here is safe to retry since nothing was sent yet."""
        for attempt in (1, 2):
            client = self._connected()
            try:
                return client.get_transport().open_session(timeout=operation_timeout(self.connect_timeout))
            except Exception as exc:
                if not ssh_channel.is_drop(exc, client):
                    raise
                self._forget(client)
                if attempt == 2:
                    raise SSHError(
                        f"cannot open a session on {self.address} after reconnecting: {exc!r}", transient=True
                    ) from exc
        raise AssertionError("unreachable")

    def _forget_transport(self, transport: Any) -> None:
        with self._connect_lock:
            if self._client is not None and self._client.get_transport() is transport:
                self._reset()

    def _forget(self, client: Any) -> None:
        """Drop ``client`` so the next call reconnects (unless another thread already did)."""
        with self._connect_lock:
            if self._client is client:
                self._reset()

    # -- files ------------------------------------------------------------------------------------

    def _sftp_call(self, operation: Callable[[Any], T]) -> T:
        """Run an SFTP operation on the shared session; SFTP operations are idempotent, so retry once."""
        for attempt in (1, 2):
            client = self._connected()
            try:
                with self._sftp_lock:
                    self.sftp_operations += 1
                    timeout = operation_timeout(_SFTP_TIMEOUT)
                    if self._sftp is None or self._sftp[0] is not client:  # none yet, or one of a dead client
                        self._sftp = (client, ssh_channel.open_sftp(client, timeout))
                    self._sftp[1].get_channel().settimeout(timeout)
                    return operation(self._sftp[1])
            except Exception as exc:
                if isinstance(exc, socket.timeout | TimeoutError):
                    self._forget(client)  # frozen or gone: reconnect next time, but do not wait again now
                    raise SSHError(
                        f"SFTP on {self.address} got no answer within {timeout:.3g}s", transient=True
                    ) from exc
                if not ssh_channel.is_drop(exc, client):
                    raise  # a real file error (no such file, permission denied, ...)
                self._forget(client)
                if attempt == 2:
                    raise SSHError(
                        f"SFTP on {self.address} failed after reconnecting: {exc!r}", transient=True
                    ) from exc
        raise AssertionError("unreachable")

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

    def existing(self, paths: Sequence[str]) -> set[str]:
        """Which of ``paths`` exist: one command per 500 directories, whose answer is the existing ones
        alone (``wanted_files``), and the scheduler nothing."""
        found: set[str] = set()
        for asked in self._by_directories(paths):
            wanted = list(asked)
            code, listing, stderr = self._exec(
                wanted_files.command(wanted),
                None,
                ssh_channel.text,
                stdin=wanted_files.describe(wanted).encode(),
            )
            if code != 0:
                raise CommandError("listing result files (find | awk)", code, listing, stderr)
            found.update(path for name in listing.splitlines() for path in asked.get(name, ()))
        return found

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
