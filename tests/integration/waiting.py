"""Waiting for the cluster to reach a state, for as long as a test allows and no longer."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float, what: str | Callable[[], str], interval: float = 0.5
) -> T:
    """``predicate()``'s first true value; fails the test naming ``what`` (called then, if it is a
    function: it can say what the cluster looks like at that moment) once ``timeout`` s have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, (
            f"{what() if callable(what) else what}: not within {timeout:.0f} s"
        )
        time.sleep(interval)


def scheduler_knows(slurm_stack, job_id: str) -> bool:
    """Whether slurmctld still lists the job (squeue; a finished job until MinJobAge has passed)."""
    out = slurm_stack.exec("login", ["sh", "-c", f"squeue -h --states=all -j {job_id} -o %T 2>&1 || true"])
    return bool(out.strip()) and "Invalid job id" not in out


def accounted(
    run: Callable[[str], Any], job_id: str, fields: str = "State", *, every_run: bool = False
) -> list[str]:
    """What sacct records of a job: one entry per line, its ``fields`` joined by "|" (``-o State,QOS`` gives
    "COMPLETED|high"), every run of a requeued job with ``every_run`` (sacct -D), the last run's alone
    otherwise. A cancelled job's "CANCELLED by <uid>" reads CANCELLED. Each end reaches slurmdbd a moment
    after the job's own, so a caller waits for the entry it needs (``wait_until``)."""
    runs = " -D" if every_run else ""
    out = run(f"sacct -n -X -P{runs} -j {job_id} -o {fields}").stdout
    return [re.sub(r"^CANCELLED by \d+", "CANCELLED", line) for line in out.splitlines() if line.strip()]
