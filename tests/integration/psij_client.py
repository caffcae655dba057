"""Runs ON THE LOGIN NODE as user sdk: PSI/J's Slurm executor as a user drives it: a job it waits for (in
the second account), a job that fails, and a running job it cancels. Started by
tests/integration/test_psij.py.

    PYTHONPATH=<psij site> python3 psij_client.py FOLDER ACCOUNT

Prints one JSON object, one entry per scenario: what the job's final status was, or {"error": ...}.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psij
from psij.executors.batch.slurm import SlurmExecutorConfig

BOUND = timedelta(seconds=240)  # per wait; a wait that never ends is a failure with a reason, not a hang


def final(job: psij.Job) -> dict[str, Any]:
    status = job.wait(timeout=BOUND)
    if status is None or not status.final:
        return {"error": f"job {job.native_id} not finished within {BOUND}: {status}"}
    return {"state": str(status.state), "exit_code": status.exit_code, "native_id": job.native_id}


def scenario(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return run()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[-1500:]}"}


def waited(executor: psij.JobExecutor, folder: Path, account: str) -> dict[str, Any]:
    out = folder / "hello.out"
    spec = psij.JobSpec(
        "/bin/echo",
        ["hello from psij"],
        stdout_path=out,
        attributes=psij.JobAttributes(duration=timedelta(minutes=2), account=account),
    )
    job = psij.Job(spec)
    executor.submit(job)
    return final(job) | {"stdout": out.read_text() if out.exists() else None}


def failing(executor: psij.JobExecutor) -> dict[str, Any]:
    spec = psij.JobSpec(
        "/bin/sh", ["-c", "exit 3"], attributes=psij.JobAttributes(duration=timedelta(minutes=2))
    )
    job = psij.Job(spec)
    executor.submit(job)
    return final(job)


def cancelled(executor: psij.JobExecutor) -> dict[str, Any]:
    spec = psij.JobSpec("/bin/sleep", ["600"], attributes=psij.JobAttributes(duration=timedelta(minutes=15)))
    job = psij.Job(spec)
    executor.submit(job)
    running = job.wait(timeout=BOUND, target_states=[psij.JobState.ACTIVE])
    if running is None or running.state != psij.JobState.ACTIVE:
        return {"error": f"job {job.native_id} not running within {BOUND}: {running}"}
    job.cancel()
    return final(job)


def main() -> None:
    folder, account = Path(sys.argv[1]), sys.argv[2]
    # PSI/J looks at squeue every 30 s by default; each scenario waits on it once or twice, 1.5 min in all
    # for jobs that take a second. Its own setting, as a user with short jobs would set it.
    config = SlurmExecutorConfig(queue_polling_interval=2)
    executor = psij.JobExecutor.get_instance("slurm", config=config)
    report = {
        "waited": scenario(lambda: waited(executor, folder, account)),
        "failing": scenario(lambda: failing(executor)),
        "cancelled": scenario(lambda: cancelled(executor)),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
