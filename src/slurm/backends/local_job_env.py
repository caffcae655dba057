"""What a local job sees: its log files (``#SBATCH --output/--error``), Slurm's environment variables, and an
``srun`` on its PATH (``slurm.backends.local_srun``)."""

from __future__ import annotations

import os
import shlex
import sys

from slurm.backends.local_state import LocalStateDir
from slurm.inherited_env import scrub_slurm_env
from slurm.node.atomic import write_atomic
from slurm.node.layout import expand_log_pattern
from slurm.node.slurm_commands import REQUEUE_COMMAND_ENV

TYPE_CHECKING = False  # not from typing: the local backend's launcher imports this for every local job
if TYPE_CHECKING:
    from typing import Any

# What `scontrol requeue <id>` is for a local job (the runner of a checkpointing task calls it).
_REQUEUE = "import sys; from slurm.backends.local_state import requeue; requeue(sys.argv[1], sys.argv[2])"


def log_paths(record: dict[str, Any], element: str) -> tuple[str, str]:
    """Where one job or array task ("12_3") writes its stdout and stderr, as sbatch would name them."""
    base, _, index = element.partition("_")
    sbatch = record["sbatch"]
    output = sbatch.get("output") or ("slurm-%A_%a.out" if index else "slurm-%j.out")
    error = sbatch.get("error") or output

    def expand(pattern: str) -> str:
        return os.path.join(
            record["submit_dir"],
            expand_log_pattern(
                pattern,
                job_id=base,
                array_job_id=base,
                array_task_id=index,
                job_name=sbatch.get("job-name", ""),
            ),
        )

    return expand(output), expand(error)


def job_env(jobs: LocalStateDir, record: dict[str, Any], element: str) -> dict[str, str]:
    """The environment one job or array task runs in: this one without ``SLURM_*``, plus Slurm's."""
    base, _, index = element.partition("_")
    host = os.uname().nodename  # what socket.gethostname() returns, without importing socket (~2 ms a job)
    sbatch = record["sbatch"]
    nodes, per_node = int(sbatch.get("nodes", "1")), int(sbatch.get("ntasks-per-node", "1"))
    # Emulated nodes all live on this host; the first one is where the batch step runs, as in Slurm.
    names = ",".join([host] if nodes == 1 else [f"{host}-{i}" for i in range(nodes)])
    env = scrub_slurm_env(os.environ)
    env.update(
        SLURM_JOB_ID=base,
        SLURM_JOBID=base,
        SLURM_JOB_NAME=sbatch.get("job-name", ""),
        SLURM_SUBMIT_DIR=record["submit_dir"],
        SLURM_CPUS_PER_TASK=sbatch.get("cpus-per-task", "1"),
        SLURM_NTASKS=str(nodes * per_node),
        SLURM_NTASKS_PER_NODE=str(per_node),
        SLURM_JOB_NUM_NODES=str(nodes),
        SLURM_NODELIST=names,
        SLURM_JOB_NODELIST=names,
        SLURMD_NODENAME=names.split(",")[0],
        SLURM_CLUSTER_NAME="local",
        PATH=os.pathsep.join([srun_dir(jobs), env.get("PATH", os.defpath)]),
        **{REQUEUE_COMMAND_ENV: shlex.join([sys.executable, "-c", _REQUEUE, jobs.state_dir])},
    )
    if index:
        indexes = record["array"]
        env.update(
            SLURM_ARRAY_JOB_ID=base,
            SLURM_ARRAY_TASK_ID=index,
            SLURM_ARRAY_TASK_COUNT=str(len(indexes)),
            SLURM_ARRAY_TASK_MIN=str(min(indexes)),
            SLURM_ARRAY_TASK_MAX=str(max(indexes)),
        )
    return env


def srun_dir(jobs: LocalStateDir) -> str:
    """A directory with this backend's ``srun`` (``slurm.backends.local_srun``), for the job's PATH."""
    directory = jobs._path("bin")
    script = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m slurm.backends.local_srun "$@"\n'
    path = os.path.join(directory, "srun")
    if not os.path.exists(path) or _read_text(path) != script:
        write_atomic(path, script.encode(), 0o755)
    return directory


def _read_text(path: str) -> str:
    with open(path) as handle:
        return handle.read()
