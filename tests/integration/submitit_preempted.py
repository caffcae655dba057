"""Runs ON THE LOGIN NODE as user sdk: a submitit ``Checkpointable`` in QOS ``low`` that fills a node, then a
real QOS ``high`` job on that node, so Slurm preempts it (tests/integration/test_submitit_site.py).

    PYTHONPATH=<submitit site> python3 submitit_preempted.py FOLDER [end|held]

submitit asks for ``--signal=USR2@90`` and checkpoints only on USR2; the cluster sends it at preemption
(``PreemptParameters=send_user_signal``, QOS low's ``GraceTime``). Prints one JSON object: the task's result,
its job id and node, the high job's id, or {"error": ...} naming what went wrong within the bound. Functions
and classes defined here are pickled by value (this file runs as __main__): the nodes need submitit only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import submitit

NODE_CPUS = 4  # images/entrypoint.sh NODE_CPUS: the low task takes them all, so its node is full
BOUND_SECONDS = 600  # production's 120 s hold after the requeue, twice, on a busy host
FINAL_STATES = {"", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "DEADLINE"}


class Resumable(submitit.helpers.Checkpointable):
    """First run: writes its node's name to ``marker``, then works until preempted (submitit pickles this
    object on USR2 and requeues the job). Later runs return how many times it started."""

    def __init__(self) -> None:
        self.starts = 0

    def __call__(self, marker: str) -> dict[str, Any]:
        self.starts += 1
        if self.starts == 1:
            Path(marker).write_text(os.environ["SLURMD_NODENAME"])
            time.sleep(600)
        return {"starts": self.starts, "restart_count": os.environ.get("SLURM_RESTART_COUNT", "0")}


def give_up(*_: object) -> None:
    raise TimeoutError(f"no answer within {BOUND_SECONDS} s")


def preempted(folder: str, until: str) -> dict[str, Any]:
    marker = Path(folder) / "first-run.node"
    executor = submitit.SlurmExecutor(folder=f"{folder}/%j")
    executor.update_parameters(time=10, cpus_per_task=NODE_CPUS, qos="low")
    job = executor.submit(Resumable(), str(marker))
    while not marker.exists() or not marker.read_text():
        time.sleep(0.5)  # bounded by the alarm
    node = marker.read_text()
    # One CPU of the node the low task fills, in QOS high: Slurm preempts the low task to start it.
    high = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--qos=high",
            "-w",
            node,
            "-n1",
            "--time=1",
            "-o",
            "/dev/null",
            "--wrap",
            "sleep 5",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    result = job.result()
    report = {"result": result, "job_id": job.job_id, "node": node, "high": high}
    if until == "held":
        # Slurm requeues the run that returned once more (docs/dev-cluster.md): seen held for its next run,
        # the job is cancelled there, instead of sitting out the hold (120 s on Slurm's stock timers) for a
        # run that repeats the one before. Should the job end instead, "held" is empty and it ended as is.
        while (state := (seen := job_state(job.job_id, "%T %r")).partition(" ")[0]) != "PENDING":
            if state in FINAL_STATES:
                return report | {"held": ""}
            time.sleep(0.5)  # bounded by the alarm
        subprocess.run(["scancel", job.job_id], check=True)
        return report | {"held": seen}
    # The folder holds what that next run needs, so the report waits for the job's end.
    while job_state(job.job_id) not in FINAL_STATES:
        time.sleep(1)  # bounded by the alarm
    return report


def job_state(job_id: str, fields: str = "%T") -> str:
    """The job's state as squeue has it ("" once squeue has forgotten it, i.e. it has ended), or the
    squeue ``fields`` asked for."""
    return subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", fields], capture_output=True, text=True, check=False
    ).stdout.strip()


def main() -> None:
    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(BOUND_SECONDS)
    try:
        report = preempted(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "end")
    except Exception as exc:
        report = {"error": f"{type(exc).__name__}: {str(exc)[-1500:]}"}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
