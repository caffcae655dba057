"""What waiting costs slurmctld (RPCs from the job user, read from sdiag) and how soon a wait sees a job's end,
on the dev defaults and on Slurm's production defaults (switched with harness.faults)."""

from __future__ import annotations

import re
import time

from bench.env import BenchEnv, say
from bench.figure import Figure, Target
from bench.stats import Series, interleave
from bench.tasks import nap
from harness.faults import Faults
from harness.stack import SSH_USER

RPC_TARGET = 40
#: sdiag's "Remote Procedure Call statistics by user" line of the job user: "sdk (1000) count:46 ...".
USER_RPCS = re.compile(rf"^\s*{SSH_USER}\s*\(\s*\d+\)\s*count:(\d+)", re.MULTILINE)


def user_rpcs(env: BenchEnv) -> int:
    report = env.stack.exec("slurmctld", ["sdiag"])
    found = USER_RPCS.search(report)
    return int(found[1]) if found else 0  # a user without RPCs since the reset is not listed


def rpcs_while_waiting(env: BenchEnv, n_jobs: int, wait: float) -> Figure:
    """Submit ``n_jobs`` tasks that outlast the wait, reset sdiag's counters (as root), wait ``wait`` s (60 in
    a full run) on all of them through the SDK (one Cluster, default polling), read the job user's RPC count."""
    from slurm.job import wait_all

    cluster = env.cluster()
    say(f"  submitting {n_jobs} job(s) that sleep longer than the wait")
    jobs = [cluster.submit(nap, 900) for _ in range(n_jobs)]
    return _rpcs_figure(
        env,
        jobs,
        wait,
        lambda: wait_all(jobs, timeout=wait),
        key="rpcs_1" if n_jobs == 1 else "rpcs_many",
        title=f"the SDK waits {wait:.0f} s on {n_jobs} job{'s' if n_jobs > 1 else ''}",
        notes=[
            "`sdiag --reset` as root after the submissions, then `wait_all(jobs, timeout=60)` ends with "
            "JobTimeoutError and sdiag's per-user RPC count of the job user is read; dev defaults, no "
            "accounting (the SDK asks squeue). Jobs are submitted one by one (not an array).",
            "before issue 9 the SDK ran one squeue a second: about 210 RPCs for one job",
        ],
    )


def rpcs_while_awaiting(env: BenchEnv, n_jobs: int, wait: float) -> Figure:
    """Like ``rpcs_while_waiting``, with one ``await job.result_async(timeout=wait)`` per job, all gathered on
    one event loop (the jobs are one map: an array job, submitted in one sbatch)."""
    import asyncio

    cluster = env.cluster()
    say(f"  submitting a map of {n_jobs} task(s) that sleep longer than the wait")
    jobs = list(cluster.map(nap, [900] * n_jobs))

    async def await_all() -> None:
        await asyncio.gather(*(job.result_async(timeout=wait) for job in jobs))

    return _rpcs_figure(
        env,
        jobs,
        wait,
        lambda: asyncio.run(await_all()),
        key="rpcs_async",
        title=f"asyncio awaits {n_jobs} jobs for {wait:.0f} s",
        notes=[
            "one map of nap(900) tasks, `sdiag --reset` as root, then `asyncio.gather` of one "
            "`job.result_async(timeout=60)` per task on one event loop; the awaits end with "
            "JobTimeoutError and the job user's RPC count is read (dev defaults, no accounting)"
        ],
    )


def _rpcs_figure(
    env: BenchEnv, jobs: list, wait: float, wait_on_all, *, key: str, title: str, notes: list[str]
) -> Figure:
    """Reset sdiag, run ``wait_on_all`` (it must time out after ``wait`` s), read the job user's RPC count."""
    from slurm.errors import JobTimeoutError

    try:
        env.stack.exec("slurmctld", ["sdiag", "--reset"])
        started = time.perf_counter()
        try:
            wait_on_all()
            raise RuntimeError("the jobs finished within the wait: the count would not cover a full 60 s")
        except JobTimeoutError:
            pass
        waited = time.perf_counter() - started
        count = user_rpcs(env)
    finally:
        env.run(f"scancel -u {SSH_USER}")
    say(f"  {count} RPCs from {SSH_USER} in {waited:.0f} s while {title}")
    label = (
        f"RPCs while {'awaiting' if key == 'rpcs_async' else 'waiting'} {wait:.0f} s on {len(jobs)} job(s)"
    )
    return Figure(
        key,
        f"slurmctld RPCs from the job user while {title} (sdiag)",
        "RPCs",
        {label: Series([float(count)])},
        target=Target(label, "<=", RPC_TARGET, f"≤ {RPC_TARGET}"),
        details={"jobs": len(jobs), "waited s": round(waited, 1)},
        notes=notes,
    )


def completion_latency(env: BenchEnv, repeats: int) -> Figure:
    """Seconds from the task's last instruction to ``result()`` returning, per Slurm defaults."""
    cluster = env.cluster()
    faults = Faults(env.stack)

    def once(mode: str) -> float:
        faults.slurm_defaults(mode)  # a no-op when already there, outside the measured span
        ended_at = cluster.submit(nap, 2).result(timeout=300)
        return time.time() - ended_at

    try:
        series = interleave(
            repeats,
            {"dev defaults": lambda: once("dev"), "production defaults": lambda: once("production")},
            say=say,
        )
    finally:
        faults.reset()
    return Figure(
        "completion",
        "Time from a job's end to result() returning, dev vs production Slurm defaults",
        "s",
        series,
        notes=[
            "the task sleeps 2 s and returns time.time(); the figure is the host's time.time() when result() "
            "returned minus that (containers share the host's clock). Production defaults: no "
            "kill_invalid_depend, MinJobAge=300, no accounting (harness.faults)"
        ],
    )
