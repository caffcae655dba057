"""Slurm's own latency floor: one trivial batch job's time split into Slurm's phases, raw ``sbatch`` and the
SDK side by side, from the daemons' logs (``bench.slurm_log``), stamps taken on the node and the client's
clock (containers and client share the host's kernel clock).

Every round starts at a chosen point of the wall clock's second (``bench.tick``), the same points for both
sides, so the scheduling wait (the wait for slurmctld's one-second tick) is sampled as a user submitting at
a random moment meets it instead of wherever a steady loop happens to lock on.

    python -m bench --only floor --keep
"""

from __future__ import annotations

import shlex
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench import slurm_log, tick
from bench.env import RAW_DIR, BenchEnv, say, unique
from bench.figure import Figure
from bench.phases import LIVE, raw_wait
from bench.stats import Series
from bench.tasks import square

TIMEOUT = 120.0
#: Pause between two looks at squeue/sacct while timing when each notices a raw job's end.
LOOK_EVERY = 0.02
#: How long after squeue saw the end to keep asking sacct (slurmdbd records it within a second or so).
SACCT_PATIENCE = 10.0

#: (phase, from event, to event), in the order a job passes through them. Events: the client's
#: ("submitting", "squeue sees end", "sacct sees end", "result in hand"), the node's ("script up",
#: "script done") and the daemons' (``slurm_log.EVENTS``).
PHASES: tuple[tuple[str, str, str], ...] = (
    ("submit RPC (client → slurmctld queued it)", "submitting", "queued"),
    ("scheduling wait (queued → allocated)", "queued", "allocated"),
    ("launch request (allocated → slurmd)", "allocated", "launch received"),
    ("slurmstepd start (→ task forked)", "launch received", "task started"),
    ("script start (task forked → script up)", "task started", "script up"),
    ("script run", "script up", "script done"),
    ("script end seen (→ slurmctld: COMPLETING)", "script done", "completing"),
    ("epilog (COMPLETING → epilog done)", "completing", "epilog done"),
    # How soon the client knows: squeue once the epilog is done, sacct once slurmctld recorded the end
    # (before the epilog), the SDK once its result file is there (before either).
    ("end seen by squeue (script done → not listed live)", "script done", "squeue sees end"),
    ("end seen by sacct (script done → COMPLETED)", "script done", "sacct sees end"),
    ("end seen by the SDK (script done → result() returned)", "script done", "result in hand"),
)
#: Spans over several phases.
TOTALS: tuple[tuple[str, str, str], ...] = (
    ("sbatch → script up (queued → script up)", "queued", "script up"),
    ("launch (allocated → script up)", "allocated", "script up"),
    ("round trip, squeue loop (submitting → squeue sees end)", "submitting", "squeue sees end"),
    ("round trip, SDK (submitting → result in hand)", "submitting", "result in hand"),
)

#: The raw job: stamps when its script is up and when it is done, around the same work as square(7).
RAW_SCRIPT = """#!/bin/bash
#SBATCH -J raw-floor
#SBATCH -o /dev/null
date +%s.%N > {directory}/$SLURM_JOB_ID.up
python3 -c 'print(7 * 7)' > /dev/null
date +%s.%N > {directory}/$SLURM_JOB_ID.done
"""


def set_log_levels(env: BenchEnv, slurmctld: str, slurmd: str) -> None:
    """``scontrol setdebug`` (as root on slurmctld) for slurmctld and every slurmd. Lasts until the next
    ``scontrol reconfigure``, which goes back to slurm.conf's levels."""
    env.stack.exec("slurmctld", ["scontrol", "setdebug", slurmctld])
    nodes = ",".join(env.stack.topology.node_names)
    env.stack.exec("slurmctld", ["scontrol", "setdebug", slurmd, f"nodes={nodes}"])


@contextmanager
def daemon_logs_at(env: BenchEnv, levels: dict[str, str]) -> Iterator[None]:
    """The daemons log at ``levels`` for the block, then at the stack's own level again."""
    set_log_levels(env, **levels)
    try:
        yield
    finally:
        set_log_levels(env, slurm_log.STOCK_LEVEL, slurm_log.STOCK_LEVEL)


def read_daemon_events(env: BenchEnv, job_ids: list[str]) -> dict[str, dict[str, float]]:
    """job id -> {event: time} from slurmctld.log and every node's slurmd.log."""
    merged: dict[str, dict[str, float]] = {job_id: {} for job_id in job_ids}
    pattern = slurm_log.grep_pattern(job_ids)
    sources = {"slurmctld": ("slurmctld", "/var/log/slurm/slurmctld.log")} | {
        node: ("slurmd", "/var/log/slurm/slurmd.log") for node in env.stack.topology.node_names
    }
    for service, (daemon, path) in sources.items():
        # grep exits 1 when a node ran none of the jobs: not an error.
        text = env.stack.exec(service, ["sh", "-c", f"grep -E {shlex.quote(pattern)} {path} || true"])
        for job_id, found in slurm_log.events(text.splitlines(), daemon, job_ids).items():
            merged[job_id].update(found)
    return merged


def watch_end(env: BenchEnv, job_id: str) -> dict[str, float]:
    """Look at squeue and sacct together every LOOK_EVERY s until both say the job ended: when each did."""
    seen: dict[str, float] = {}
    job = shlex.quote(job_id)
    command = f"squeue -h -j {job} -o %T; echo --; sacct -n -X -P -j {job} -o State"
    deadline = time.monotonic() + TIMEOUT
    while len(seen) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"raw job {job_id}: not ended after {TIMEOUT:.0f} s (seen: {seen})")
        if "squeue sees end" in seen and time.time() - seen["squeue sees end"] > SACCT_PATIENCE:
            break  # a stack without accounting (SLURM_SDK_ACCOUNTING=0): sacct never tells
        queue, _, accounting = env.run(command).partition("--")
        answered = time.time()
        if "squeue sees end" not in seen and not LIVE.intersection(queue.split()):
            seen["squeue sees end"] = answered
        if "sacct sees end" not in seen and "COMPLETED" in accounting.split():
            seen["sacct sees end"] = answered
        time.sleep(LOOK_EVERY)
    return seen


def quiet_until_released(transport: Any, job_id: str) -> None:
    """Wait (untimed) until squeue no longer lists the job live: its epilog is done. The epilog's message
    makes slurmctld run a scheduling pass at once, which would place the next round's job early if it
    came while that one was still completing."""
    raw_wait(transport, job_id, TIMEOUT)


def raw_job(env: BenchEnv, directory: str, offset: float) -> tuple[str, dict[str, float]]:
    tick.wait_for(offset)
    submitting = time.time()
    job_id = env.run(f"sbatch --parsable {shlex.quote(f'{directory}/job.sh')}").strip().split(";")[0]
    stamps = {"submitting": submitting, **watch_end(env, job_id)}
    stamps_files = [f"{directory}/{job_id}.{stamp}" for stamp in ("up", "done")]
    up, done = env.run(f"cat {shlex.join(stamps_files)}").split()
    return job_id, {**stamps, "script up": float(up), "script done": float(done)}


def sdk_job(cluster: Any, offset: float) -> tuple[str, dict[str, float]]:
    tick.wait_for(offset)
    submitting = time.time()
    job = cluster.submit(square, 7)
    value = job.result(timeout=TIMEOUT)
    in_hand = time.time()
    if value != 49:
        raise RuntimeError(f"SDK job {job.job_id}: expected 49, got {value!r}")
    quiet_until_released(cluster.backend.transport, str(job.job_id))
    fields = job._outcome.fields  # the runner's own stamps: its module started, the result written
    return str(job.job_id), {
        "submitting": submitting,
        "script up": fields["started_at"],
        "script done": fields["finished_at"],
        "result in hand": in_hand,
    }


def spans(stamps: dict[str, float], spans_: tuple[tuple[str, str, str], ...]) -> dict[str, float]:
    return {
        name: stamps[end] - stamps[start] for name, start, end in spans_ if start in stamps and end in stamps
    }


class Rounds:
    """Runs raw and SDK jobs on the bench stack and turns what they stamped, and what the daemons logged
    about them, into phases. Use as a context manager: the daemons log at ``LOG_LEVELS`` inside it."""

    SIDES = ("raw sbatch", "SDK")

    def __init__(self, env: BenchEnv) -> None:
        self.env = env
        self.cluster = env.cluster()
        self.directory = f"{RAW_DIR}/{unique('floor')}"
        self.jobs: list[tuple[str, str, dict[str, float]]] = []  # (label, job id, stamps)
        self._levels = daemon_logs_at(env, slurm_log.LOG_LEVELS)

    def __enter__(self) -> Rounds:
        script = RAW_SCRIPT.format(directory=shlex.quote(self.directory)).encode()
        self.env.run(f"mkdir -p {shlex.quote(self.directory)}")
        self.env.transport.write_bytes(f"{self.directory}/job.sh", script, mode=0o755)
        self._levels.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._levels.__exit__(None, None, None)

    def run(self, side: str, offset: float, label: str = "") -> str:
        """One job of ``side`` submitted ``offset`` s past a whole second; kept under ``label``."""
        if side == "SDK":
            job_id, stamps = sdk_job(self.cluster, offset)
        else:
            job_id, stamps = raw_job(self.env, self.directory, offset)
        self.jobs.append((label or side, job_id, stamps))
        return job_id

    def phases(self) -> dict[str, list[dict[str, float]]]:
        """label -> each of its jobs' phases (``PHASES`` and ``TOTALS``), in the order they ran."""
        time.sleep(1.0)  # the last epilog's message reaches the log
        logged = read_daemon_events(self.env, [job_id for _, job_id, _ in self.jobs])
        found: dict[str, list[dict[str, float]]] = {}
        for label, job_id, stamps in self.jobs:
            found.setdefault(label, []).append(spans({**stamps, **logged[job_id]}, PHASES + TOTALS))
        self.allocated_past_second = [
            tick.past_whole_second(events["allocated"]) for events in logged.values() if "allocated" in events
        ]
        return found


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """phase -> its median over ``runs``, for the phases every run has."""
    names = [name for name, _, _ in PHASES + TOTALS if runs and all(name in run for run in runs)]
    return {name: round(statistics.median(run[name] for run in runs), 3) for name in names}


def floor(env: BenchEnv, repeats: int) -> Figure:
    with Rounds(env) as rounds:
        for side in Rounds.SIDES:  # warm-up: SSH, imports, the nodes' page cache
            rounds.run(side, 0.5, label="warm-up")
        for index, offset in enumerate(tick.offsets(repeats)):
            for side in Rounds.SIDES:
                job_id = rounds.run(side, offset)
                say(f"  [{index + 1}/{repeats}] {side} job {job_id} at +{offset:.2f} s")
        measured = rounds.phases()
    series: dict[str, Series] = {}
    table: dict[str, dict[str, float]] = {}
    for side in Rounds.SIDES:
        for name, value in medians(measured[side]).items():
            series[f"{side}: {name}"] = Series([run[name] for run in measured[side]])
            table.setdefault(name, {})[side] = value
    allocated = rounds.allocated_past_second
    return Figure(
        "floor",
        "Slurm's latency floor: one trivial batch job's phases, raw sbatch vs SDK (daemon logs + node stamps)",
        "s",
        series,
        details={
            "median phases (s)": table,
            "allocations, seconds past the whole second (median, max)": [
                round(statistics.median(allocated), 3),
                round(max(allocated), 3),
            ]
            if allocated
            else None,
            "submission points within the second": [round(o, 2) for o in tick.offsets(repeats)],
        },
        notes=[
            "slurmctld places a batch job at its next one-second tick, never inside the sbatch RPC (srun is "
            "placed inside its RPC: ~40 ms): the scheduling wait is spread evenly over 0-1 s and is most of "
            "a trivial job's latency. Rounds start at points spread evenly over the second, the same for "
            "both sides, so the medians are what a submission at a random moment meets",
            "the other pass that places a batch job at once: the one slurmctld runs when a node reports a "
            "job's epilog done. Each round waits until the previous job left squeue, so no round rides on "
            "the previous one's epilog",
            "after the tick Slurm's own path is tens of milliseconds (launch request, slurmstepd, epilog); "
            "the SDK learns of the end from the result file the moment the runner wrote it, sacct once "
            "slurmctld recorded the end, squeue only after the epilog",
            "raw: script up/done are `date +%s.%N` in the batch script around `python3 -c 'print(7*7)'`; "
            "SDK: the runner's own stamps (its module started, its result written), so its script start "
            "includes bash and Python start-up",
        ],
    )
