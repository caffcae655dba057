"""Tasks for the fault tests. Imported by reference on the nodes: no pytest here."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import time

from slurm import task


def _log_run(path: str) -> None:
    """One line per run of the task: a second line means it ran twice."""
    with open(path, "a") as handle:
        handle.write(
            f"{os.environ.get('SLURMD_NODENAME', socket.gethostname())} restart={os.environ.get('SLURM_RESTART_COUNT', '0')}\n"
        )


@task(time="00:05:00")
def logged_nap(path, seconds, value, rerun_seconds=None):
    """One run logged, then a nap of ``seconds`` (time enough to break something under it), or of
    ``rerun_seconds`` when given and the job runs again (SLURM_RESTART_COUNT set)."""
    _log_run(path)
    rerun = int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
    time.sleep(rerun_seconds if rerun and rerun_seconds is not None else seconds)
    return value


@task(time="00:05:00", requeue=False)
def logged_nap_no_requeue(path, seconds, value):
    _log_run(path)
    time.sleep(seconds)
    return value


@task(time="00:02:00")
def vanish(code):
    """Ends the job without a result file (as a kill or a crash of the interpreter would)."""
    os._exit(code)


@task(time="00:05:00")
def logged_digest(path, data):
    """One run logged (a second line: the job ran twice); the SHA-256 of ``data`` as the node got it."""
    _log_run(path)
    return hashlib.sha256(data).hexdigest()


@task(time="00:05:00")
def seeded_bytes(spec):
    """``(seed, size)`` -> ``size`` bytes of a generator seeded with ``seed``: the test makes the same."""
    seed, size = spec
    return random.Random(seed).randbytes(size)
