"""Waiting until the scheduler itself (not just a result file) says jobs have ended."""

from __future__ import annotations

import time


def settle(cluster, *handles, timeout: float = 60) -> None:
    """Block until the backend reports every job of ``handles`` (Jobs or MappedJobs handles) in a final state.

    ``Job.wait`` returns as soon as the result file exists, while the job may still be exiting; listings
    and cleanup go by the scheduler's word, so tests about them wait for that."""
    ids = [job_id for handle in handles for job_id in getattr(handle, "array_ids", None) or [handle.job_id]]
    deadline = time.monotonic() + timeout
    while not all(state.is_terminal for state in cluster.backend.states(ids).values()):
        assert time.monotonic() < deadline, f"jobs {ids} did not end within {timeout}s"
        time.sleep(0.01)  # a look reads a few state files
