"""SDK versus raw Slurm on the same cluster and the same SSH connection: one task, a map, many tasks."""

from __future__ import annotations

import itertools
import shlex
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import tick
from bench.env import RAW_DIR, BenchEnv, python_wrap, say, unique
from bench.figure import Figure, Target
from bench.phases import median_line, raw_wait, sdk_phases, summarize
from bench.stats import interleave, ratio
from bench.tasks import square

TIMEOUT = 1800.0


def _check(what: str, got: object, expected: object) -> None:
    """A wrong answer makes a timing meaningless: stop with the evidence."""
    if got != expected:
        raise RuntimeError(f"{what}: expected {expected!r}, got {got!r}")


def _sum_of_lines(text: str) -> tuple[int, int]:
    numbers = [int(line) for line in text.split()]
    return len(numbers), sum(numbers)


def _expected(n: int) -> tuple[int, int]:
    return n, sum(i * i for i in range(n))


def sdk_round_trip(cluster: Any) -> tuple[float, dict[str, float]]:
    """One ``submit(square, 7).result()``: its wall time and its phases."""
    from slurm import timing

    with timing.recording() as recorded:
        started = time.perf_counter()
        job = cluster.submit(square, 7)
        value = job.result(timeout=TIMEOUT)
        seconds = time.perf_counter() - started
    _check("SDK round trip", value, 49)
    return seconds, sdk_phases(recorded, job._outcome.fields)


#: The raw job: the same work as ``square(7)``, stamping when its Python is up and when it is done.
RAW_JOB = "python3 -c 'import time; s = time.time(); print(7 * 7); print(s, time.time())'"


def raw_round_trip(env: BenchEnv) -> tuple[float, dict[str, float]]:
    """The same round trip by hand over the same connection: write a job script, ``sbatch`` it, poll
    ``squeue`` from the client on the SDK's cadence, ``cat`` the output."""
    directory = f"{RAW_DIR}/{unique('rt')}"
    script = f"#!/bin/bash\n#SBATCH -J raw-rt\n#SBATCH -o {directory}/%j.out\n{RAW_JOB}\n"
    started = time.perf_counter()
    env.transport.write_bytes(f"{directory}/job.sh", script.encode(), mode=0o755)
    uploaded = time.perf_counter()
    job_id = env.run(f"sbatch --parsable {directory}/job.sh").strip()
    submitted, submitted_wall = time.perf_counter(), time.time()
    raw_wait(env.transport, job_id, TIMEOUT)
    seen, seen_wall = time.perf_counter(), time.time()
    value, stamps = env.run(f"cat {directory}/{job_id}.out").strip().split("\n")
    ended = time.perf_counter()
    _check("raw round trip", value, "49")
    up, done = map(float, stamps.split())
    return ended - started, {
        "upload": uploaded - started,
        "sbatch": submitted - uploaded,
        "queue wait": up - submitted_wall,
        "run": done - up,
        "detect": seen_wall - done,
        "fetch": ended - seen,
    }


def roundtrip(env: BenchEnv, repeats: int) -> Figure:
    cluster = env.cluster()
    env.run(f"mkdir -p {RAW_DIR}")
    phases: dict[str, list[dict[str, float]]] = {"SDK": [], "raw": []}

    # Every side starts its rounds at the same points of the wall clock's second (see bench.tick): run
    # back to back, the two sides lock onto slurmctld's one-second tick, one just before it, one after.
    starts = tick.offsets(repeats)

    def measured(side: str, run: Callable[[], tuple[float, dict[str, float]]]) -> Callable[[], float]:
        offsets = itertools.cycle([0.5, *starts])  # the warm-up round first, then one point per round

        def once() -> float:
            tick.wait_for(next(offsets))
            seconds, breakdown = run()
            phases[side].append(breakdown)
            return seconds

        return once

    series = interleave(
        repeats,
        {
            "SDK submit().result()": measured("SDK", lambda: sdk_round_trip(cluster)),
            "raw sbatch + squeue loop": measured("raw", lambda: raw_round_trip(env)),
        },
        say=say,
    )
    timed = {side: runs[-repeats:] for side, runs in phases.items()}  # the warm-up round is not timed
    sdk_series, raw_series = series.values()
    return Figure(
        "roundtrip",
        "Round trip of a trivial task over SSH: SDK vs raw sbatch + squeue loop (same connection, same "
        "poll cadence)",
        "s",
        {**series, **summarize(timed["SDK"], "SDK: "), **summarize(timed["raw"], "raw: ")},
        ratios={"SDK / raw sbatch + squeue loop": ratio(sdk_series, raw_series)},
        target=Target("SDK / raw sbatch + squeue loop", "<=", 1.5, "≤ 1.5×"),
        details={f"median phases ({side})": median_line(runs) for side, runs in timed.items()},
        notes=[
            "same SSH connection, same poll cadence (50 ms, x1.25, up to 1 s). SDK: one tar command writes "
            "payload + script, sbatch, then it looks for its result file and reads it with one tar stream. "
            "raw: the job script over SFTP, sbatch, a squeue loop, one `cat` of the output; the job runs "
            "`python3 -c 'print(7*7)'`",
            "the SDK does more work but can end sooner: it sees the result file the moment the task wrote "
            "it, while squeue lists the job until slurmd reports it ended (compare the detect phases). "
            "Queue wait is Slurm's scheduling and the node's start-up, and on a loaded 2-core host it "
            "varies more than the whole difference: compare the phases, not only the totals",
            "phases: queue wait and run come from stamps taken on the node (one kernel clock); the SDK's "
            "run starts after the `slurm` package is imported (a few ms), the raw one when python3 is up",
            "each round of each side starts at the same spread-out points of the wall clock's second: "
            "slurmctld places batch jobs at its one-second tick, and back-to-back rounds otherwise lock "
            "onto it (the `floor` figure has the phases)",
        ],
    )


def map_vs_array(
    env: BenchEnv, repeats: int, n: int, *, name: str = "map", target: float = 1.0, warmup: bool | None = None
) -> Figure:
    """``cluster.map(square, range(n))`` against raw ``sbatch --array`` of the same work, interleaved. Past
    the cluster's ``MaxArraySize`` both sides submit several arrays: the SDK splits a map itself, the raw
    side submits one array per ``MaxArraySize`` indices, its first item as the job script's argument."""
    from slurm import timing

    cluster = env.cluster()
    sdk_phases_seen: list[dict[str, float]] = []
    per_array = _max_array_indices(env)

    def sdk() -> float:
        with timing.recording() as recorded:
            started = time.perf_counter()
            array = cluster.map(square, range(n))
            values = array.results(timeout=TIMEOUT)
            seconds = time.perf_counter() - started
        _check("SDK map", (len(values), sum(values)), _expected(n))
        sdk_phases_seen.append(timing.totals(recorded))
        return seconds

    def raw() -> float:
        directory = f"{RAW_DIR}/{unique('map')}"
        script = "\n".join(
            [
                "#!/bin/bash",
                "#SBATCH -J raw-map",
                f"#SBATCH -o {directory}/%A_%a.out",
                # The array's first item comes as the script's argument: `sbatch --export=ALL,OFFSET=...`
                # would be the usual way, but on the dev cluster it makes slurmd die ("fatal: clone:
                # Operation not permitted").
                'python3 -c \'import os, sys; i = int(os.environ["SLURM_ARRAY_TASK_ID"]) + int(sys.argv[1]); '
                'print(i * i)\' "$1"',
                "",
            ]
        )
        started = time.perf_counter()
        env.transport.write_bytes(f"{directory}/job.sh", script.encode(), mode=0o755)
        job_ids = [
            env.run(
                f"sbatch --parsable --array=0-{min(per_array, n - offset) - 1} {directory}/job.sh {offset}"
            ).strip()
            for offset in range(0, n, per_array)
        ]
        raw_wait(env.transport, ",".join(job_ids), TIMEOUT)
        out = env.run(f"cat {directory}/*.out", timeout=TIMEOUT)
        seconds = time.perf_counter() - started
        _check("raw array", _sum_of_lines(out), _expected(n))
        return seconds

    arrays = -(-n // per_array)
    raw_label = f"raw sbatch --array=0-{n - 1}" if arrays == 1 else f"raw: {arrays} x sbatch --array"
    series = interleave(repeats, {f"SDK map ({n})": sdk, raw_label: raw}, warmup=warmup, say=say)
    sdk_series, raw_series = series.values()
    timed = sdk_phases_seen[-repeats:]
    notes = [
        "both include writing the job script, submitting, waiting and collecting every result; both "
        "poll over the same SSH connection on the SDK's cadence (SDK: result files, raw: squeue); raw "
        "collects with one `cat`, the SDK with one tar stream of the result files"
    ]
    if arrays > 1:
        notes.append(
            f"over MaxArraySize: both sides submit {arrays} arrays of up to {per_array} tasks (the SDK splits "
            "the map itself); the task is `square` of an int, so the payload is small"
        )
    if warmup is False:
        notes.append("no warm-up round (each round is minutes): the first round of each side starts cold")
    return Figure(
        name,
        f"{n}-element map vs a raw sbatch --array of the same work",
        "s",
        series,
        ratios={"SDK / raw array": ratio(sdk_series, raw_series)},
        target=Target("SDK / raw array", "<=", target, f"≤ {target}×"),
        details={
            "n": n,
            "SDK client phases (median s)": {
                phase: round(statistics.median(run.get(phase, 0.0) for run in timed), 3)
                for phase in ("serialize", "submit", "wait", "fetch", "unpickle")
            },
        },
        notes=notes,
    )


def _max_array_indices(env: BenchEnv) -> int:
    """How many tasks one array may have here: ``MaxArraySize`` allows indices 0 to MaxArraySize - 1."""
    config = env.run("scontrol show config")
    for line in config.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            return int(value.strip())
    raise RuntimeError("scontrol show config lists no MaxArraySize")


def many(env: BenchEnv, repeats: int, n: int) -> Figure:
    from slurm.waiting import wait_all

    cluster = env.cluster()

    def sdk() -> float:
        started = time.perf_counter()
        jobs = [cluster.submit(square, i) for i in range(n)]
        wait_all(jobs, timeout=TIMEOUT)
        values = [job.result() for job in jobs]
        seconds = time.perf_counter() - started
        _check("SDK many", (len(values), sum(values)), _expected(n))
        return seconds

    def raw() -> float:
        directory = f"{RAW_DIR}/{unique('many')}"
        started = time.perf_counter()
        env.run(f"mkdir -p {directory}")
        ids = [
            env.run(
                f"sbatch --parsable -J raw-many -o {directory}/%j.out --wrap {python_wrap(f'{i}*{i}')}"
            ).strip()
            for i in range(n)
        ]
        raw_wait(env.transport, shlex.quote(",".join(ids)), TIMEOUT)
        out = env.run(f"cat {directory}/*.out", timeout=TIMEOUT)
        seconds = time.perf_counter() - started
        _check("raw many", _sum_of_lines(out), _expected(n))
        return seconds

    series = interleave(repeats, {f"SDK {n}× submit": sdk, f"raw {n}× sbatch": raw}, say=say)
    sdk_series, raw_series = series.values()
    return Figure(
        "many",
        f"{n} independent tiny tasks vs {n} raw sbatch calls",
        "s",
        series,
        ratios={"SDK / raw sbatch": ratio(sdk_series, raw_series)},
        details={"n": n},
        notes=[
            "raw: one `sbatch --wrap` per task over the same SSH connection, then a squeue loop from the "
            "client on the SDK's cadence and one `cat`; SDK: one submit() per task (payload + script upload, sbatch), then wait_all and results"
        ],
    )
