"""slurmctld's one-second tick, and how a benchmark keeps from locking onto it.

slurmctld never places a batch job inside the ``sbatch`` RPC: the RPC queues it and asks for a scheduling
pass, which its background thread runs when it next wakes, at the next whole second of the wall clock
(Slurm 24.11, ``_slurmctld_background``: a timed wait until ``time(NULL) + 1``). ``srun``/``salloc`` are
placed inside their RPC instead, which is why ``srun true`` takes ~40 ms and a batch job waits 0-1 s before
it even starts, whatever ``SchedulerParameters`` say (``sched_min_interval``/``batch_sched_delay`` only
decide whether that tick runs a pass).

So where a submission falls within the second decides most of a trivial job's latency. Rounds that follow
each other at a steady pace keep landing on the same part of the second: two interleaved round trips that
add up to about one second put one side just before the tick (fast) and the other just after it (slow),
round after round. Starting every round at a chosen point of the second, spread evenly over the rounds
and the same for each side, measures what a user who submits at a random moment sees.
"""

from __future__ import annotations

import time


def offsets(rounds: int) -> list[float]:
    """``rounds`` points spread evenly over a second (the middle of each of ``rounds`` equal slices), in an
    order that alternates early and late so a short run still covers both halves."""
    spread = [(index + 0.5) / rounds for index in range(rounds)]
    return spread[0::2] + spread[1::2]


def wait_for(offset: float) -> None:
    """Sleep until the wall clock is ``offset`` seconds past a whole second (0 <= offset < 1)."""
    now = time.time()
    time.sleep((offset - now % 1.0) % 1.0)


def past_whole_second(moment: float) -> float:
    """How far ``moment`` (POSIX time) is past the whole second before it."""
    return moment % 1.0
