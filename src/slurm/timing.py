"""Opt-in phase timings: where the time of a submission and its result goes, measured, not guessed.

    from slurm import timing

    with timing.recording() as phases:
        cluster.submit(square, 7).result()
    # phases: [Phase("serialize", ...), Phase("prepare", ...), Phase("submit", ...), Phase("fetch", ...),
    #          Phase("wait", ...), Phase("unpickle", ...)]

Phases (``PHASES``) may be entered inside one another ("fetch", reading result files, happens inside
"wait" when the wait itself sees the result), but their times do not nest: a phase's ``seconds`` leave out
the phases entered inside it, so the totals add up to at most the time spent, never more. Each records
its duration and the wall-clock time it ended, so a benchmark can line them up with the job's own stamps (``Outcome.fields["started_at"]``, ``["finished_at"]``: the runner's
``time.time()`` when its module started and just before it wrote the result). Without a recording this
costs one ``ContextVar`` lookup per phase.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

#: Every phase name the SDK records, in the order they happen. "submit" is the job's files, ``sbatch`` and
#: the submission record: one remote command over SSH.
PHASES = ("serialize", "prepare", "submit", "wait", "fetch", "unpickle")


@dataclass(frozen=True)
class Phase:
    name: str
    #: Time spent in the phase itself, leaving out the phases entered inside it.
    seconds: float
    #: ``time.time()`` when the phase ended.
    ended_at: float


class _Open:
    """A phase being timed: how long the phases entered inside it took, to leave out of its own time."""

    __slots__ = ("inner",)

    def __init__(self) -> None:
        self.inner = 0.0


_recording: ContextVar[list[Phase] | None] = ContextVar("slurm_timing", default=None)
#: The innermost phase open in this context (thread or task), if any.
_open: ContextVar[_Open | None] = ContextVar("slurm_timing_open", default=None)


@contextlib.contextmanager
def recording() -> Iterator[list[Phase]]:
    """Collect the phases of everything the SDK does in this context (this thread or task)."""
    phases: list[Phase] = []
    token = _recording.set(phases)
    try:
        yield phases
    finally:
        _recording.reset(token)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as ``name`` when a recording is on; otherwise do nothing."""
    phases = _recording.get()
    if phases is None:
        yield
        return
    outer, this = _open.get(), _Open()
    token = _open.set(this)
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        _open.reset(token)
        if outer is not None:
            outer.inner += elapsed
        phases.append(Phase(name, elapsed - this.inner, time.time()))


def totals(phases: list[Phase]) -> dict[str, float]:
    """Seconds per phase name (a phase entered several times, e.g. "upload", is summed)."""
    summed: dict[str, float] = {}
    for entry in phases:
        summed[entry.name] = summed.get(entry.name, 0.0) + entry.seconds
    return summed
