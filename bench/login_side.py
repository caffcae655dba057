"""Runs ON THE LOGIN NODE (node Python): one timed workload through the SDK or through submitit.

    python3 /opt/project/bench/login_side.py sdk|submitit|submitit-polled one|map N SCRATCH_DIR

submitit: its own ``job.result()``, which sleeps 1 s between checks (``Job.wait``). submitit-polled: its
best setting, ``job.done()`` polled on the SDK's cadence (50 ms, x1.25, up to 1 s) before ``result()``.

Prints one JSON line: {"seconds": ..., "count": ..., "sum": ...}. Imports happen before the clock starts,
so both sides are timed from "create the executor / cluster" to "all results in hand".
"""

from __future__ import annotations

import json
import sys
import time

TIMEOUT = 1800


def run_sdk(workload: str, n: int, scratch: str) -> tuple[float, list[int]]:
    from bench.tasks import square
    from slurm import Cluster
    from slurm.backends.slurm import SlurmBackend
    from slurm.transports.host import HostTransport

    started = time.perf_counter()
    cluster = Cluster(
        backend=SlurmBackend(HostTransport()),
        job_root=f"{scratch}/sdk-jobs",
        packaging={"type": "none", "pythonpath": ["/opt/project"]},
    )
    if workload == "one":
        values = [cluster.submit(square, 7).result(timeout=TIMEOUT)]
    else:
        values = cluster.map(square, range(n)).results(timeout=TIMEOUT)
    return time.perf_counter() - started, values


def run_submitit(workload: str, n: int, scratch: str, polled: bool = False) -> tuple[float, list[int]]:
    import submitit

    from bench.tasks import square
    from slurm.waiting import result_check_pauses

    started = time.perf_counter()
    executor = submitit.SlurmExecutor(folder=f"{scratch}/submitit/%j")
    executor.update_parameters(time=10)
    jobs = [executor.submit(square, 7)] if workload == "one" else executor.map_array(square, list(range(n)))
    if polled:
        pauses = result_check_pauses(1.0)
        while not all(job.done() for job in jobs):
            time.sleep(next(pauses))
    values = [job.result() for job in jobs]
    return time.perf_counter() - started, values


def main() -> None:
    side, workload, n, scratch = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    run = {
        "sdk": run_sdk,
        "submitit": run_submitit,
        "submitit-polled": lambda w, n, s: run_submitit(w, n, s, polled=True),
    }[side]
    seconds, values = run(workload, n, scratch)
    print(json.dumps({"seconds": seconds, "count": len(values), "sum": sum(values)}))


if __name__ == "__main__":
    main()
