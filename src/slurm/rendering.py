"""Turns resources + packaging setup + the runner call into the job script. Pure and deterministic."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from slurm.checkpoint import MAX_REQUEUES_OPTION
from slurm.layout import log_patterns
from slurm.resources import Resources

RUNNER_MODULE = "slurm.runner"


def expand_log_pattern(
    pattern: str, *, job_id: str, array_job_id: str = "", array_task_id: str = "", job_name: str = ""
) -> str:
    """Replace sbatch's filename placeholders (%j %A %a %x %%) the way Slurm does."""
    values = {"j": job_id, "A": array_job_id or job_id, "a": array_task_id, "x": job_name, "%": "%"}
    out, chars = [], iter(pattern)
    for char in chars:
        if char == "%":
            key = next(chars, "")
            out.append(values.get(key, "%" + key))
        else:
            out.append(char)
    return "".join(out)


def sbatch_options(resources: Resources) -> list[tuple[str, Any]]:
    """(option, value) pairs in a fixed order; ``True`` values are flags, ``False``/``None`` are omitted."""
    gres = None if resources.gpus is None else f"gpu:{resources.gpus}"
    checkpointing = resources.checkpointing
    options: list[tuple[str, Any]] = [
        ("time", resources.time),
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
    lines += [f"#SBATCH --{name}" if value is True else f"#SBATCH --{name}={value}" for name, value in header]
    checkpoint = resources.checkpointing
    checkpointing = f" {MAX_REQUEUES_OPTION} {checkpoint.max_requeues}" if checkpoint else ""
    lines += [
        "",
        "set -eo pipefail",
        *setup_lines,
        f"exec {python} -m {RUNNER_MODULE}{checkpointing} {shlex.quote(job_dir)}",
        "",
    ]
    return "\n".join(lines)
