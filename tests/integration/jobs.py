"""Task functions for the integration tests. The compute nodes import this module by reference, so it
must not import pytest or anything else missing from the cluster image."""

from __future__ import annotations

import os
import socket
import time

from slurm import Task, task, workflow
from tests.integration import devprobe


class IntentionalError(Exception):
    """Raised on purpose on a compute node; importable here, so it comes back with its own type."""


@task(time="00:02:00")
def where(x):
    """(input, hostname, job id) of the job that ran it."""
    return x, os.environ.get("SLURMD_NODENAME", socket.gethostname()), os.environ.get("SLURM_JOB_ID")


@task(time="00:02:00")
def where_together(item, limit=100.0):
    """``where(x)`` for ``item`` = (x, folder, together), once ``together`` tasks (this one counted) have
    started: each marks its start in ``folder`` (shared /home) and waits, at most ``limit`` s, for that
    many marks (a map's item: one argument)."""
    x, folder, together = item
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, str(x)), "w"):
        pass
    deadline = time.monotonic() + limit
    while len(os.listdir(folder)) < together and time.monotonic() < deadline:
        time.sleep(0.2)
    return x, os.environ.get("SLURMD_NODENAME", socket.gethostname()), os.environ.get("SLURM_JOB_ID")


@task(time="00:02:00")
def explode(message):
    raise IntentionalError(message)


@task(time="00:05:00")
def sleep_then_return(seconds):
    time.sleep(seconds)
    return "slept"


@task(time="00:02:00")
def write_marker(path, text):
    with open(path, "a") as handle:
        handle.write(text + "\n")
    return text


@task(time="00:02:00")
def chatty(text):
    print(f"stdout says {text}", flush=True)
    import sys

    print(f"stderr says {text}", file=sys.stderr, flush=True)
    return len(text)


@task(time="00:02:00")
def double(x):
    return 2 * x


@workflow(time="00:05:00")
def child_level(cluster, x):
    """Submits one grandchild and returns its result together with this job's host."""
    return {
        "grandchild": cluster.submit(double, x).result(timeout=240),
        "host": os.environ.get("SLURMD_NODENAME", socket.gethostname()),
    }


@workflow(time="00:10:00")
def parent_level(cluster, x):
    """Nested workflow: two child tasks, one of them a workflow that submits a grandchild."""
    plain = cluster.submit(double, x)
    nested = cluster.submit(child_level, x + 1)
    return {"plain": plain.result(timeout=300), "nested": nested.result(timeout=300)}


#: The probe as a task: by reference (tests.integration.devprobe.report), so each job imports the file as it is now.
devprobe_report = Task(devprobe.report, name="devprobe")


@workflow(time="00:05:00")
def devprobe_workflow(cluster):
    """The workflow's own view of the probe, and its child task's view."""
    return {"parent": devprobe.report(), "child": cluster.submit(devprobe_report).result(timeout=240)}


def byte_sum(data):
    """Sum of the bytes of one map item (plain function: the payload check needs no decorator)."""
    return sum(data)
