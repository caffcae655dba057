"""Following a job's logs while it runs: read each log from the last offset through the transport.

Reads are bounded (``CHUNK`` bytes per read) and paced by the waiting engine (``slurm.waiting.Wait``):
quick while output flows, backing off to the cluster's ``result_poll_interval_seconds`` while the log is
quiet (log reads, like result-file checks, cost the login node, not slurmctld). Whether the job has ended
is learnt the way waits learn it, in the same ``Wait.check``: its result file, then the cluster's shared
``Watcher`` on its own cadence, so following adds no scheduler queries of its own. Following ends once the job has ended and a read *after* that was seen comes back empty (nothing
written before the end is lost), or raises ``JobTimeoutError``.
"""

from __future__ import annotations

import codecs
import collections
from collections.abc import Iterator, Sequence

from slurm.waiting import Wait, Waited, clock_of, has_ended

#: Largest read per request: a huge log is fetched in pieces, never all at once.
CHUNK = 1 << 20


class LineSplitter:
    """Bytes in, complete lines out (without their newline); a character split across two reads is
    decoded once both halves are in."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._partial + self._decoder.decode(data)
        *lines, self._partial = text.split("\n")
        return lines

    def close(self) -> list[str]:
        """The unterminated last line, if any."""
        rest, self._partial = self._partial + self._decoder.decode(b"", final=True), ""
        return [rest] if rest else []


def follow(
    job: Waited,
    streams: Sequence[str] = ("stdout",),
    *,
    last: int | None = None,
    timeout: float | None = None,
) -> Iterator[tuple[str, str]]:
    """``(stream, line)`` as lines appear in the job's logs, until the job ends and the logs are drained.

    ``last``: start with only the last ``last`` lines written so far (``tail -n``), instead of all of them.
    """
    readers = [_Reader(job, stream) for stream in streams]
    if last is not None:
        for reader in readers:
            yield from ((reader.stream, line) for line in reader.backlog(last))
    yield from _Pacer(job, readers, timeout).run()


class _Reader:
    """One log file of one job, read from where the previous read stopped."""

    def __init__(self, job: Waited, stream: str) -> None:
        self.stream, self.path = stream, job.log_path(stream)
        self.transport, self._retry = job.cluster.backend.transport, job.cluster._retry
        self.offset = 0
        self.splitter = LineSplitter()

    def read(self) -> tuple[list[str], bool]:
        """New complete lines, and whether the read was cut at ``CHUNK`` (more is waiting). A file shorter
        than what was read of it was truncated (Slurm starts a requeued job's log over): read it again
        from its start, like ``tail -F``."""
        data, size = self._retry(lambda: self.transport.read_from(self.path, self.offset, CHUNK))
        if 0 <= size < self.offset:
            self.offset, self.splitter = 0, LineSplitter()
            data, size = self._retry(lambda: self.transport.read_from(self.path, 0, CHUNK))
        self.offset += len(data)
        return self.splitter.feed(data), len(data) == CHUNK

    def backlog(self, count: int) -> list[str]:
        """The last ``count`` complete lines written so far; memory stays bounded by ``count``."""
        kept: collections.deque[str] = collections.deque(maxlen=max(count, 0))
        more = True
        while more:
            lines, more = self.read()
            kept.extend(lines)
        return list(kept)


class _Pacer:
    """The follow loop: when to read, when to look for the job's end, when to stop."""

    def __init__(self, job: Waited, readers: list[_Reader], timeout: float | None) -> None:
        self.job, self.readers = job, readers
        self.wait = Wait(clock_of([job]), timeout)

    def run(self) -> Iterator[tuple[str, str]]:
        while True:
            self.wait.stop_if_over([self.job])  # its deadline, or without one the outage limit
            ended = has_ended(self.job.last_state)  # decided before reading: what follows is complete
            flowing = False
            for reader in self.readers:
                lines, more = reader.read()
                flowing = flowing or bool(lines) or more
                yield from ((reader.stream, line) for line in lines)
            if ended and not flowing:
                for reader in self.readers:
                    yield from ((reader.stream, line) for line in reader.splitter.close())
                return
            if flowing:
                self.wait.restart()
                continue
            self.wait.check([self.job])  # the result file, then the scheduler if the watcher says it is due
            self.wait.sleep([self.job])
