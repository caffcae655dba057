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
