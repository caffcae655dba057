"""Tasks for the checkpoint tests (fast tier on LocalCommandBackend, integration tier on the cluster).
Imported by reference on the nodes: no pytest here."""

from __future__ import annotations

import time

from slurm import checkpoint, task


@task(time="00:05:00", checkpoint=True)
def count_steps(steps, log_path, step_seconds=1.0, held_runs=0):
    """Counts to ``steps``, one step per ``step_seconds``, saving after each; appends "<first step>" to
    ``log_path`` for every run, so a test sees where each run resumed. Returns the final state.

    The first ``held_runs`` runs never take the last step: they save the same state again every
    ``step_seconds`` until a stop signal ends them at one of those saves. A test that needs a run to be
    stopped (by the time limit or a preemption) holds it this way instead of guessing how much work
    outlasts the stop; the steps can then be short."""
    state = checkpoint.load({"step": 0, "runs": 0})
    state["runs"] += 1
    with open(log_path, "a") as handle:
        handle.write(f"{state['step']}\n")
    while state["step"] < steps:
        time.sleep(step_seconds)
        if not (state["runs"] <= held_runs and state["step"] == steps - 1):
            state["step"] += 1
        checkpoint.save(state)
    return state


def run_starts(log_text: str) -> list[int]:
    """The step each run started from (the log has one line per run)."""
    return [int(line) for line in log_text.split()]


@task(time="00:05:00", checkpoint=True)
def count_steps_of(args):
    """``count_steps`` for ``cluster.map``: one (steps, log_path, step_seconds, held_runs) tuple per item."""
    return count_steps.fn(*args)
