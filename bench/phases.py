"""Where a round trip's time goes, for the SDK and for the raw baseline, measured the same way.

Phases (both sides): upload (files written to the cluster), sbatch (the submission command), queue
wait (from sbatch returning to the job's Python being up), run (from there to the result written:
imports, loading the arguments, the task, writing the result), detect (from the result written to the
client knowing the job ended) and fetch (reading the result back and unpickling it).

The job-side stamps are ``time.time()`` on the node; the containers share this host's kernel clock, so
they line up with the client's. The SDK's client phases come from ``slurm.timing``; the raw baseline
times its own commands.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from typing import Any

from bench.stats import Series

ORDER = ("upload", "sbatch", "queue wait", "run", "detect", "fetch")
#: squeue states of a job that has not ended (an id squeue no longer lists has ended, too).
LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}


def sdk_phases(recorded: list[Any], outcome_fields: dict[str, Any]) -> dict[str, float]:
    """One SDK round trip's phases from ``slurm.timing`` and the runner's stamps in the result."""
    totals: dict[str, float] = {}
    for entry in recorded:
        totals[entry.name] = totals.get(entry.name, 0.0) + entry.seconds
    ends = {entry.name: entry.ended_at for entry in recorded}
    started, finished = outcome_fields["started_at"], outcome_fields["finished_at"]
    return {
        # The SDK sends the files, runs sbatch and writes its record in one command ("submit"): its client
        # side (pickling, first-use preparation) stands for the upload here, the command for sbatch.
        "upload": totals.get("serialize", 0) + totals.get("prepare", 0),
        "sbatch": totals["submit"],
        "queue wait": started - ends["submit"],
        "run": finished - started,
        # The wait ends holding the result: the fetch it did on the way is counted as fetch, not detect.
        "detect": ends["wait"] - finished - totals.get("fetch", 0),
        "fetch": totals.get("fetch", 0) + totals.get("unpickle", 0),
    }


def sdk_pauses() -> Iterable[float]:
    """The SDK's own cadence of result checks (``slurm.waiting.result_check_pauses``, 1 s cap)."""
    from slurm.waiting import result_check_pauses

    return result_check_pauses(1.0)


def raw_wait(transport: Any, job_ids: str, timeout: float) -> None:
    """Poll ``squeue -j <ids>`` from the client over the shared SSH connection, on the SDK's cadence,
    until none is alive any more."""
    deadline = time.monotonic() + timeout
    for pause in sdk_pauses():
        time.sleep(pause)
        out = transport.run(f"squeue -h -j {job_ids} -o %T", check=False).stdout.split()
        if not LIVE.intersection(out):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"raw jobs {job_ids} still alive after {timeout:.0f} s: {out[:5]}")


def summarize(runs: list[dict[str, float]], prefix: str) -> dict[str, Series]:
    """``prefix + phase`` -> the phase's samples over the runs, in ``ORDER``."""
    return {
        f"{prefix}{name}": Series([run[name] for run in runs]) for name in ORDER if runs and name in runs[0]
    }


def median_line(runs: list[dict[str, float]]) -> str:
    """ "upload 0.03 s, sbatch 0.05 s, ...": the median of each phase."""
    return ", ".join(f"{name} {statistics.median(run[name] for run in runs):.3f} s" for name in ORDER)
