"""Site limits: a map under a submit limit (the ``site_limits`` fault) vs the same map with none."""

from __future__ import annotations

import time

from bench.env import BenchEnv, say
from bench.figure import Figure, Target
from bench.stats import interleave, ratio
from bench.tasks import square
from slurm_dev_cluster.faults import Faults

TIMEOUT = 3600.0
#: The limits the figure runs under: the issue's example (50 jobs pending or running, arrays of 20).
MAX_JOBS, MAX_ARRAY = 50, 20


def throttled_map(env: BenchEnv, repeats: int, n: int) -> Figure:
    """Seconds from ``map`` to every result, under MaxSubmitJobsPerUser=50/MaxArraySize=20 and without."""
    env.ensure_up()  # the faults below act on a running stack: when this figure runs first, start it
    faults = Faults(env.stack)

    def once(limited: bool) -> float:
        # Outside the measured span: the fault (a reconfigure) and a fresh cluster, which learns the limits.
        if limited:
            faults.site_limits(MAX_JOBS, MAX_ARRAY)
        else:
            faults.reset()
        cluster = env.cluster()
        try:
            started = time.perf_counter()
            values = cluster.map(square, range(n)).results(timeout=TIMEOUT)
            seconds = time.perf_counter() - started
        finally:
            cluster.close()
        if values != [i * i for i in range(n)]:
            raise RuntimeError(f"the {'limited' if limited else 'unlimited'} map returned wrong results")
        return seconds

    limited_key, free_key = f"map of {n}, limit {MAX_JOBS}/{MAX_ARRAY}", f"map of {n}, no limit"
    try:
        series = interleave(
            repeats, {limited_key: lambda: once(True), free_key: lambda: once(False)}, say=say
        )
    finally:
        faults.reset()
    return Figure(
        "throttled_map",
        f"A {n}-item map under a {MAX_JOBS}-job submit limit (arrays of {MAX_ARRAY}) vs no limit",
        "s",
        series,
        ratios={"limited / unlimited": ratio(series[limited_key], series[free_key])},
        target=Target("limited / unlimited", "<=", 1.3, "≤ 1.3×"),
        details={"n": n, "MaxSubmitJobsPerUser": MAX_JOBS, "MaxArraySize": MAX_ARRAY},
        notes=[
            "from map() to the last result; the limited map is submitted in arrays of 20 as the user's jobs "
            "end (slurm/throttle.py), the unlimited one in one array. The nodes' 8 CPUs run far fewer tasks "
            "at once than 50, so the limit itself forces little: the ratio is the throttle's own cost"
        ],
    )
