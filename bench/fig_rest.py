"""slurmrestd figures: the SDK through RestBackend versus the SSH backend on the same stack (one trivial task,
a 1,000-item map), and the warm start of a stack with slurmrestd (compose profile ``rest``) versus without.

The host is shared (2 cores here), so every sample carries the 1-minute load average taken when it ended.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.env import BENCH_PROJECT, NONE_PACKAGING, REPO_ROOT, BenchEnv, say
from bench.fig_jobs import TIMEOUT, sdk_round_trip
from bench.figure import Figure
from bench.stats import Series, interleave, ratio
from bench.tasks import square

PROFILES_VAR = "SLURM_SDK_COMPOSE_PROFILES"


def _with_load(run: Callable[[], float], loads: list[float]) -> Callable[[], float]:
    """``run``, noting the host's 1-minute load average beside each of its samples."""

    def measured() -> float:
        seconds = run()
        loads.append(round(os.getloadavg()[0], 1))
        return seconds

    return measured


def _rest_cluster(env: BenchEnv) -> Any:
    """A Cluster on RestBackend: jobs through the stack's slurmrestd, files over an SSH connection of its
    own (as `slurm-dev-cluster config --backend rest` builds it), the token from `scontrol token`."""
    from slurm import Cluster
    from slurm.backends.rest import RestBackend, scontrol_token
    from slurm.transports.ssh import SSHTransport
    from slurm_dev_cluster.inputs import rest_enabled

    if not rest_enabled():
        raise RuntimeError(
            f"the REST figures need slurmrestd in the stack; fix: run with {PROFILES_VAR}=rest"
        )
    c = env.connection
    files = SSHTransport(c.host, c.port, c.user, str(c.key_path), c.host_key)
    backend = RestBackend(env.stack.rest_url(), files, renew_token=scontrol_token(files))
    return Cluster(backend=backend, packaging=dict(NONE_PACKAGING))


def rest_vs_ssh(env: BenchEnv, repeats: int, n: int) -> Figure:
    env.ensure_up()
    rest, ssh = _rest_cluster(env), env.cluster()

    def one(cluster: Any) -> Callable[[], float]:
        return lambda: sdk_round_trip(cluster)[0]

    def mapped(cluster: Any) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            values = cluster.map(square, range(n)).results(timeout=TIMEOUT)
            seconds = time.perf_counter() - started
            if (len(values), sum(values)) != (n, sum(i * i for i in range(n))):
                raise RuntimeError(f"a map of {n} returned {len(values)} values summing to {sum(values)}")
            return seconds

        return run

    runs = {
        "REST: one task": one(rest),
        "SSH: one task": one(ssh),
        f"REST: map ({n})": mapped(rest),
        f"SSH: map ({n})": mapped(ssh),
    }
    loads: dict[str, list[float]] = {name: [] for name in runs}
    try:
        series = interleave(
            repeats, {name: _with_load(run, loads[name]) for name, run in runs.items()}, say=say
        )
    finally:
        rest.close()
    for name in series:  # the warm-up round's loads are not beside any sample
        loads[name] = loads[name][-repeats:]
    return Figure(
        "rest_vs_ssh",
        f"RestBackend vs the SSH backend on the same stack: one trivial task and a {n}-item map",
        "s",
        series,
        ratios={
            "REST / SSH, one task": ratio(series["REST: one task"], series["SSH: one task"]),
            f"REST / SSH, map ({n})": ratio(series[f"REST: map ({n})"], series[f"SSH: map ({n})"]),
        },
        details={"n": n, "host load (1-min average) after each sample": loads},
        notes=[
            "submit to result: REST submits and polls through slurmrestd (JSON over HTTP), SSH runs sbatch "
            "and squeue over the login connection; both write the job's files and read its results over SSH",
            "interleaved per round: REST task, SSH task, REST map, SSH map; one untimed warm-up round",
        ],
    )


def _harness(command: list[str], profiles: str) -> float:
    """``slurm-dev-cluster <command>`` for the bench stack with ``profiles``; its wall time."""
    env = {**os.environ, "SLURM_SDK_PROJECT": BENCH_PROJECT, PROFILES_VAR: profiles}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "slurm_dev_cluster", *command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"slurm-dev-cluster {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def warm_with_rest(env: BenchEnv, repeats: int) -> Figure:
    """Per round, without slurmrestd then with: `down` (untimed), then a timed `up --nodes 2`. Both image
    tags are built first (the profile is an image input), so no round builds. It ends with slurmrestd up,
    as the REST figures want it."""
    env.close()  # the stack goes down and up under it
    labels = {"": "without slurmrestd", "rest": "with slurmrestd (profile rest)"}
    for profiles in labels:
        _harness(["up", "--nodes", "2"], profiles)  # builds the tag if missing; untimed

    def start(profiles: str) -> Callable[[], float]:
        def run() -> float:
            _harness(["down"], "rest")  # with the profile: slurmrestd goes too, whichever start made it
            return _harness(["up", "--nodes", "2"], profiles)

        return run

    loads: dict[str, list[float]] = {label: [] for label in labels.values()}
    series: dict[str, Series] = interleave(
        repeats,
        {label: _with_load(start(profiles), loads[label]) for profiles, label in labels.items()},
        warmup=False,
        say=say,
    )
    return Figure(
        "warm_rest",
        "Warm start with slurmrestd vs without: `slurm-dev-cluster down`, then a timed `up --nodes 2`",
        "s",
        series,
        ratios={"with / without": ratio(series[labels["rest"]], series[labels[""]])},
        details={"host load (1-min average) after each sample": loads},
        notes=[
            "images built for both (the profile is an image input); alternating, without slurmrestd first",
            "`up` ends when Slurm takes jobs and, with the profile, slurmrestd answers a token",
        ],
    )
