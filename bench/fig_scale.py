"""Scale: per-task start-up on a compute node, a map of big items, and one large result."""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time

from bench.env import REPO_ROOT, BenchEnv, say, unique
from bench.figure import Figure, Target
from bench.stats import Series, ratio

TIMEOUT = 3600.0


def startup(env: BenchEnv, runs: int) -> Figure:
    """One array task's cost on c1: the runner, started as a job script starts it, on a real payload
    (import, read its item, run ``square``, write the result) against ``python3 -c 'print(7*7)'``,
    alternating, one srun."""
    from bench.tasks import square
    from slurm.node.payload import LOCAL_PYTHON
    from slurm.rendering import runner_command
    from slurm.serialization import Outcome, dump_payload
    from slurm.task import Task

    cluster = env.cluster()
    directory = f"{cluster.resolve_job_root()}/{unique('startup')}"
    calls = [((i,), {}) for i in range(runs)]
    env.transport.write_bytes(
        f"{directory}/payload.pkl", dump_payload(Task(square), calls, lambda: LOCAL_PYTHON)
    )
    setup = "; ".join(cluster.packaging.setup_lines())
    python = cluster.packaging.python_command()
    runner = f"SLURM_ARRAY_TASK_ID=$i {runner_command(python)} {shlex.quote(directory)} 2>/dev/null"
    loop = (
        f"{setup}; for i in $(seq 0 {runs - 1}); do "
        f's=$(date +%s%N); {runner}; e=$(date +%s%N); echo "sdk $((e - s))"; '
        's=$(date +%s%N); python3 -c "print(7*7)" >/dev/null; e=$(date +%s%N); echo "raw $((e - s))"; done; '
        f"{python} -X importtime -c 'import slurm.node.runner' 2>&1 >/dev/null | tail -n 12"
    )
    out = env.run(f"srun -N1 -n1 -w c1 --quiet sh -c {shlex.quote(loop)}", timeout=600)
    samples: dict[str, list[float]] = {"sdk": [], "raw": []}
    for line in out.splitlines():
        side, _, nanos = line.partition(" ")
        if side in samples:
            samples[side].append(int(nanos) / 1e9)
    found = env.transport.read_existing([f"{directory}/result-{i}.pkl" for i in range(runs)])
    values = [Outcome.load(found[f"{directory}/result-{i}.pkl"]).value(str(i)) for i in sorted(range(runs))]
    if values != [i * i for i in range(runs)]:  # a failed run writes a result file too: check the values
        raise RuntimeError(f"the runner returned {values}, expected the squares of 0..{runs - 1}")
    sdk, raw = Series(samples["sdk"]), Series(samples["raw"])
    imports = [
        line.split("|")[-1].strip() + " " + line.split("|")[1].strip() + " µs"
        for line in out.splitlines()
        if line.startswith("import time:") and "slurm" in line
    ]
    return Figure(
        "startup",
        "Per-task start-up on a compute node: the SDK's runner on a real payload vs python3 -c",
        "s",
        {"SDK: the runner, as a job script starts it (one task)": sdk, "raw: python3 -c 'print(7*7)'": raw},
        ratios={"runner / python3 -c": ratio(sdk, raw)},
        details={"runs": runs, "slurm imports (cumulative, python -X importtime)": imports},
        notes=[
            "alternating, in one srun on c1 (srun's own cost is outside the timings); the runner reads its "
            "item of a payload of bench.tasks.square calls, runs it and writes result-<i>.pkl; both use the "
            "node's python3 (packaging none), and every result is checked by value"
        ],
    )


def big_map(env: BenchEnv, n: int, item_bytes: int) -> Figure:
    """A map of ``n`` items of ``item_bytes`` each: it completes, and each task reads O(1) bytes."""
    from bench.tasks import checksum
    from slurm import timing

    cluster = env.cluster()
    items = [bytes([i % 256]) * item_bytes for i in range(n)]
    with timing.recording() as recorded:
        started = time.perf_counter()
        array = cluster.map(checksum, items)
        values = array.results(timeout=TIMEOUT)
        seconds = time.perf_counter() - started
    if values != [(item_bytes, i % 256) for i in range(n)]:
        raise RuntimeError("big map: some task returned another item's checksum")
    reads = [job._outcome.fields["payload_bytes_read"] for job in array]
    phases = timing.totals(recorded)
    size = f"{item_bytes // 1000} KB" if item_bytes >= 1000 else f"{item_bytes} B"
    return Figure(
        "big_map",
        f"Map of {n:,} items of {size} each: completes; payload bytes each task reads",
        "s",
        {
            f"SDK map of {n:,}: total": Series([seconds]),
            "submission (payloads, sbatch, record)": Series([phases.get("submit", 0.0)]),
            "wait (runs; result fetches apart)": Series([phases.get("wait", 0.0)]),
        },
        ratios={
            "max payload bytes read per task / (item + 1 KiB)": Series([max(reads) / (item_bytes + 1024)])
        },
        target=Target("max payload bytes read per task / (item + 1 KiB)", "<=", 1.0, "O(1): ≤ item + 1 KiB"),
        details={
            "n": n,
            "item bytes": item_bytes,
            "payload bytes read per task": {
                "min": min(reads),
                "median": statistics.median(reads),
                "max": max(reads),
            },
            "array jobs": len(array.array_ids),
            "client phases (s)": {name: round(value, 2) for name, value in phases.items()},
        },
        notes=[
            f"each task reads the header, the task reference, two offsets and its own item: "
            f"{statistics.median(reads):,.0f} bytes (median) of a {item_bytes:,}-byte item, whatever n is; "
            "before, every task unpickled the whole payload of its array job (N² bytes over a map)",
            "run once (n=1): minutes of cluster time on 2 cores",
        ],
    )


def large_result(env: BenchEnv, total: int, parts: int, repeats: int) -> Figure:
    """One job returning ``total`` bytes vs a map of ``parts`` tasks returning the same bytes, each in a
    fresh process (peak RSS is the fetch's alone)."""
    c = env.connection
    connection = {
        "host": c.host,
        "port": c.port,
        "user": c.user,
        "key_filename": str(c.key_path),
        "known_host_key": c.host_key,
    }
    from bench.env import NONE_PACKAGING

    def client(mode: str) -> dict[str, float]:
        command = [
            sys.executable,
            "-m",
            "bench.result_client",
            json.dumps(connection),
            mode,
            str(total),
            str(parts),
            json.dumps(NONE_PACKAGING),
        ]
        out = subprocess.run(
            command, cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=TIMEOUT
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    runs: dict[str, list[dict[str, float]]] = {"single": [], "map": []}
    for round_ in range(repeats):
        for mode in runs:
            report = client(mode)
            runs[mode].append(report)
            say(
                f"  [{round_ + 1}/{repeats}] {mode}: {report['seconds']:.2f} s, peak {report['peak_mb']:.0f} MB"
            )

    def fetch(report: dict) -> float:
        return report["phases"].get("fetch", 0.0) + report["phases"].get("unpickle", 0.0)

    mb = total / 1e6
    single_fetch = Series([fetch(r) for r in runs["single"]])
    map_fetch = Series([fetch(r) for r in runs["map"]])
    growth = Series([(r["peak_mb"] - r["base_mb"]) * 2**20 / total for r in runs["single"]])
    return Figure(
        "large_result",
        f"A {mb:g} MB result: one job vs the map path ({parts} tasks x {mb / parts:g} MB), each in a "
        "fresh client process",
        "s",
        {
            "single job: round trip": Series([r["seconds"] for r in runs["single"]]),
            f"map of {parts}: round trip": Series([r["seconds"] for r in runs["map"]]),
            "single job: result fetch + unpickle": single_fetch,
            f"map of {parts}: result fetch + unpickle": map_fetch,
        },
        ratios={
            "single / map (fetch + unpickle)": ratio(single_fetch, map_fetch),
            "single job: client peak RSS growth / result size": growth,
        },
        target=Target("single / map (fetch + unpickle)", "<=", 2.0, "≤ 2×; RSS growth ≈ 2×"),
        details={
            "bytes": total,
            "peak RSS MB (single: base, peak)": [[r["base_mb"], r["peak_mb"]] for r in runs["single"]],
            "peak RSS MB (map: base, peak)": [[r["base_mb"], r["peak_mb"]] for r in runs["map"]],
        },
        notes=[
            "both read results through one tar stream over an SSH exec channel (before: the single job's "
            "file came over SFTP in 32 KB round trips); fetch + unpickle is timed by slurm.timing; RSS "
            "growth is the client process's peak RSS (VmHWM) minus its RSS before submitting, over the result size",
        ],
    )


#: A fresh client process: the SDK imported and a Cluster made (no config file, local backend).
CLIENT_START = "import slurm; slurm.Cluster()"


def client_import(env: BenchEnv, runs: int) -> Figure:
    """``import slurm`` plus ``Cluster()`` in a fresh process on this host, against a bare ``python -c
    pass``, alternating: what every script using the SDK pays before its first submission."""
    import slurm

    # Bytecode first, as an installed wheel has it (pip compiles on install): with PYTHONDONTWRITEBYTECODE
    # set (as in some shells and CI), an editable checkout would otherwise recompile every module each run.
    package = os.path.dirname(slurm.__file__)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True, stdout=subprocess.DEVNULL)
    samples: dict[str, list[float]] = {"sdk": [], "bare": []}
    for _ in range(runs):
        for side, code in (("sdk", CLIENT_START), ("bare", "pass")):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            samples[side].append(time.perf_counter() - started)
    sdk, bare = Series(samples["sdk"]), Series(samples["bare"])
    extra = Series([s - b for s, b in zip(samples["sdk"], samples["bare"], strict=True)])
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; {CLIENT_START}; "
            "print(*sorted({'pydantic', 'cloudpickle', 'yaml', 'paramiko'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return Figure(
        "client_import",
        "A fresh client process: import slurm + Cluster() vs a bare python -c pass",
        "s",
        {"SDK: import slurm; slurm.Cluster()": sdk, "bare: python -c pass": bare, "SDK's own part": extra},
        target=Target("SDK's own part", "<=", 0.060, "≤ 60 ms"),
        details={"runs": runs, "heavy libraries imported (pydantic, cloudpickle, yaml, paramiko)": heavy},
        notes=[
            "on the client host, alternating, with the SDK's bytecode compiled first; the SDK's own part is "
            "each pair's difference; Cluster() imports only what building one needs (submitting, waiting "
            "and config files import theirs on first use)"
        ],
    )
