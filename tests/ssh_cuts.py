"""A transport hook for fault tests: the SDK's SSH connection dies ``offset`` bytes into the stdin or the
stdout of the next command that matches, as a dropped connection does.

The bytes before the offset go through; then ``drop`` ends the connection (by default the socket is shut
down here; the dev-cluster tests kill the server's session instead) and the rest is lost: a send fails as
it does on a dead connection, a read sees the output end there, unless the server's whole output had
arrived before the drop (then it is read, as it would be). An offset past the end drops the connection
after the whole stream, before the exit status. Only the first matching command is cut; the SDK's retries
get a working connection. Used by tests/slow/test_ssh_drops.py and tests/integration/test_transfer_faults.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from slurm.transports import ssh, ssh_channel

#: How long a drop may take to reach paramiko (its reader thread sees the socket end) before the test fails.
DROP_NOTICED_WITHIN = 30.0
#: Bytes of a command's output that may have arrived unread when the drop lands (paramiko's channel window
#: is 2 MiB): a cut more than this before the end of the output always loses some of it.
IN_FLIGHT = 4 << 20


def shut_socket(channel: Any) -> None:
    """Drop the connection from this side: its socket shut down in both directions."""
    channel.get_transport().sock.shutdown(socket.SHUT_RDWR)


class Cut:
    """Where and how to cut: ``stream`` "stdin" or "stdout" of the first command ``matches`` accepts."""

    def __init__(
        self,
        stream: str,
        offset: int,
        matches: Callable[[str], bool],
        drop: Callable[[Any], None] = shut_socket,
        *,
        wait_until_noticed: bool = True,
    ) -> None:
        if stream not in ("stdin", "stdout"):
            raise ValueError(f"stream must be 'stdin' or 'stdout', not {stream!r}")
        self.stream, self.offset, self.matches, self.drop = stream, offset, matches, drop
        #: False: right after the drop, a cut stdin goes on sending and a cut stdout goes on reading what
        #: paramiko still hands out, racing its reader thread to notice the drop (a send, a read's window
        #: adjustment or the channel's close then fails inside paramiko, as on a real network).
        self.wait_until_noticed = wait_until_noticed
        self.armed = False  # a matching command started
        self.attempts = 0  # matching commands started: the cut one, then the retries
        self.dropped_at: int | None = None  # the byte of the stream the connection died at

    def _drop(self, channel: Any, at: int, *, wait: bool = True) -> None:
        self.dropped_at = at
        self.drop(channel)
        if not wait:
            return
        end = time.monotonic() + DROP_NOTICED_WITHIN
        while not channel.closed:  # paramiko noticed: what follows behaves as after a real drop
            if time.monotonic() > end:
                raise AssertionError(
                    f"the dropped connection still looks open after {DROP_NOTICED_WITHIN:g}s"
                )
            time.sleep(0.005)


def install(monkeypatch: pytest.MonkeyPatch, cut: Cut) -> Cut:
    """Cut the SSH connection of every ``SSHTransport`` as ``cut`` says (once); undone with ``monkeypatch``."""
    current = threading.local()
    exec_, send_all, read_all = ssh.SSHTransport._exec, ssh_channel.send_all, ssh_channel.read_all

    def cut_exec(self: Any, command: str, *args: Any, **kwargs: Any) -> Any:
        matches = cut.matches(command)
        cut.attempts += matches
        current.armed = not cut.armed and matches
        cut.armed = cut.armed or current.armed
        try:
            return exec_(self, command, *args, **kwargs)
        finally:
            current.armed = False

    def cut_send_all(channel: Any, data: bytes) -> None:
        if not getattr(current, "armed", False) or cut.stream != "stdin":
            return send_all(channel, data)
        send_all(channel, data[: cut.offset])
        cut._drop(channel, min(cut.offset, len(data)), wait=cut.wait_until_noticed)
        send_all(channel, data[cut.offset :])  # fails as on a dead connection (nothing left: no-op)
        return None

    def cut_read_all(channel: Any, consume: Callable[[Any], Any]) -> Any:
        if not getattr(current, "armed", False) or cut.stream != "stdout":
            if getattr(current, "armed", False) and cut.dropped_at is None:  # stdin was shorter than offset
                cut._drop(channel, cut.offset)
            return read_all(channel, consume)
        return read_all(channel, lambda raw: consume(_CutReader(raw, cut, channel)))

    monkeypatch.setattr(ssh.SSHTransport, "_exec", cut_exec)
    monkeypatch.setattr(ssh_channel, "send_all", cut_send_all)
    monkeypatch.setattr(ssh_channel, "read_all", cut_read_all)
    return cut


class _CutReader:
    """A command's stdout that ends ``cut.offset`` bytes in: the connection is dropped there."""

    def __init__(self, raw: Any, cut: Cut, channel: Any) -> None:
        self.raw, self.cut, self.channel = raw, cut, channel
        self.read_so_far = 0
        self.lost = False  # the bytes after the cut never arrived

    def read(self, size: int = -1, /) -> bytes:
        if self.lost:
            return b""
        if self.cut.dropped_at is None:
            left = self.cut.offset - self.read_so_far
            if left <= 0:
                self._drop()
                if self.lost:
                    return b""
            else:
                size = left if size < 0 else min(size, left)
        data: bytes = self.raw.read(size)
        self.read_so_far += len(data)
        if not data and self.cut.dropped_at is None:  # the whole output came: drop before the exit status
            self._drop()
        return data

    def _drop(self) -> None:
        if not self.cut.wait_until_noticed:
            self.cut._drop(self.channel, self.read_so_far, wait=False)
            return  # what paramiko delivers next, and how the stream ends, is up to it
        self.cut._drop(self.channel, self.read_so_far)
        # What paramiko had received before the drop is read on only if it was the server's whole output
        # (a real drop loses nothing that arrived); otherwise the stream ends at the cut.
        self.lost = not self.channel.eof_received
