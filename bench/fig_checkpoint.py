"""Checkpoint and requeue: what the machinery costs a job that never requeues, and how long a preempted
job takes from the requeue to its resumed run on the dev cluster (cred_expire=10 in the dev defaults)."""

from __future__ import annotations

import time

from bench.env import BenchEnv, say, unique
from bench.figure import Figure
from bench.stats import interleave
from bench.tasks import save_once, stamp_runs
from slurm import Checkpointing, task
from slurm_dev_cluster.faults import Faults

TIMEOUT = 300


def overhead(env: BenchEnv, repeats: int) -> Figure:
    cluster = env.cluster()
    variants = {
        "checkpoint=True": task(time=5, checkpoint=True)(save_once),
        "no checkpoint": task(time=5)(save_once),
    }

    def once(name: str) -> float:
        started = time.perf_counter()
        value = cluster.submit(variants[name], 7).result(timeout=TIMEOUT)
        seconds = time.perf_counter() - started
        if value != 7:
            raise RuntimeError(f"{name}: got {value!r}, expected 7")
        return seconds

    series = interleave(repeats, {name: (lambda name=name: once(name)) for name in variants}, say=say)
    return Figure(
        "checkpoint_overhead",
        "Round trip of a job that never requeues, with and without checkpointing",
        "s",
        series,
        notes=[
            "both run the same task (load, save once, return) over SSH; checkpoint=True adds "
            "--signal/--open-mode, the runner's signal handlers and a pickle written to the job dir"
        ],
    )


def requeue_to_resume(env: BenchEnv, repeats: int) -> Figure:
    cluster, faults = env.cluster(), Faults(env.stack)
    resumable = task(time=5, checkpoint=Checkpointing(max_requeues=0))(stamp_runs)

    def once() -> float:
        log = f"/home/sdk/{unique('bench-requeue')}.log"
        job = cluster.submit(resumable, 6, log)
        while not cluster.backend.transport.exists(log):
            time.sleep(0.2)
        time.sleep(1.0)  # a saved step or two
        requeued_at = time.time()
        faults.preempt(job.job_id)
        if job.result(timeout=TIMEOUT) != 6:
            raise RuntimeError("the resumed job did not finish its steps")
        stamps = [float(line) for line in cluster.backend.transport.read_bytes(log).decode().split()]
        env.run(f"rm -f {log}")
        if len(stamps) != 2:
            raise RuntimeError(f"expected 2 runs, saw {len(stamps)}")
        return stamps[1] - requeued_at

    series = interleave(repeats, {"requeue -> resumed run": once}, say=say)
    return Figure(
        "requeue_resume",
        "Time from a requeue (preemption: scontrol requeue) to the resumed run, dev cluster",
        "s",
        series,
        notes=[
            "the job's runner stops at its next save (0.5 s steps) after SIGTERM; Slurm holds a "
            "requeued job for cred_expire (10 s on the dev defaults, 120 s stock) before it starts "
            "again; measured to the first line of the rerun (host and nodes share one clock)"
        ],
    )


NODE_CPUS = 4  # images/entrypoint.sh NODE_CPUS: the low task takes them all, so its node is full


def preemption_to_resume(env: BenchEnv, repeats: int) -> Figure:
    """Seconds from a QOS ``high`` job's submit to the resumed run of the QOS ``low`` checkpointing task it
    preempted (real preemption, not ``scontrol requeue``), under the dev and the production defaults."""
    cluster, faults = env.cluster(), Faults(env.stack)
    preemptible = task(
        time=5, cpus=NODE_CPUS, checkpoint=Checkpointing(max_requeues=0), sbatch={"qos": "low"}
    )(stamp_runs)

    def once(defaults: str) -> float:
        faults.slurm_defaults(defaults)  # a reconfigure, outside the measured span
        log = f"/home/sdk/{unique('bench-preempt')}.log"
        job = cluster.submit(preemptible, 40, log)
        while not cluster.backend.transport.exists(log):
            time.sleep(0.2)
        node = env.run(f"squeue -h -j {job.job_id} -o %N").strip()
        submitted_at = time.time()
        env.run(f"sbatch --parsable --qos=high -w {node} -n1 --time=1 -o /dev/null --wrap 'sleep 1'")
        if job.result(timeout=TIMEOUT) != 40:
            raise RuntimeError("the resumed job did not finish its steps")
        stamps = [float(line) for line in cluster.backend.transport.read_bytes(log).decode().split()]
        env.run(f"rm -f {log}")
        if len(stamps) != 2:
            raise RuntimeError(f"expected 2 runs (one preemption), saw {len(stamps)}")
        return stamps[1] - submitted_at

    try:
        series = interleave(
            repeats,
            {"dev defaults": lambda: once("dev"), "production defaults": lambda: once("production")},
            warmup=False,
            say=say,
        )
    finally:
        faults.slurm_defaults("dev")
    return Figure(
        "preemption_resume",
        "From a high job's submit to the resumed run of the low task it preempted",
        "s",
        series,
        notes=[
            "a checkpointing task in QOS low fills a node; a 1-CPU job in QOS high is submitted to that node. "
            "Slurm sends the task USR2 (PreemptParameters=send_user_signal; GraceTime=30 on QOS low), the "
            "runner saves at its next 0.5 s step and ends the run, Slurm requeues it and holds it for "
            "cred_expire (10 s dev, 120 s production) before it runs again; measured to the rerun's first "
            "line (host and nodes share one clock)"
        ],
    )
