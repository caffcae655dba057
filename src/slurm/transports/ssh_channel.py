"""paramiko's channels and SFTP made safe for ``slurm.transports.ssh``: a command's outputs read whole or
failed as a dropped connection (never short), stdin sent without quadratic copying, a result tar checked to
its end-of-archive marker, files created owner-only, and which errors mean the connection is gone."""

from __future__ import annotations

import logging
import tarfile
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from slurm.errors import ConfigError

#: Piece size read_existing reads a result file's bytes in.
PIECE = 1 << 20
#: Most bytes one send on a channel copies (paramiko sends at most one packet, ~32 KB, per call anyway).
SEND_SLICE = 1 << 16
#: Longest a command's output may look ended before paramiko says how (end-of-file, or closed): see settle.
SETTLE = 5.0

try:
    import paramiko
except ImportError:  # pragma: no cover - exercised only without the extra installed
    paramiko = None  # type: ignore[assignment]
else:
    # paramiko logs a failed handshake (an sshd still starting, a port that closes at once) with a traceback
    # from its own thread. With no handler of the application's, logging's last resort prints that to
    # stderr beside the SDK's own error, which names the cause already. A NullHandler, as the logging docs
    # ask of libraries, keeps it off the terminal; an application that configures logging still gets it.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
T = TypeVar("T")
# What a dropped connection looks like from paramiko besides SSHException: EOF, or the socket reset/closed.
DROPPED = (EOFError, ConnectionError)


def require_paramiko() -> Any:
    if paramiko is None:
        raise ConfigError("the SSH backend needs paramiko: pip install 'slurm-sdk[ssh]'")
    return paramiko


def lost(exc: Exception, channel: Any) -> bool:
    """Whether ``exc``, raised while a command ran on ``channel``, means the connection (or the channel)
    is gone: paramiko's errors, or an OS error on a closed channel or dead transport ("Socket is closed")."""
    if isinstance(exc, (*DROPPED, require_paramiko().SSHException)):
        return True
    transport = channel.get_transport()
    return isinstance(exc, OSError) and (channel.closed or transport is None or not transport.is_active())


def is_drop(exc: Exception, client: Any) -> bool:
    """Whether ``exc`` means the connection is gone (reconnect) rather than a failed file operation."""
    if isinstance(exc, (*DROPPED, require_paramiko().SSHException)):
        return True
    transport = client.get_transport()
    return isinstance(exc, OSError) and (transport is None or not transport.is_active())


def open_sftp(client: Any, timeout: float) -> Any:
    """An SFTP session whose opening is bounded too (paramiko's open_sftp may wait up to an hour)."""
    channel = client.get_transport().open_session(timeout=timeout)
    channel.settimeout(timeout)
    channel.invoke_subsystem("sftp")
    return require_paramiko().SFTPClient(channel)


def create_private(sftp: Any, path: str) -> Any:
    """``sftp.open(path, "wb")`` for a new file that is owner-only (0600) from its creation: paramiko's
    ``open`` sends no permissions, so the server would create it 0666 less its umask (0644 mostly), and
    another user who opened it in that moment could read what is written later."""
    pm = require_paramiko()
    attributes = pm.SFTPAttributes()
    attributes.st_mode = 0o600
    flags = pm.sftp.SFTP_FLAG_WRITE | pm.sftp.SFTP_FLAG_CREATE | pm.sftp.SFTP_FLAG_EXCL
    kind, message = sftp._request(pm.sftp.CMD_OPEN, sftp._adjust_cwd(path), flags, attributes)
    if kind != pm.sftp.CMD_HANDLE:
        raise pm.SFTPError("Expected handle")
    return pm.SFTPFile(sftp, message.get_binary(), "wb")


def sftp_exists(sftp: Any, path: str) -> bool:
    try:
        sftp.stat(path)
    except FileNotFoundError:
        return False
    return True


def settle(channel: Any) -> None:
    """Until the server's end-of-file, or the channel closed, for up to ``SETTLE`` seconds. An output can
    look ended before either: paramiko's read sends a window adjustment, and on a connection that just
    dropped that send fails and the read returns short (EOFError swallowed) before paramiko's reader thread
    has closed the channel; it does so at once, the socket being dead."""
    end = time.monotonic() + SETTLE
    while not (channel.eof_received or channel.closed) and time.monotonic() < end:
        time.sleep(0.005)


def close_quietly(channel: Any) -> None:
    """Close ``channel``, whatever state the connection is in: on a connection that just dropped, paramiko's
    close sends a message and raises (EOFError) unless its reader thread noticed the drop first; that
    error must not replace the one being raised, nor fail a command that had answered."""
    try:
        channel.close()
    except Exception:
        pass


class UnreadableOutput(Exception):
    """``consume`` could not parse a command's output while the connection was fine and the output still
    coming: not a drop, and not something a retry mends."""


def read_all(channel: Any, consume: Callable[[Any], T]) -> tuple[T, str, Exception | None]:
    """Drain stdout (through ``consume``) and stderr together: reading one to the end first can
    deadlock when the other fills. Returns what ``consume`` made of stdout, stderr, and the error
    ``consume`` raised on an output the command ended itself (its exit status then tells a failed command
    from a dropped connection; what ``consume`` returned is then meaningless).

    An output that ended without the server's end-of-file was cut by a dropped connection: an
    ``EOFError``, whether or not ``consume`` noticed (a tar cut between two members parses fine).
    ``consume`` must read to the end of the output."""
    stderr: list[bytes] = []
    failures: list[BaseException] = []

    out, err = ChannelReader(channel.recv), ChannelReader(channel.recv_stderr)

    def drain_stderr() -> None:
        try:
            stderr.append(err.read())
        except BaseException as exc:
            failures.append(exc)

    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    stdout: Any = None
    unreadable: Exception | None = None
    try:
        try:
            stdout = consume(out)
        except TimeoutError:
            raise  # no byte for the channel's timeout: a frozen login node (see _exec)
        except Exception as exc:
            if out.failed is not None:
                raise EOFError("the connection dropped while the output was coming") from out.failed
            settle(channel)
            if channel.closed and not channel.eof_received:
                raise EOFError("the connection dropped while the output was coming") from exc
            if not channel.eof_received:
                raise UnreadableOutput(exc) from exc
            unreadable = exc
        else:
            if out.failed is not None:
                raise EOFError("the connection dropped while the output was coming") from out.failed
            settle(channel)
            # Closed with neither end-of-file nor exit status: dropped (a server that skips the optional
            # end-of-file still sends the status first).
            if channel.closed and not channel.eof_received and channel.exit_status == -1:
                raise EOFError("the output was cut off: the connection dropped before its end")
    except BaseException:
        close_quietly(channel)  # unblocks the stderr reader
        raise
    finally:
        reader.join()
    if failures:
        raise failures[0]
    if err.failed is not None:
        raise EOFError("the connection dropped while stderr was coming") from err.failed
    return stdout, b"".join(stderr).decode(errors="replace"), unreadable


class ChannelReader:
    """One of a command's outputs as a binary file, read straight from the channel (``recv`` or
    ``recv_stderr``). paramiko's own file (``makefile``) swallows the EOFError of the window adjustment a
    read sends on a connection that just dropped, and returns short, that read's bytes lost: a later read
    goes on past a gap, and a complete-looking output may miss a piece. Here that error is raised, and
    remembered in ``failed``: the output is a dropped connection's, whatever else it looks like."""

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self.recv = recv
        self.failed: Exception | None = None

    def read(self, size: int = -1, /) -> bytes:
        if size is not None and size >= 0:
            return self._recv(size) if size else b""
        pieces = []
        while piece := self._recv(PIECE):
            pieces.append(piece)
        return b"".join(pieces)

    def _recv(self, size: int) -> bytes:
        try:
            return self.recv(size)
        except TimeoutError:
            raise
        except Exception as exc:
            self.failed = exc
            raise


def send_all(channel: Any, data: bytes) -> None:
    """``channel.sendall(data)`` without its cost: paramiko's sendall re-slices the unsent rest after every
    packet (about 32 KB), copying O(n²) bytes; a 100 MB payload took most of an hour. Here each packet
    copies only a slice of at most ``SEND_SLICE`` bytes out of a view of ``data``."""
    with memoryview(data) as view:
        sent = 0
        while sent < len(view):
            count = channel.send(view[sent : sent + SEND_SLICE].tobytes())
            if count == 0:  # paramiko's answer once the channel is at EOF: no byte will ever go
                raise EOFError(f"the channel closed after {sent} of {len(view)} bytes of stdin")
            sent += count


def text(stream: Any) -> str:
    return str(stream.read().decode(errors="replace"))


class Counted:
    """A binary stream, counting the bytes read from it."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.count = raw, 0

    def read(self, size: int = -1, /) -> bytes:
        data: bytes = self.raw.read(size)
        self.count += len(data)
        return data


def untar(stream: Any) -> dict[str, bytes]:
    """The regular files of a tar read from ``stream`` as it arrives (stream mode: no seeking). Each file
    is read in 1 MiB pieces into a buffer of its size: tarfile's own ``read()`` of a whole member holds it
    three times over at its peak, a big result at most twice here (then once).

    Verified, so a cut stream never passes for a whole one: each file must arrive with the size its
    header gives, and the archive must end with tar's end-of-archive marker (a stream cut between two
    members would otherwise parse fine, one file short). ``EOFError`` otherwise."""
    found: dict[str, bytes] = {}
    counted: Any = Counted(stream)  # tarfile reads it as a file
    with tarfile.open(fileobj=counted, mode="r|") as archive:
        for member in archive:
            extracted = archive.extractfile(member) if member.isfile() else None
            if extracted is None:
                continue
            buffer = bytearray(member.size)
            with memoryview(buffer) as view:
                filled = 0
                while filled < member.size:
                    piece = extracted.read(min(PIECE, member.size - filled))
                    if not piece:
                        raise EOFError(f"the tar stream ended inside {member.name}")
                    view[filled : filled + len(piece)] = piece
                    filled += len(piece)
            found[member.name] = bytes(buffer)  # a copy, but the buffer goes with it: 2x for a moment
        marker_at = archive.offset  # where tarfile met the end: two zero blocks in a whole archive
    while counted.read(PIECE):  # the rest of tar's last record: the stream ends by itself
        pass
    if counted.count < marker_at + 2 * tarfile.BLOCKSIZE:
        raise EOFError(
            f"the tar stream ended after {counted.count} bytes, before its end-of-archive marker "
            f"(at byte {marker_at})"
        )
    return found
