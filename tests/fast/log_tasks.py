"""Tasks for the reattach, live-log and CLI tests of both tiers (importable by reference, also on the dev
cluster's nodes: nothing here may import pytest)."""

from __future__ import annotations

import os
import socket
import sys
import time

from slurm import task


class Refused(Exception):
    """Raised on purpose by ``refuse``."""


@task
def speak(lines, *, stream="stdout"):
    """Print ``lines`` (to stdout or stderr) and return how many."""
    out = sys.stdout if stream == "stdout" else sys.stderr
    for line in lines:
        print(line, file=out, flush=True)
    return len(lines)


@task(time="00:02:00")
def greet(name):
    """Print a line and return (greeting, host)."""
    print(f"hello {name} from {os.environ.get('SLURMD_NODENAME', socket.gethostname())}", flush=True)
    return f"hello {name}", os.environ.get("SLURMD_NODENAME", socket.gethostname())


@task(time="00:05:00")
def speak_until(before, gate, after, limit=240.0):
    """Print ``before``, wait until the file ``gate`` exists (the test creates it once it has seen
    ``before`` while the job still runs), then print ``after``. Gives up after ``limit`` seconds."""
    _speak_then_wait(before, gate, limit)
    for line in after:
        print(line, flush=True)
    return "released"


@task(time="00:15:00")
def snooze(seconds):
    time.sleep(seconds)
    return seconds


@task
def vanish(code):
    """End the process at once: no result file, as when a job is killed."""
    os._exit(code)


@task
def refuse(message):
    raise Refused(message)


@task
def speak_then_start_over(before, gate, after, limit=120.0):
    """Print ``before``, wait for ``gate``, empty this job's stdout file (as Slurm does when it requeues a
    job) and print ``after``."""
    _speak_then_wait(before, gate, limit)
    os.truncate(os.readlink("/proc/self/fd/1"), 0)
    for line in after:
        print(line, flush=True)
    return "restarted"


def _speak_then_wait(lines, gate, limit):
    """Print ``lines``, then wait (at most ``limit`` s) until the file ``gate`` exists."""
    for line in lines:
        print(line, flush=True)
    deadline = time.monotonic() + limit
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never appeared")
        time.sleep(0.01)  # the test waits for what the job prints after the gate
