"""Turns resources + packaging setup + the runner call into the job script. Pure and deterministic."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from slurm.directives import directive
from slurm.node.checkpoint import MAX_REQUEUES_OPTION
from slurm.node.layout import log_patterns
from slurm.resources import Resources

RUNNER_MODULE = "slurm.node.runner"
#: The job script starts the runner with ``python -c`` and this code rather than ``python -m``: runpy and
#: the importlib modules it loads cost every array task about 1 ms (``bench`` figure ``startup``).
RUNNER_CODE = f"from {RUNNER_MODULE} import run; run()"
#: The runner's options for multi-rank tasks: run as one rank / gather N ranks (see ``slurm.node.gather``).
RANK_OPTION, GATHER_OPTION = "--rank", "--gather-ranks"


def sbatch_options(resources: Resources) -> list[tuple[str, Any]]:
    """(option, value) pairs in a fixed order; ``True`` values are flags, ``False``/``None`` are omitted."""
    gres = None if resources.gpus is None else f"gpu:{resources.gpus}"
    checkpointing = resources.checkpointing
    ranks = resources.world_size is not None  # both rendered, so Slurm's world is the SDK's world
    options: list[tuple[str, Any]] = [
        ("time", resources.time),
        ("nodes", ranks and (resources.nodes or 1)),
        ("ntasks-per-node", ranks and (resources.ntasks_per_node or 1)),
        ("cpus-per-task", resources.cpus),
        ("mem", resources.mem),
        ("gres", gres),
        ("partition", resources.partition),
        ("account", resources.account),
        ("requeue" if resources.requeue else "no-requeue", None if resources.requeue is None else True),
        ("signal", checkpointing and checkpointing.sbatch_signal()),
        # A requeued job reopens its log files: keep every run's lines, not only the last run's.
        ("open-mode", checkpointing and "append"),
    ]
    options += sorted(resources.sbatch.items())
    return [(name, value) for name, value in options if value is not None and value is not False]


def render_script(
    *, job_name: str, job_dir: str, resources: Resources, array: bool, setup_lines: Sequence[str], python: str
) -> str:
    """The complete job script. ``python`` is shell text (a command name or path) from the packaging."""
    output, error = log_patterns(job_dir, array=array)
    header = [("job-name", job_name), ("output", output), ("error", error), *sbatch_options(resources)]
    lines = ["#!/bin/bash"]
    # Quoted the way sbatch reads #SBATCH lines (see slurm.directives); a value no line can carry (a
    # newline in a job root, say) is a ValueError here, before anything is uploaded.
    lines += [directive(name, value) for name, value in header]
    checkpoint = resources.checkpointing
    checkpointing = f" {MAX_REQUEUES_OPTION} {checkpoint.max_requeues}" if checkpoint else ""
    # umask 077: what the task writes (results, checkpoints, its own files) is private to the user.
    lines += ["", "set -eo pipefail", "umask 077", *setup_lines]
    if resources.world_size is None:
        lines.append(f"exec {runner_command(python)}{checkpointing} {shlex.quote(job_dir)}")
    else:
        lines += _rank_lines(resources, job_dir, python)
    return "\n".join([*lines, ""])


def runner_command(python: str) -> str:
    """The shell words that start the runner (``python`` is shell text already; the options follow)."""
    return f"{python} -c {shlex.quote(RUNNER_CODE)}"


def _rank_lines(resources: Resources, job_dir: str, python: str) -> list[str]:
    """A multi-rank task: every rank runs under srun (one failing rank stops the others), then the batch
    step gathers their outcomes into the job's result file, also when srun failed."""
    cpus = f" --cpus-per-task={resources.cpus}" if resources.cpus else ""  # srun does not inherit it
    runner = runner_command(python)
    return [
        # The ranks meet at the first node (the batch host) by its name, as on real clusters (ranks.py).
        f"srun --kill-on-bad-exit=1{cpus} {runner} {RANK_OPTION} {shlex.quote(job_dir)} "
        '|| echo "[slurm-sdk] srun exited with status $?" >&2',
        f"exec {runner} {GATHER_OPTION} {resources.world_size} {shlex.quote(job_dir)}",
    ]
