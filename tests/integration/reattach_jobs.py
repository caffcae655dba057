"""Tasks for test_reattach_cli (imported by reference on the nodes: no pytest here)."""

from __future__ import annotations

import os
import socket
import time

from slurm import task


class Refused(Exception):
    """Raised on purpose by ``refuse``."""


@task(time="00:02:00")
def greet(name):
    """Print a line and return (greeting, host)."""
    print(f"hello {name} from {socket.gethostname()}", flush=True)
    return f"hello {name}", socket.gethostname()


@task(time="00:05:00")
def speak_until(before, gate, after, limit=240.0):
    """Print ``before``, wait until the file ``gate`` exists, print ``after``: the test sees ``before``
    while the job is still running, then lets it finish."""
    for line in before:
        print(line, flush=True)
    deadline = time.monotonic() + limit
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never appeared")
        time.sleep(0.1)
    for line in after:
        print(line, flush=True)
    return len(before) + len(after)


@task(time="00:10:00")
def snooze(seconds):
    time.sleep(seconds)
    return seconds


@task(time="00:02:00")
def refuse(message):
    raise Refused(message)
