"""Runs ON THE LOGIN NODE as user sdk: submitit's real workflow against the dev cluster, as a user would
drive it (tests/integration/test_submitit.py installs submitit and starts this script).

    PYTHONPATH=<submitit site> python3 submitit_client.py FOLDER SCRATCH_FILE

Prints one JSON object, one entry per scenario: what came back, or {"error": ...} naming what went wrong
(a scenario that waits longer than its bound says so instead of hanging). Functions defined here are
pickled by value (this file runs as __main__), so the nodes need submitit only, not this file.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import submitit

BOUND_SECONDS = 240  # per scenario; a wait that never ends is a failure with a reason, not a hang


def add(a: int, b: int) -> int:
    return a + b


def square(x: int) -> int:
    return x * x


def explode(message: str) -> None:
    raise ValueError(message)


def resources(scratch_file: str) -> dict[str, str]:
    """What Slurm granted, and a file written to the shared scratch directory for the login node to read."""
    Path(scratch_file).write_text(f"written on {os.environ['SLURMD_NODENAME']}\n")
    return {name: os.environ.get(name, "") for name in ("SLURM_MEM_PER_NODE", "SLURM_CPUS_PER_TASK")}


def sleep_after_saying_so(marker: str) -> None:
    Path(marker).write_text("started\n")
    time.sleep(600)


class Resumable(submitit.helpers.Checkpointable):
    """First run: says it started, then works until preempted (submitit checkpoints it, i.e. this object,
    and requeues the job). Second run: returns how many times it started."""

    def __init__(self) -> None:
        self.starts = 0

    def __call__(self, marker: str) -> dict[str, Any]:
        self.starts += 1
        if self.starts == 1:
            Path(marker).write_text("started\n")
            time.sleep(600)
        return {"starts": self.starts, "restart_count": os.environ.get("SLURM_RESTART_COUNT", "0")}


def bounded(step: Callable[[], Any]) -> Any:
    def give_up(*_: object) -> None:
        raise TimeoutError(f"no answer within {BOUND_SECONDS} s")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(BOUND_SECONDS)
    try:
        return step()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[-1500:]}"}
    finally:
        signal.alarm(0)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    while not condition():
        time.sleep(0.5)  # bounded by the scenario's alarm


#: A scenario is a generator in three phases: it submits, yields; acts on its running job (cancels,
#: interrupts), yields; then waits for the outcome and returns what came back. ``main`` runs each phase of
#: every scenario before the next phase of any, so their jobs run side by side and the client waits about
#: as long as its slowest scenario, not as long as all of them one after another.
Scenario = Generator[None, None, Any]


def task(executor: submitit.SlurmExecutor) -> Scenario:
    job = executor.submit(add, 2, 3)
    yield
    yield
    return job.result()


def mapped(executor: submitit.SlurmExecutor) -> Scenario:
    jobs = executor.map_array(square, range(4))
    yield
    yield
    return [job.result() for job in jobs]


def raising(executor: submitit.SlurmExecutor) -> Scenario:
    job = executor.submit(explode, "boom from a submitit task")
    yield
    yield
    try:
        job.result()
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc)[-1500:], "state": job.state}
    return {"error": "the failing task returned normally"}


def cancelled(executor: submitit.SlurmExecutor, folder: str) -> Scenario:
    marker = Path(folder) / f"sleeper-{os.getpid()}.started"
    job = executor.submit(sleep_after_saying_so, str(marker))
    yield
    wait_for(
        marker.exists, "the job running"
    )  # its own word: submitit's job.state asks sacct ever less often
    job.cancel(check=True)
    yield
    try:
        job.result()
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc)[-500:], "state": job.state}
    return {"error": "the cancelled job returned a result"}


def checkpointed(executor: submitit.SlurmExecutor, folder: str) -> Scenario:
    marker = Path(folder) / f"resumable-{os.getpid()}.started"
    job = executor.submit(Resumable(), str(marker))
    yield
    wait_for(marker.exists, "the first run starting")
    job._interrupt()  # what a preemption sends: SIGTERM, then submitit's USR2 (its documented test hook)
    yield
    return job.result()


def with_resources(folder: str, scratch_file: str) -> Scenario:
    executor = submitit.SlurmExecutor(folder=f"{folder}/%j")
    executor.update_parameters(time=5, mem="2G", cpus_per_task=4)
    job = executor.submit(resources, scratch_file)
    yield
    yield
    return job.result() | {"scratch": Path(scratch_file).read_text()}


def advance(scenario: Scenario) -> Any:
    """Run ``scenario`` to its next phase: None, or what it returned at its end."""
    try:
        next(scenario)
    except StopIteration as end:
        return end.value
    return None


def main() -> None:
    folder, scratch_file = sys.argv[1], sys.argv[2]
    executor = submitit.SlurmExecutor(folder=f"{folder}/%j")
    executor.update_parameters(time=5)
    scenarios = {
        "task": task(executor),
        "array": mapped(executor),
        "raises": raising(executor),
        "cancelled": cancelled(executor, folder),
        "checkpoint": checkpointed(executor, folder),
        "resources": with_resources(folder, scratch_file),
    }
    report: dict[str, Any] = {}
    for _phase in ("submit", "act", "outcome"):
        for name, scenario in scenarios.items():
            if name not in report:  # a scenario that failed keeps its error
                answer = bounded(lambda scenario=scenario: advance(scenario))
                if answer is not None:
                    report[name] = answer
    print(json.dumps({name: report.get(name) for name in scenarios}))


if __name__ == "__main__":
    main()
