"""Runs in its own process (so its peak RSS is the fetch's alone): one large result, timed and measured.

    python -m bench.result_client CONNECTION_JSON single|map TOTAL_BYTES PARTS

single: one job returns TOTAL_BYTES; map: PARTS tasks return TOTAL_BYTES / PARTS each (the map path).
Prints one JSON line: wall seconds, the SDK's phases (slurm.timing), RSS before and at its peak (MB).
"""

from __future__ import annotations

import json
import resource
import sys
import time


def peak_mb() -> float:
    """VmHWM: this process image's peak RSS (ru_maxrss also counts the parent's, from before exec)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    connection, mode, total, parts = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    from bench.tasks import blob
    from slurm import Cluster, timing
    from slurm.backends.slurm import SlurmBackend
    from slurm.transports.ssh import SSHTransport

    transport = SSHTransport(**connection)
    cluster = Cluster(backend=SlurmBackend(transport), packaging=json.loads(sys.argv[5]))
    cluster.submit(blob, 1).result(timeout=600)  # connection, job root and packaging settled, untimed
    base = rss_mb()
    with timing.recording() as recorded:
        started = time.perf_counter()
        if mode == "single":
            values = [cluster.submit(blob, total).result(timeout=1800)]
        else:
            values = cluster.map(blob, [total // parts] * parts).results(timeout=1800)
        seconds = time.perf_counter() - started
    got = sum(len(value) for value in values)
    if got != total or any(value.count(1) != len(value) for value in values):
        raise SystemExit(f"wrong result: {got} bytes, expected {total}")
    peak = peak_mb()
    print(
        json.dumps({"seconds": seconds, "phases": timing.totals(recorded), "base_mb": base, "peak_mb": peak})
    )
    cluster.close()


if __name__ == "__main__":
    main()
