"""Tasks for test_completion. Imported by reference on the nodes: no pytest here."""

from __future__ import annotations

import sys
import time

from slurm import task


@task(time="00:02:00")
def exit_with(code):
    sys.exit(code)


@task(time="00:02:00", requeue=False)
def no_requeue_nap(seconds):
    time.sleep(seconds)
    return seconds


@task(time="00:02:00", requeue=True)
def count_runs_then_nap(path, seconds):
    """Appends a line to ``path`` per run (a requeued job runs again), then sleeps; returns the runs so far."""
    with open(path, "a") as handle:
        handle.write("run\n")
    time.sleep(seconds)
    with open(path) as handle:
        return len(handle.readlines())
