"""``python -m bench``: measure, then write bench/results/results.json and bench/figures.png, print the table
(the docs' Benchmarks page shows the same table, generated from results.json when the docs are built).

python -m bench                  # every default figure, 5 rounds each (about an hour on 2 cores)
python -m bench --quick          # smoke check: tiny sizes, 1 round, no warm-ups (~3 min)
python -m bench --only roundtrip,map
python -m bench --cold           # also the cold start: REMOVES the dev image, the Debian base image
                                 # and the build cache, then rebuilds them (minutes)
python -m bench --tiers          # also the integration tier wall time at -n 0 vs -n 2 (slow)
SLURM_SDK_COMPOSE_PROFILES=rest python -m bench --rest --only warm_rest,rest_vs_ssh   # slurmrestd figures
python -m bench --table          # no measuring: print the table and redraw the figures from results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from bench import (
    fig_checkpoint,
    fig_cluster,
    fig_faults,
    fig_floor,
    fig_floor_settings,
    fig_harness,
    fig_jobs,
    fig_limits,
    fig_packaging,
    fig_rest,
    fig_scale,
    fig_shapes,
    fig_submitit,
    report,
)
from bench.env import BENCH_PROJECT, BenchEnv, say
from bench.figure import Figure
from bench.machine import describe


@dataclass(frozen=True)
class Sizes:
    repeats: int
    map_n: int
    large_map_n: int
    many_n: int
    submitit_n: int
    warmup: bool
    rpc_jobs: int
    rpc_wait: float
    startup_runs: int
    big_map_n: int
    big_map_item: int
    result_bytes: int
    result_parts: int
    limits_map_n: int


FULL = Sizes(
    repeats=5,
    map_n=1000,
    large_map_n=10_000,
    many_n=100,
    submitit_n=100,
    warmup=True,
    rpc_jobs=1000,
    rpc_wait=60,
    startup_runs=30,
    big_map_n=10_000,
    big_map_item=100_000,
    result_bytes=200_000_000,
    result_parts=200,
    limits_map_n=500,
)
QUICK = Sizes(
    repeats=1,
    map_n=20,
    large_map_n=40,
    many_n=10,
    submitit_n=10,
    warmup=False,
    rpc_jobs=10,
    rpc_wait=10,
    startup_runs=5,
    big_map_n=30,
    big_map_item=1000,
    result_bytes=2_000_000,
    result_parts=4,
    limits_map_n=60,
)

Runner = Callable[[BenchEnv, argparse.Namespace, Sizes], Figure]

#: name -> (runner, opt-in flag or None). Order is run order: cold first (it rebuilds everything),
#: then the stack lifecycle figures, then the SDK ones on a settled stack.
FIGURES: dict[str, tuple[Runner, str | None]] = {
    "cold": (lambda env, a, s: fig_cluster.cold(env, a.cold_repeats), "cold"),
    "cold_shapes": (lambda env, a, s: fig_shapes.cold(env), "cold"),
    "warm": (lambda env, a, s: fig_shapes.warm(env, s.repeats), None),
    "warm_per_node": (lambda env, a, s: fig_shapes.warm_per_node(env, s.repeats), None),
    # Opt-in (--rest): the stack needs SLURM_SDK_COMPOSE_PROFILES=rest, and the warm one restarts it 2n times.
    "warm_rest": (lambda env, a, s: fig_rest.warm_with_rest(env, s.repeats), "rest"),
    "reuse": (lambda env, a, s: fig_cluster.reuse(env, s.repeats), None),
    "image": (lambda env, a, s: fig_cluster.image_size(env), None),
    "harness": (lambda env, a, s: fig_harness.harness_overhead(env, s.repeats), None),
    "roundtrip": (lambda env, a, s: fig_jobs.roundtrip(env, s.repeats), None),
    # Twice the rounds: each is a second or two, and the scheduling wait needs points across the second.
    "floor": (lambda env, a, s: fig_floor.floor(env, 2 * s.repeats), None),
    **{
        name: ((lambda env, a, s, c=comparison: fig_floor_settings.compare(env, s.repeats, c)), None)
        for name, comparison in fig_floor_settings.COMPARISONS.items()
    },
    "many": (lambda env, a, s: fig_jobs.many(env, s.repeats, s.many_n), None),
    "map": (lambda env, a, s: fig_jobs.map_vs_array(env, s.repeats, s.map_n), None),
    # Each round of each side is minutes: at most three, no warm-up round.
    "large_map": (
        lambda env, a, s: fig_jobs.map_vs_array(
            env, min(s.repeats, 3), s.large_map_n, name="large_map", target=1.1, warmup=False
        ),
        None,
    ),
    "rest_vs_ssh": (lambda env, a, s: fig_rest.rest_vs_ssh(env, s.repeats, s.map_n), "rest"),
    "startup": (lambda env, a, s: fig_scale.startup(env, s.startup_runs), None),
    "client_import": (lambda env, a, s: fig_scale.client_import(env, s.startup_runs), None),
    "big_map": (lambda env, a, s: fig_scale.big_map(env, s.big_map_n, s.big_map_item), None),
    "large_result": (
        lambda env, a, s: fig_scale.large_result(env, s.result_bytes, s.result_parts, min(s.repeats, 3)),
        None,
    ),
    "edit": (lambda env, a, s: fig_harness.edit_to_run(env, s.repeats), None),
    "submitit": (lambda env, a, s: fig_submitit.versus_submitit(env, s.repeats, s.submitit_n), None),
    "rpcs_1": (lambda env, a, s: fig_faults.rpcs_while_waiting(env, 1, s.rpc_wait), None),
    "rpcs_many": (lambda env, a, s: fig_faults.rpcs_while_waiting(env, s.rpc_jobs, s.rpc_wait), None),
    "rpcs_async": (lambda env, a, s: fig_faults.rpcs_while_awaiting(env, s.rpc_jobs, s.rpc_wait), None),
    "completion": (lambda env, a, s: fig_faults.completion_latency(env, s.repeats), None),
    "throttled_map": (lambda env, a, s: fig_limits.throttled_map(env, s.repeats, s.limits_map_n), None),
    "checkpoint_overhead": (lambda env, a, s: fig_checkpoint.overhead(env, s.repeats), None),
    "requeue_resume": (lambda env, a, s: fig_checkpoint.requeue_to_resume(env, s.repeats), None),
    "preemption_resume": (lambda env, a, s: fig_checkpoint.preemption_to_resume(env, s.repeats), None),
    "deps": (lambda env, a, s: fig_packaging.deps_online(env, s.repeats), None),
    "deps_airgap": (lambda env, a, s: fig_packaging.deps_airgapped(env, s.repeats), None),
    "resolvers": (lambda env, a, s: fig_packaging.resolvers(env, s.repeats), None),
    "tiers": (lambda env, a, s: fig_harness.tiers(env, a.tiers_repeats), "tiers"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 round: a smoke check (CI)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(FIGURES)}")
    parser.add_argument("--cold", action="store_true", help="include the destructive cold-start figure")
    parser.add_argument("--tiers", action="store_true", help="include the integration tier wall time")
    parser.add_argument(
        "--rest",
        action="store_true",
        help="include the slurmrestd figures (needs SLURM_SDK_COMPOSE_PROFILES=rest)",
    )
    parser.add_argument("--repeats", type=int, help="rounds per figure (default 5, --quick 1)")
    parser.add_argument("--cold-repeats", type=int, default=1, help="rounds of the cold start (default 1)")
    parser.add_argument("--tiers-repeats", type=int, default=2, help="rounds of the tier timing (default 2)")
    parser.add_argument("--keep", action="store_true", help=f"leave the {BENCH_PROJECT} stack running")
    parser.add_argument("--no-plot", action="store_true", help="do not redraw bench/figures.png")
    parser.add_argument(
        "--table",
        action="store_true",
        help="measure nothing: print the table and redraw figures.png from bench/results/results.json",
    )
    return parser.parse_args(argv)


def selected(args: argparse.Namespace) -> list[str]:
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        raise SystemExit(f"unknown figure(s) {', '.join(unknown)}; valid: {', '.join(FIGURES)}")
    names = []
    for name, (_, flag) in FIGURES.items():
        wanted = name in only if only else True
        if wanted and flag and not getattr(args, flag):
            if only:
                raise SystemExit(f"figure {name!r} needs --{flag} (see --help: it is destructive or slow)")
            continue
        if wanted:
            names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        publish(json.loads(report.RESULTS_JSON.read_text()), plot=True)
        return 0
    sizes = QUICK if args.quick else FULL
    if args.repeats:
        sizes = dataclasses.replace(sizes, repeats=args.repeats)
    names = selected(args)
    env = BenchEnv()
    machine = describe(env.stack.docker)
    say(
        f"figures: {', '.join(names)}; {sizes.repeats} round(s) each (cold {args.cold_repeats}, "
        f"tiers {args.tiers_repeats}); stack {BENCH_PROJECT}"
    )
    if not sizes.warmup:
        import bench.stats

        bench.stats.DEFAULT_WARMUP = False
    figures: dict[str, Figure] = {}
    failures: dict[str, str] = {}
    try:
        for name in names:
            runner, _ = FIGURES[name]
            say(f"== {name}")
            started, load_before = time.perf_counter(), os.getloadavg()[0]
            try:
                figures[name] = runner(env, args, sizes)
                # Other work on the host skews timings: record how busy it was.
                figures[name].details["host load (1-min average) before, after"] = [
                    round(load_before, 2),
                    round(os.getloadavg()[0], 2),
                ]
            except Exception:  # one broken figure must not cost the others
                failures[name] = traceback.format_exc()
                say(f"{name} FAILED:\n{failures[name]}")
            say(f"   ({time.perf_counter() - started:.0f} s)")
    finally:
        if not args.keep:
            say(f"stopping {BENCH_PROJECT} (pass --keep to leave it up)")
            env.down()
        env.close()
    write(args, machine, figures, sizes)
    for name, error in failures.items():
        print(f"\nfigure {name} failed:\n{error}", file=sys.stderr)
    return 1 if failures else 0


def write(args: argparse.Namespace, machine: dict, figures: dict[str, Figure], sizes: Sizes) -> None:
    settings = {"quick": args.quick, **vars(sizes)}
    path = report.QUICK_JSON if args.quick else report.RESULTS_JSON
    results = report.merge(
        path, machine, {name: fig.to_json() for name, fig in figures.items()}, settings, list(FIGURES)
    )
    say(f"results: {path}")
    if results["figures"]:
        publish(results, plot=not (args.quick or args.no_plot))


def publish(results: dict, *, plot: bool) -> None:
    """Print the table of every figure in ``results`` (the docs build renders the same table from
    results.json) and, if ``plot``, redraw bench/figures.png from the same data."""
    print("\n" + report.table(results) + "\n")
    if not plot:
        say("bench/figures.png left alone (--quick / --no-plot)")
        return
    report.plot(results)
    say(f"plot: {report.FIGURES_PNG}")
    say("docs/benchmarks.md shows this table at the next docs build (mkdocs build)")
