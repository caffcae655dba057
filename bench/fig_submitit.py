"""The SDK vs submitit, both driven from the login node, on the same cluster and the same work."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

from bench.env import REPO_MOUNT, RESULTS_DIR, BenchEnv, say
from bench.figure import Figure
from bench.stats import interleave, ratio

SCRATCH = "/home/sdk/.bench/login"
SITE = "/home/sdk/.bench/site"  # submitit installed with pip --target (the nodes share /home)
WHEELS = RESULTS_DIR / "wheels"
# submitit needs cloudpickle (in the image) and typing_extensions (shipped along to be safe).
PACKAGES = ("submitit", "typing_extensions")


def _download_wheels() -> list:
    """On the host, which can reach PyPI; the containers cannot."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        if not list(WHEELS.glob(f"{package}-*.whl")):
            say(f"  pip download {package}")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "-d",
                    str(WHEELS),
                    package,
                ],
                check=True,
            )
    return sorted(WHEELS.glob("*.whl"))


def install_submitit(env: BenchEnv) -> str:
    """Make submitit importable on the login and compute nodes; returns its version."""
    check = f"PYTHONPATH={SITE} python3 -c 'import submitit; print(submitit.__version__)'"
    found = env.transport.run(check, check=False)
    if found.returncode == 0:
        return found.stdout.strip()
    remote = []
    for wheel in _download_wheels():
        target = f"/home/sdk/.bench/wheels/{wheel.name}"
        env.transport.put(str(wheel), target)
        remote.append(target)
    env.run(
        f"python3 -m pip install --quiet --disable-pip-version-check --no-index --no-deps "
        f"--target {SITE} {' '.join(map(shlex.quote, remote))}"
    )
    return env.run(check).strip()


def _on_login(env: BenchEnv, side: str, workload: str, n: int) -> float:
    command = (
        f"mkdir -p {SCRATCH} && cd {SCRATCH} && PYTHONPATH={SITE}:{REPO_MOUNT} "
        f"python3 {REPO_MOUNT}/bench/login_side.py {side} {workload} {n} {SCRATCH} 2>>{SCRATCH}/{side}.err"
    )
    report = json.loads(env.run(command, timeout=1900).strip().splitlines()[-1])
    expected = (1, 49) if workload == "one" else (n, sum(i * i for i in range(n)))
    if (report["count"], report["sum"]) != expected:
        raise RuntimeError(f"{side} {workload}: wrong results {report}, expected count/sum {expected}")
    return float(report["seconds"])


def versus_submitit(env: BenchEnv, repeats: int, n: int) -> Figure:
    version = install_submitit(env)
    say(f"  submitit {version} on the login node")
    sides = {"sdk": "SDK", "submitit-polled": "submitit polled", "submitit": "submitit result()"}
    runs = {}
    for workload, label in (("one", "1 task"), ("map", f"map of {n}")):
        for side, name in sides.items():
            runs[f"{name}: {label}"] = lambda side=side, workload=workload: _on_login(env, side, workload, n)
    series = interleave(repeats, runs, say=say)
    return Figure(
        "submitit",
        f"SDK vs submitit {version}, both from the login node (submitit at its best: polled on the SDK's "
        "cadence)",
        "s",
        series,
        ratios={
            "SDK / submitit polled (1 task)": ratio(series["SDK: 1 task"], series["submitit polled: 1 task"]),
            f"SDK / submitit polled (map of {n})": ratio(
                series[f"SDK: map of {n}"], series[f"submitit polled: map of {n}"]
            ),
        },
        details={"submitit": version, "n": n},
        notes=[
            "submitit result() sleeps 1 s between checks (Job.wait), so a 1-task figure mostly measures "
            "that sleep; the ratios use submitit polled: job.done() on the SDK's cadence (50 ms, x1.25, up "
            "to 1 s), then result()",
            "each run is a script on the login node timed from creating the Cluster/executor to holding "
            "every result; SDK: SlurmBackend(HostTransport()), packaging none; submitit: SlurmExecutor, "
            "map_array; each run is a fresh process, so the SDK's time includes its first-use costs: on the "
            "login node Cluster() alone took 0.30 s (cProfile, 2026-11-26 05:33 UTC: importing pydantic and "
            "building the options models), then cloudpickle's import and the job root's set-up; that is most "
            "of its 1-task gap",
        ],
    )
