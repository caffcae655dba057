"""Work the benchmarks run on the nodes. Plain functions, importable there as ``bench.tasks`` (the repo
is mounted at /opt/slurm_sdk_dev), so the SDK and submitit both ship them by reference."""


def square(x: int) -> int:
    return x * x


def nap(seconds: float) -> float:
    """Sleeps, then returns the wall-clock time it ended (node and host share the kernel's clock)."""
    import time

    time.sleep(seconds)
    return time.time()
