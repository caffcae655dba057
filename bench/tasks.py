"""Work the benchmarks run on the nodes. Plain functions, importable there as ``bench.tasks`` (the repo
is mounted at /opt/project), so the SDK and submitit both ship them by reference."""


def square(x: int) -> int:
    return x * x


def nap(seconds: float) -> float:
    """Sleeps, then returns the wall-clock time it ended (node and host share the kernel's clock)."""
    import time

    time.sleep(seconds)
    return time.time()


def save_once(x: int) -> int:
    """Loads and saves a checkpoint once: the checkpoint machinery's cost when a job never requeues."""
    from slurm import checkpoint

    state = checkpoint.load(x)
    checkpoint.save(state)
    return state


def stamp_runs(steps: int, log_path: str) -> int:
    """Appends time.time() to ``log_path`` as each run starts, then works ``steps`` x 0.5 s, saving each."""
    import time

    from slurm import checkpoint

    with open(log_path, "a") as handle:
        handle.write(f"{time.time()}\n")
    step = checkpoint.load(0)
    while step < steps:
        time.sleep(0.5)
        step += 1
        checkpoint.save(step)
    return step


def checksum(data: bytes) -> tuple[int, int]:
    """(length, first byte) of one map item: enough to check each task got its own item."""
    return len(data), data[0]


def blob(size: int, fill: int = 1) -> bytes:
    """A result of ``size`` bytes (the large-result figure)."""
    return bytes([fill % 256]) * size
