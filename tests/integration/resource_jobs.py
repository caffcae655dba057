"""Task functions for tests/integration/test_resources.py, imported by reference on the compute nodes
(so: no pytest here)."""

from __future__ import annotations

import os
import subprocess
import time

from slurm import task


@task(time="00:02:00")
def hold_memory(megabytes: int, seconds: float = 4.0) -> int:
    """Allocate and touch ``megabytes`` MB, keep them ``seconds`` s (longer than slurmd's 1 s sampling)."""
    block = bytearray(megabytes * 1024 * 1024)
    for offset in range(0, len(block), 4096):
        block[offset] = 1  # touched pages count in RSS; untouched ones would not
    time.sleep(seconds)
    return len(block) // (1024 * 1024)


@task(time="00:02:00")
def job_environment() -> dict[str, str]:
    """The job's partition, GPUs and its own `scontrol -d show job` (the allocation as Slurm sees it)."""
    job_id = os.environ["SLURM_JOB_ID"]
    shown = subprocess.run(
        ["scontrol", "-d", "show", "job", job_id], capture_output=True, text=True, check=True
    )
    return {
        "partition": os.environ.get("SLURM_JOB_PARTITION", ""),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
        "job_id": job_id,
        "scontrol": shown.stdout,
    }


@task(time="00:02:00", cpus=4)
def whole_node_after(seconds: float) -> str:
    """Holds a whole 4-CPU node ``seconds`` s, then names it: tasks of an array land on distinct nodes."""
    time.sleep(seconds)
    return os.environ["SLURMD_NODENAME"]
