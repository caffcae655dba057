"""Tasks used by the fast tier. They live in an importable module so they travel by reference."""

from __future__ import annotations

import os
import time

from slurm import task, workflow


class TaskFailure(Exception):
    """Raised on purpose by ``fail``; defined here so it unpickles in the test process."""


@task(time="00:01:00", cpus=1, mem="100M")
def add(a, b):
    return a + b


@task
def square(x):
    return x * x


@task
def fail(message):
    raise TaskFailure(message)


@task
def append_after_pause(path, text, pause):
    """Append ``text`` to ``path`` after ``pause`` seconds (order tests: the pause makes the wrong
    order likely if dependencies were ignored)."""
    time.sleep(pause)
    with open(path, "a") as handle:
        handle.write(text)
    return text


@task
def sleep_and_record_pid(pid_path, seconds):
    with open(pid_path, "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(seconds)
    return "woke up"


@task
def nap(seconds):
    time.sleep(seconds)
    return seconds


@task
def wait_for_file(path):
    """Runs until ``path`` exists: a gate the test opens once it has submitted what must find this job
    still running (a nap guessed to outlast the submissions may end first on a loaded host)."""
    while not os.path.exists(path):
        time.sleep(0.01)
    return path


@task
def slurm_environment(_item=None):
    return {key: value for key, value in os.environ.items() if key.startswith("SLURM")}


@task
def exit_hard(code):
    os._exit(code)  # dies without writing a result, like an OOM kill


@workflow
def fan_out(cluster, n):
    """Children: one array job and two nested workflows that each submit grandchildren. All submitted
    before any is waited for: they run side by side, as a workflow's independent children would."""
    squares = cluster.map(square, range(n))
    nested = [cluster.submit(nested_add, i, 100) for i in range(2)]
    return {
        "squares": squares.results(timeout=60),
        "nested": [job.result(timeout=60) for job in nested],
        "parent_env": sorted(key for key in os.environ if key.startswith("SLURM_")),
    }


@workflow
def nested_add(cluster, a, b):
    """Two grandchildren, side by side: the sum, and the Slurm variables a grandchild sees."""
    job, environment = cluster.submit(add, a, b), cluster.submit(slurm_environment)
    return {"sum": job.result(timeout=60), "child_env": environment.result(timeout=60)}


@task
def call_sys_exit(code):
    import sys

    sys.exit(code)


@task
def interrupt():
    raise KeyboardInterrupt


@task
def outlived_by_its_child(marker, child_seconds):
    """First run: starts a child in the job's process group that, on SIGTERM, takes ``child_seconds`` before it
    writes ``marker`` and exits (as a rank writes its outcome after srun's stop), then waits to be preempted.
    A rerun returns whether ``marker`` was there when it started."""
    import subprocess
    import sys

    if int(os.environ.get("SLURM_RESTART_COUNT") or 0):
        return os.path.exists(marker)
    child = (
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        f"    time.sleep({child_seconds!r}); pathlib.Path({marker!r}).write_text('done'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        f"pathlib.Path({marker!r} + '.ready').write_text('')\n"
        "time.sleep(600)\n"
    )
    subprocess.Popen([sys.executable, "-c", child])
    time.sleep(600)
    return None
