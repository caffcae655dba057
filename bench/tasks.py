"""Work the benchmarks run on the nodes. Plain functions, importable there as ``bench.tasks`` (the repo
is mounted at /opt/slurm_sdk_dev), so the SDK and submitit both ship them by reference."""


def square(x: int) -> int:
    return x * x
