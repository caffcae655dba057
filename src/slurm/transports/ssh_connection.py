"""One SSH connection to a login node (paramiko), reused, and reconnected when dropped: ``SSHConnection``
runs commands on it and SFTP operations on its one session; ``slurm.transports.ssh.SSHTransport`` adds
the files.

Key authentication only, and the server's host key must be known (``known_host_key``) unless the caller
explicitly opts out with ``trust_unknown_host=True``: a silently trusted key would let anyone on the path
impersonate the cluster and receive the pickled code and data.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from slurm.deadline import operation_timeout
from slurm.errors import CommandError, ConfigError, SSHError
from slurm.transports import ssh_channel, ssh_keys
from slurm.transports.base import COMMAND_TIMEOUT, PRIVATE_UMASK, CommandResult, Transport
from slurm.transports.ssh_keys import parse_public_key

#: Longest one SFTP request may take without an answer (a frozen login node must not hold a wait).
_SFTP_TIMEOUT = 60.0

T = TypeVar("T")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SSHConnection(Transport):
    """The connection and the commands of an ``SSHTransport`` (its files are the subclass's)."""

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
            # slurm.submission._submit_once, which looks the job up first).
            raise SSHError(
                f"connection to {self.address} dropped during {what} ({exc!r}); safe to try again"
                if what is not None
                else f"connection to {self.address} dropped while running: {command} ({exc!r}); "
                "it may or may not have run",
                transient=True,
            ) from exc
        except BaseException:
            # Interrupted (Ctrl-C, SystemExit) inside paramiko, which may have left one of its locks held
            # or a packet half-sent: the next command (a map cancelling what it submitted, say) starts on a
            # fresh connection instead of waiting on this one for good.
            self._forget_transport(channel.get_transport())
            raise
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
