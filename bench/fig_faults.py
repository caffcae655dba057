"""What waiting costs the Slurm daemons (RPCs from the job user: slurmctld's from sdiag, slurmdbd's from
`sacctmgr show stats`) and how soon a wait sees a job's end, on the dev defaults and on Slurm's production
defaults (switched with slurm_dev_cluster.faults)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from bench.env import BenchEnv, say
from bench.figure import Figure, Target
from bench.stats import Series, interleave
from bench.tasks import nap
from slurm_dev_cluster.faults import Faults
from slurm_dev_cluster.stack import SSH_USER

RPC_TARGET = 40
#: The job user's line of the "Remote Procedure Call statistics by user" section, as both sdiag and
#: `sacctmgr show stats` print it: "sdk (1000) count:46 ...".
USER_RPCS = re.compile(rf"^\s*{SSH_USER}\s*\(\s*\d+\)\s*count:(\d+)", re.MULTILINE)
#: slurmctld's `scontrol show config` line that says whether slurmdbd keeps accounting.
ACCOUNTING_STORAGE = re.compile(r"^AccountingStorageType\s*=\s*(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class RpcCounter:
    """One daemon's per-user RPC counters, reset and read as root on the slurmctld container (Slurm 24.11:
    sdiag for slurmctld; `sacctmgr show stats` / `clear stats` for slurmdbd, an admin's commands)."""

    daemon: str
    reset_command: tuple[str, ...]
    report_command: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.daemon} ({' '.join(self.report_command)})"

    def reset(self, env: BenchEnv) -> None:
        env.stack.exec("slurmctld", list(self.reset_command))

    def user_rpcs(self, env: BenchEnv) -> int:
        found = USER_RPCS.search(env.stack.exec("slurmctld", list(self.report_command)))
        return int(found[1]) if found else 0  # a user without RPCs since the reset is not listed


SLURMCTLD = RpcCounter("slurmctld", ("sdiag", "--reset"), ("sdiag",))
SLURMDBD = RpcCounter("slurmdbd", ("sacctmgr", "-i", "clear", "stats"), ("sacctmgr", "show", "stats"))


def rpc_counters(env: BenchEnv) -> tuple[RpcCounter, ...]:
    """The daemons the SDK's waits talk to: slurmctld (squeue), and slurmdbd (sacct) when the cluster keeps
    accounting there (the dev cluster's default; ``SLURM_SDK_ACCOUNTING=0`` leaves it out)."""
    found = ACCOUNTING_STORAGE.search(env.stack.exec("slurmctld", ["scontrol", "show", "config"]))
    with_slurmdbd = bool(found) and found[1] == "accounting_storage/slurmdbd"
    return (SLURMCTLD, SLURMDBD) if with_slurmdbd else (SLURMCTLD,)


def rpcs_while_waiting(env: BenchEnv, n_jobs: int, wait: float) -> Figure:
    """Submit ``n_jobs`` tasks that outlast the wait, reset sdiag's counters (as root), wait ``wait`` s (60 in
    a full run) on all of them through the SDK (one Cluster, default polling), read the job user's RPC count."""
    from slurm.waiting import wait_all

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
            "the per-user RPC counters are reset as root after the submissions, then `wait_all(jobs, "
            "timeout=60)` ends with JobTimeoutError and the job user's RPC counts are read; dev defaults. "
            "Jobs are submitted one by one (not an array).",
            "before the shared watcher the SDK ran one squeue a second: about 210 RPCs for one job",
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
            "one map of nap(900) tasks, the per-user RPC counters reset as root, then `asyncio.gather` of "
            "one `job.result_async(timeout=60)` per task on one event loop; the awaits end with "
            "JobTimeoutError and the job user's RPC counts are read (dev defaults)"
        ],
    )


def _rpcs_figure(
    env: BenchEnv, jobs: list, wait: float, wait_on_all, *, key: str, title: str, notes: list[str]
) -> Figure:
    """Reset the daemons' counters, run ``wait_on_all`` (it must time out after ``wait`` s), read the job
    user's RPC count at each daemon the SDK talks to; the target judges their sum."""
    from slurm.errors import JobTimeoutError

    counters = rpc_counters(env)
    try:
        for counter in counters:
            counter.reset(env)
        started = time.perf_counter()
        try:
            wait_on_all()
            raise RuntimeError("the jobs finished within the wait: the count would not cover a full 60 s")
        except JobTimeoutError:
            pass
        waited = time.perf_counter() - started
        counts = {counter.label: counter.user_rpcs(env) for counter in counters}
    finally:
        env.run(f"scancel -u {SSH_USER}")
    daemons = " + ".join(counter.daemon for counter in counters)
    total = sum(counts.values())
    say(f"  {total} RPCs from {SSH_USER} ({counts}) in {waited:.0f} s while {title}")
    label = (
        f"RPCs while {'awaiting' if key == 'rpcs_async' else 'waiting'} {wait:.0f} s on {len(jobs)} job(s)"
        f" ({daemons})"
    )
    series = {label: Series([float(total)])} | {name: Series([float(n)]) for name, n in counts.items()}
    return Figure(
        key,
        f"{daemons} RPCs from the job user while {title}",
        "RPCs",
        series,
        target=Target(label, "<=", RPC_TARGET, f"≤ {RPC_TARGET}"),
        details={"jobs": len(jobs), "waited s": round(waited, 1)},
        notes=[*notes, _counted(counters)],
    )


def _counted(counters: tuple[RpcCounter, ...]) -> str:
    """Which daemons were counted, and why those."""
    if SLURMDBD in counters:
        return (
            "accounting on (the default): the SDK's watcher asks `sacct` (slurmdbd answers; counted from "
            "`sacctmgr show stats`, reset with `sacctmgr clear stats`) and `squeue` (slurmctld; counted from "
            "sdiag, reset with `sdiag --reset`), in one call per query: on every query about jobs sacct "
            "lacks or says were requeued, and at most once per 15 s (CONFIRM_LIVE_EVERY) about jobs it says "
            "pend or run (a lagging slurmdbd can say PENDING for a running job, RUNNING for an ended one): "
            "about 3 squeue in the first minute (at ~1, 21, 49 s) instead of 8; the target judges the sum. "
            "Result files are listed over SSH: no RPC"
        )
    return (
        "no accounting on this cluster: the SDK asks squeue (slurmctld; sdiag's per-user count, reset with "
        "`sdiag --reset`). Result files are listed over SSH: no RPC"
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
            "kill_invalid_depend, MinJobAge=300, no accounting (slurm_dev_cluster.faults)"
        ],
    )
