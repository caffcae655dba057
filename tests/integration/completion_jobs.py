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
