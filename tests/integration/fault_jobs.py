"""Tasks for the fault tests. Imported by reference on the nodes: no pytest here."""

from __future__ import annotations

import os
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
def logged_nap(path, seconds, value):
    _log_run(path)
    time.sleep(seconds)
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
