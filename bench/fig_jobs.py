"""SDK versus raw Slurm on the same cluster and the same SSH connection: one task, a map, many tasks."""

from __future__ import annotations

import shlex
import time

from bench.env import RAW_DIR, BenchEnv, python_wrap, say, unique, wait_loop
from bench.figure import Figure, Target
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


def roundtrip(env: BenchEnv, repeats: int) -> Figure:
    cluster = env.cluster()
    env.run(f"mkdir -p {RAW_DIR}")

    def sdk() -> float:
        started = time.perf_counter()
        value = cluster.submit(square, 7).result(timeout=TIMEOUT)
        seconds = time.perf_counter() - started
        _check("SDK round trip", value, 49)
        return seconds

    def raw(wait: str) -> float:
        out = f"{RAW_DIR}/rt-%j.out"
        submit = f"sbatch --parsable -J raw-rt -o {out} --wrap {python_wrap('7*7')}"
        command = (
            f"id=$({submit.replace('sbatch', 'sbatch --wait', 1)})"
            if wait == "sbatch --wait"
            else f"id=$({submit}) && {wait_loop('$id', 0.1)}"
        )
        started = time.perf_counter()
        value = env.run(f"{command}; cat {RAW_DIR}/rt-$id.out").strip()
        seconds = time.perf_counter() - started
        _check(f"raw round trip ({wait})", value, "49")
        return seconds

    series = interleave(
        repeats,
        {
            "SDK submit().result()": sdk,
            "raw sbatch --wait": lambda: raw("sbatch --wait"),
            "raw sbatch + squeue loop": lambda: raw("squeue loop"),
        },
        say=say,
    )
    sdk_series = series["SDK submit().result()"]
    return Figure(
        "roundtrip",
        "Round trip of a trivial task over SSH: SDK vs raw sbatch (same connection)",
        "s",
        series,
        ratios={
            "SDK / sbatch --wait": ratio(sdk_series, series["raw sbatch --wait"]),
            "SDK / sbatch + squeue loop": ratio(sdk_series, series["raw sbatch + squeue loop"]),
        },
        target=Target("SDK / sbatch --wait", "<=", 1.5, "≤ 1.5×"),
        notes=[
            "raw jobs run `python3 -c 'print(7*7)'` and the output file is read in the same SSH command",
            "`sbatch --wait` checks the job after 2 s, then 8 s, ...: a fast job still costs ~2 s. The "
            "squeue loop (every 0.1 s on the login node) is the tighter baseline",
        ],
    )


def map_vs_array(env: BenchEnv, repeats: int, n: int) -> Figure:
    cluster = env.cluster()

    def sdk() -> float:
        started = time.perf_counter()
        values = cluster.map(square, range(n)).results(timeout=TIMEOUT)
        seconds = time.perf_counter() - started
        _check("SDK map", (len(values), sum(values)), _expected(n))
        return seconds

    def raw() -> float:
        directory = f"{RAW_DIR}/{unique('map')}"
        script = "\n".join(
            [
                "#!/bin/bash",
                "#SBATCH -J raw-map",
                f"#SBATCH -o {directory}/%A_%a.out",
                "python3 -c 'import os; i = int(os.environ[\"SLURM_ARRAY_TASK_ID\"]); print(i * i)'",
                "",
            ]
        )
        started = time.perf_counter()
        env.transport.write_bytes(f"{directory}/job.sh", script.encode(), mode=0o755)
        out = env.run(
            f"id=$(sbatch --parsable --array=0-{n - 1} {directory}/job.sh) && {wait_loop('$id')}; "
            f"cat {directory}/*.out",
            timeout=TIMEOUT,
        )
        seconds = time.perf_counter() - started
        _check("raw array", _sum_of_lines(out), _expected(n))
        return seconds

    series = interleave(repeats, {f"SDK map ({n})": sdk, f"raw sbatch --array=0-{n - 1}": raw}, say=say)
    sdk_series, raw_series = series.values()
    return Figure(
        "map",
        f"{n}-element map vs a raw sbatch --array of the same work",
        "s",
        series,
        ratios={"SDK / raw array": ratio(sdk_series, raw_series)},
        target=Target("SDK / raw array", "<=", 1.3, "≤ 1.3×"),
        details={"n": n},
        notes=[
            "both include writing the job script, submitting, waiting and collecting every result; raw "
            "waits with a squeue loop (0.2 s) on the login node and collects with one `cat`"
        ],
    )


def many(env: BenchEnv, repeats: int, n: int) -> Figure:
    from slurm.job import wait_all

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
        out = env.run(f"{wait_loop(shlex.quote(','.join(ids)))}; cat {directory}/*.out", timeout=TIMEOUT)
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
            "raw: one `sbatch --wrap` per task over the same SSH connection, then a squeue loop and one "
            "`cat`; SDK: one submit() per task (payload + script upload, sbatch), then wait_all and results"
        ],
    )
