"""Runs ON THE LOGIN NODE as user sdk: Parsl with its SlurmProvider, as a user drives it: a
HighThroughputExecutor whose block is one Slurm job; 10 Python apps run by its workers on a compute node.
Started by tests/integration/test_parsl.py.

    PYTHONPATH=<parsl site> python3 parsl_client.py FOLDER SITE

Prints one JSON object: each app's result and node, and the block's Slurm job ids, or {"error": ...}.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import parsl
from parsl.app.app import python_app
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.launchers import SrunLauncher
from parsl.providers import SlurmProvider

BOUND_SECONDS = 420  # a block that never starts is a failure with a reason, not a hang
APPS = 10


@python_app
def square(x: int) -> tuple[int, str]:
    import os

    return x * x, os.environ["SLURMD_NODENAME"]


def give_up(*_: object) -> None:
    raise TimeoutError(f"no results within {BOUND_SECONDS} s")


def config(folder: str, site: str) -> Config:
    provider = SlurmProvider(
        nodes_per_block=1,
        init_blocks=1,
        max_blocks=1,
        walltime="00:10:00",
        exclusive=False,
        # The workers' python3 imports Parsl from the shared site; process_worker_pool.py is in its bin/.
        worker_init=f"export PYTHONPATH={site} PATH={site}/bin:$PATH",
        launcher=SrunLauncher(),
    )
    executor = HighThroughputExecutor(label="slurm", max_workers_per_node=2, provider=provider)
    return Config(executors=[executor], run_dir=f"{folder}/runinfo")


def main() -> None:
    folder, site = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(BOUND_SECONDS)
    report: dict[str, Any] = {}
    try:
        dfk = parsl.load(config(folder, site))
        try:
            report["apps"] = [future.result() for future in [square(x) for x in range(APPS)]]
            provider = dfk.executors["slurm"].provider
            report["blocks"] = sorted(provider.resources)
        finally:
            dfk.cleanup()
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {str(exc)[-1500:]}"
    finally:
        signal.alarm(0)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
