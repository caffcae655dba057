"""What a slurm.conf setting does to one trivial job's phases: two variants, measured interleaved (A, B, A,
B, ...) on the running bench stack, each applied with ``scontrol reconfigure`` (no image rebuild).

A variant is slurm.conf lines appended to the stack's ``faults.conf`` (the last include of every
container's slurm.conf, so they win; ``harness.faults`` writes the same file), and files it puts in place
on the compute nodes (``Epilog`` adds a script in Slurm 24.11 instead of replacing the one slurm.conf names,
so an epilog variant replaces that file). The stack's own files are put back at the end. Rounds use ``bench.fig_floor.Rounds``: the same jobs, stamps and daemon logs as the
``floor`` figure.

    python -m bench --only floor_epilog,floor_acct,floor_sched --keep
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench import slurm_log, tick
from bench.env import BenchEnv, say
from bench.fig_floor import Rounds, medians, set_log_levels
from bench.figure import Figure
from bench.stats import Series

FAULTS_CONF = "/etc/slurm/faults.conf"
#: The phases each comparison reports (names as in bench.fig_floor); a variant's effect is in these.
REPORTED = (
    "scheduling wait (queued → allocated)",
    "launch (allocated → script up)",
    "epilog (COMPLETING → epilog done)",
    "end seen by squeue (script done → not listed live)",
    "round trip, squeue loop (submitting → squeue sees end)",
    "round trip, SDK (submitting → result in hand)",
)


@dataclass(frozen=True)
class Variant:
    name: str
    lines: tuple[str, ...] = ()  # slurm.conf lines added after the stack's defaults
    node_files: tuple[tuple[str, str], ...] = ()  # (path, content) written on every compute node


#: The dev cluster's epilog, as the image has it.
EPILOG = "/etc/slurm/epilog.sh"


@dataclass(frozen=True)
class Comparison:
    figure: str
    title: str
    a: Variant
    b: Variant
    #: The setting (``scontrol show config`` name) whose value proves a variant is in force.
    check: str
    note: str


COMPARISONS = {
    "floor_epilog": Comparison(
        "floor_epilog",
        "Epilog cost: the dev cluster's epilog (kills what a job left behind) vs an empty one",
        Variant("dev epilog"),
        Variant("empty epilog", node_files=((EPILOG, "#!/bin/sh\nexit 0\n"),)),
        "Epilog",
        "squeue lists a job COMPLETING until its epilog is done, and slurmctld releases the node then",
    ),
    "floor_acct": Comparison(
        "floor_acct",
        "Accounting sampling: JobAcctGatherFrequency=task=1 (dev) vs task=30 (Slurm's default)",
        Variant("task=1 (dev)"),
        Variant("task=30 (stock)", ("JobAcctGatherFrequency=task=30",)),
        "JobAcctGatherFrequency",
        "task=1 samples each task's memory every second (OverMemoryKill enforces --mem by sampling)",
    ),
    "floor_sched": Comparison(
        "floor_sched",
        "Scheduler parameters: the dev cluster's vs Slurm's defaults (batch_sched_delay=3, bf_interval=30)",
        Variant("dev SchedulerParameters"),
        Variant(
            "stock SchedulerParameters",
            # Slurm's documented defaults, spelled out: an empty value does not parse.
            (
                "SchedulerParameters=batch_sched_delay=3,bf_interval=30,sched_min_interval=2,default_queue_depth=100",
            ),
        ),
        "SchedulerParameters",
        "no SchedulerParameters value places a batch job sooner than slurmctld's one-second tick: the "
        "dev values make every tick schedule (batch_sched_delay=0); stock waits up to 3 s between passes "
        "for batch jobs",
    ),
}


def _ends_a_line(text: str) -> str:
    """``docker exec`` output loses its last newline: put it back."""
    return text if text.endswith("\n") else text + "\n"


@contextmanager
def stack_config(env: BenchEnv, variants: tuple[Variant, ...]) -> Iterator[Callable[[Variant], None]]:
    """Yields ``apply(variant)``; puts every container's faults.conf and every node file a variant
    replaces back afterwards."""
    services, nodes = env.stack.cluster_services, env.stack.topology.node_names
    conf = {service: _ends_a_line(env.stack.exec(service, ["cat", FAULTS_CONF])) for service in services}
    paths = {path for variant in variants for path, _ in variant.node_files}
    files = {
        (node, path): _ends_a_line(env.stack.exec(node, ["cat", path])) for node in nodes for path in paths
    }

    def put(service: str, path: str, text: str) -> None:
        # Rewritten in place (not replaced): keeps the file's mode, e.g. an epilog's execute bit.
        env.stack.exec(service, ["sh", "-c", f"printf %s {shlex.quote(text)} > {shlex.quote(path)}"])

    def apply(variant: Variant) -> None:
        replaced = dict(variant.node_files)
        for (node, path), text in files.items():
            put(node, path, replaced.get(path, text))
        extra = "".join(f"{line}\n" for line in variant.lines)
        for service, text in conf.items():
            put(service, FAULTS_CONF, text + extra)
        env.stack.exec("slurmctld", ["scontrol", "reconfigure"])
        time.sleep(2.0)  # slurmd re-reads its config after slurmctld's reconfigure message

    try:
        yield apply
    finally:
        apply(Variant("the stack's own"))


def compare(env: BenchEnv, repeats: int, comparison: Comparison) -> Figure:
    shown: dict[str, str] = {}
    with stack_config(env, (comparison.a, comparison.b)) as apply, Rounds(env) as rounds:
        for index, offset in enumerate(tick.offsets(repeats)):
            for variant in (comparison.a, comparison.b):
                apply(variant)
                set_log_levels(env, **slurm_log.LOG_LEVELS)  # reconfigure went back to slurm.conf's
                if variant.name not in shown:
                    config = env.stack.exec("slurmctld", ["scontrol", "show", "config"])
                    shown[variant.name] = next(
                        (
                            line.split("=", 1)[1].strip()
                            for line in config.splitlines()
                            if line.startswith(comparison.check)
                        ),
                        "?",
                    )
                    rounds.run("raw sbatch", 0.5, label="warm-up")  # the first job after a change
                for side in Rounds.SIDES:
                    job_id = rounds.run(side, offset, label=f"{variant.name}|{side}")
                    say(f"  [{index + 1}/{repeats}] {variant.name}, {side}: job {job_id} at +{offset:.2f} s")
        measured = rounds.phases()
    series: dict[str, Series] = {}
    table: dict[str, dict[str, float]] = {}
    every_phase: dict[str, dict[str, float]] = {}
    for variant in (comparison.a, comparison.b):
        runs = measured[f"{variant.name}|raw sbatch"] + measured[f"{variant.name}|SDK"]
        sdk_runs = measured[f"{variant.name}|SDK"]
        for name in REPORTED:
            source = sdk_runs if name.startswith("round trip, SDK") else runs
            values = [run[name] for run in source if name in run]
            if values:
                series[f"{variant.name}: {name}"] = Series(values)
                table.setdefault(name, {})[variant.name] = round(Series(values).median, 3)
        every_phase[variant.name] = medians(measured[f"{variant.name}|raw sbatch"])
    return Figure(
        comparison.figure,
        comparison.title,
        "s",
        series,
        details={
            "median (s)": table,
            "every phase of the raw jobs, median (s)": every_phase,
            f"{comparison.check} as scontrol show config has it": shown,
        },
        notes=[
            comparison.note,
            "rounds alternate the variants (A, B, A, B, ...), each applied with `scontrol reconfigure`; "
            "each round runs a raw sbatch job and an SDK job at the same point of the second (bench.tick); "
            "launch, epilog and squeue phases pool both sides' jobs",
        ],
    )
