"""``Cluster.map`` under a site's limits: arrays no larger than MaxArraySize, and no more jobs queued
than the submit limit allows; the rest is submitted as the user's jobs end.

Items keep their order (chunk after chunk, each an array of consecutive items), and a chunk is sent
once: a refusal for the submit limit queued nothing (sbatch said no), so it is sent again once there is
room. If the map is interrupted (Ctrl-C, an error), what it submitted is cancelled and nothing more is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from slurm.errors import BackendError, SubmitLimitError
from slurm.limits import SubmitLimit
from slurm.submission import SubmittingCluster, submit_calls

if TYPE_CHECKING:
    from slurm.job import Job
    from slurm.serialization import Call
    from slurm.task import Task

logger = logging.getLogger("slurm.limits")

#: Pauses between two looks at the queue while waiting for room: short at first (jobs end all the time
#: on a busy map), growing to ``_LONGEST_PAUSE`` (capped by the cluster's poll_interval_seconds).
_FIRST_PAUSE, _BACKOFF, _LONGEST_PAUSE = 0.5, 1.5, 5.0


def map_within_limits(
    cluster: SubmittingCluster,
    task: Task,
    calls: Sequence[Call],
    *,
    max_parallel: int | None,
    wait_for_capacity: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Job]:
    backend = cluster.backend
    array_size = backend.max_array_size()
    limit = backend.submit_limit()
    queued = backend.queued_jobs() if limit else 0
    if limit and calls and (limit.jobs < 1 or (not wait_for_capacity and queued + len(calls) > limit.jobs)):
        raise _no_room(limit, queued, len(calls))  # before anything is uploaded; a limit of 0 never has room
    throttle = _Throttle(cluster, limit, len(calls), sleep)
    jobs: list[Job] = []
    start = 0
    try:
        while start < len(calls):
            room = throttle.limit.jobs if throttle.limit else len(calls)
            count = min(array_size, len(calls) - start, room)
            if throttle.limit and queued + count > throttle.limit.jobs:
                queued = throttle.wait_for_room(count, start)
                continue
            try:
                jobs += submit_calls(
                    cluster, task, calls[start : start + count], array=True, max_parallel=max_parallel
                )
            except SubmitLimitError as refusal:
                if not wait_for_capacity:
                    raise
                queued = throttle.refused(refusal, start)
                continue
            start += count
            queued += count
            throttle.submitted(start, queued)
    except BaseException:
        _cancel(cluster, jobs)
        raise
    return jobs


class _Throttle:
    """Waits for room under the limit, and says so: once when the map starts waiting, then on progress."""

    def __init__(
        self,
        cluster: SubmittingCluster,
        limit: SubmitLimit | None,
        total: int,
        sleep: Callable[[float], None],
    ):
        self.cluster, self.limit, self.total, self.sleep = cluster, limit, total, sleep
        self.waited = False
        self.longest_pause = min(_LONGEST_PAUSE, cluster.poll_interval_seconds)

    def wait_for_room(self, count: int, submitted: int) -> int:
        """Until ``count`` more jobs fit under the limit; returns the user's queued jobs then."""
        assert self.limit is not None
        if not self.waited:
            self.waited = True
            logger.warning(
                "map of %d tasks throttled by the site's submit limit: %s allows %d jobs pending or running "
                "at once; %d submitted, the rest follows as your jobs end",
                self.total,
                self.limit.source,
                self.limit.jobs,
                submitted,
            )
        # Never longer than the longest pause, not even the first: a cluster polled every 0.2 s (a local one)
        # would otherwise look again only after 0.5 s, jobs that ended meanwhile leaving their room unused.
        pause = min(_FIRST_PAUSE, self.longest_pause)
        while True:
            queued = self._queued()
            if queued + count <= self.limit.jobs:
                return queued
            self.sleep(pause)
            pause = min(pause * _BACKOFF, self.longest_pause)

    def refused(self, refusal: SubmitLimitError, submitted: int) -> int:
        """sbatch refused a chunk for a submit limit the SDK did not know (or knew too high): take what is
        queued now as the limit, and wait until something ends. Nothing queued means nothing will end, so
        the limit is smaller than one chunk: that refusal is final."""
        queued = self._queued()
        if queued == 0:
            raise refusal
        self.limit = SubmitLimit(queued, f"sbatch's refusal ({refusal.source})")
        self.waited = False
        return self.wait_for_room(1, submitted)

    def submitted(self, submitted: int, queued: int) -> None:
        if self.waited:
            logger.info(
                "map: %d of %d tasks submitted (%d of your jobs pending or running, limit %d)",
                submitted,
                self.total,
                queued,
                self.limit.jobs if self.limit else 0,
            )

    def _queued(self) -> int:
        return self.cluster._retry(self.cluster.backend.queued_jobs)


def _no_room(limit: SubmitLimit, queued: int, needed: int) -> SubmitLimitError:
    fix = (
        "ask the site for a limit above 0, or submit with another account or QOS"
        if limit.jobs < 1
        else "map with wait_for_capacity=True (the default) to submit as your jobs end, map fewer items at "
        "once, or ask the site for a higher limit"
    )
    return SubmitLimitError(
        f"the site's submit limit has no room for this map: {limit.source} allows {limit.jobs} jobs pending "
        f"or running at once, you have {queued} and the map needs {needed} (each task counts); nothing was "
        f"submitted. Fix: {fix}",
        source=limit.source,
        limit=limit.jobs,
        queued=queued,
        needed=needed,
    )


def _cancel(cluster: SubmittingCluster, jobs: list[Job]) -> None:
    """Cancel what an interrupted map submitted: one scancel per array, each tried."""
    for array_id in dict.fromkeys(job.job_id.partition("_")[0] for job in jobs):
        try:
            cluster.backend.cancel(array_id)
        except BackendError as error:
            logger.warning(
                "the map was interrupted and cancelling job %s failed: %s; run scancel %s",
                array_id,
                error,
                array_id,
            )
