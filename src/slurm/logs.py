"""Following a job's logs while it runs: read each log from the last offset through the transport.

Reads are bounded (``CHUNK`` bytes per read) and paced: quick while output flows, backing off to the
cluster's ``result_poll_interval_seconds`` while the log is quiet (log reads, like result-file checks, cost the
login node, not slurmctld). Whether the job has ended is learnt the way waits learn it: its result file,
then the cluster's shared ``Watcher`` on its own cadence, so following adds no scheduler queries of its
own. Following ends once the job has ended and a read *after* that was seen comes back empty (nothing
written before the end is lost), or raises ``JobTimeoutError``.
"""

from __future__ import annotations

import codecs
import collections
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from slurm.errors import JobTimeoutError
from slurm.reattach import has_ended

if TYPE_CHECKING:
    from slurm.job import Job

#: Largest read per request: a huge log is fetched in pieces, never all at once.
CHUNK = 1 << 20
_FIRST_DELAY = 0.05
_BACKOFF = 1.25


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
    job: Job, streams: Sequence[str] = ("stdout",), *, last: int | None = None, timeout: float | None = None
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

    def __init__(self, job: Job, stream: str) -> None:
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
    """The follow loop: when to read, when to ask the scheduler, when to stop."""

    def __init__(self, job: Job, readers: list[_Reader], timeout: float | None) -> None:
        self.job, self.readers = job, readers
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout
        self.read_delay = _FIRST_DELAY

    def run(self) -> Iterator[tuple[str, str]]:
        while True:
            self._check_deadline()
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
                self.read_delay = _FIRST_DELAY
                continue
            self._look_for_the_end()
            self._sleep()

    def _look_for_the_end(self) -> None:
        """The result file (a stat on the login node), then the scheduler only if the shared watcher's
        cadence says a query is due: the same sources and pace as ``Job.wait``."""
        from slurm.job import _check_result_files

        job = self.job
        job.cluster._retry(lambda: _check_result_files([job]))
        if not job.last_state.is_terminal:
            job.cluster._watcher.query_if_due([job])

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise JobTimeoutError(
                self.job.job_id,
                self.job.last_state.value,
                self.timeout or 0,
                self.job._timeout_detail(time.monotonic()),
            )

    def _sleep(self) -> None:
        delay = self.read_delay
        if self.deadline is not None:
            delay = max(0.0, min(delay, self.deadline - time.monotonic()))
        time.sleep(delay)
        self.read_delay = min(self.read_delay * _BACKOFF, self.job.cluster.result_poll_interval_seconds)
