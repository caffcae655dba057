"""Start-up by cluster shape: warm and cold start for 2, 4 and 8 compute nodes, with and without accounting.

"Ready" is what ``harness up`` (``Stack.ensure_up``) returns on: containers started (`compose up -d`), then,
checked over SSH (``Stack.wait_until_ready``), slurmctld answers and has registered with slurmdbd, every node
is idle, and a tiny job run with srun over SSH has completed. Each round starts every shape once, in turn (interleaved), from a
stack that is down with its images built.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.env import BenchEnv, say
from bench.figure import Figure, Target
from bench.stats import Series, timed
from slurm_dev_cluster import docker_deadline
from slurm_dev_cluster.stack import ACCOUNTING_VAR
from slurm_dev_cluster.topology import Topology

NODE_COUNTS = (2, 4, 8)
WARM_TARGET_SECONDS = 3.0  # target: the default stack (2 nodes, accounting), warm
PER_NODE_TARGET_SECONDS = 0.5  # target: growth per extra node
READY = (
    "ready = containers started (`compose up -d`), then over SSH: slurmctld answers and is registered with "
    "slurmdbd, every node idle, a tiny srun job completed (harness `wait_until_ready`)"
)

LOAD_NOTE = (
    "the targets are meant for a quiet host: with other stacks busy (the row's load, on 2 cores) a start "
    "mostly waits for CPU, and the spread between rounds can exceed the differences between shapes"
)


@dataclass(frozen=True)
class Shape:
    nodes: int
    accounting: bool

    @property
    def label(self) -> str:
        return f"{self.nodes} nodes, {'accounting' if self.accounting else 'no accounting'}"


SHAPES = tuple(Shape(n, accounting) for accounting in (True, False) for n in NODE_COUNTS)
DEFAULT_SHAPE = Shape(2, True)


@contextmanager
def _accounting(on: bool) -> Iterator[None]:
    """SLURM_SDK_ACCOUNTING for the span (compose and the harness both read it from the environment)."""
    before = os.environ.get(ACCOUNTING_VAR)
    os.environ[ACCOUNTING_VAR] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ACCOUNTING_VAR, None)
        else:
            os.environ[ACCOUNTING_VAR] = before


def start(env: BenchEnv, shape: Shape) -> tuple[float, dict[str, float]]:
    """Stack down, then ``ensure_up`` of ``shape`` timed, as a new `harness up` process would run it."""
    env.down()
    with _accounting(shape.accounting):
        env.use_topology(Topology(nodes=shape.nodes))
        seconds = timed(env.ensure_up)
    return seconds, dict(env.stack.phases)


def back_to_default(env: BenchEnv) -> None:
    """The later figures run on the default stack."""
    env.down()
    env.use_topology(Topology())


@dataclass
class WarmRuns:
    totals: dict[Shape, Series]
    phases: dict[Shape, list[dict[str, float]]]

    def per_node(self, accounting: bool) -> Series:
        """Per round: the least-squares slope of start time over node count (s per extra node)."""
        shapes = [Shape(n, accounting) for n in NODE_COUNTS]
        rounds = zip(*(self.totals[s].samples for s in shapes), strict=True)
        return Series([statistics.linear_regression(NODE_COUNTS, seconds).slope for seconds in rounds])


_measured: dict[int, WarmRuns] = {}  # per BenchEnv: `warm` and `warm_per_node` share one set of runs


def warm_runs(env: BenchEnv, repeats: int) -> WarmRuns:
    if id(env) in _measured:
        return _measured[id(env)]
    env.ensure_up()  # images built and current (both of them: accounting is the default)
    runs = WarmRuns({s: Series() for s in SHAPES}, {s: [] for s in SHAPES})
    try:
        for round_ in range(repeats):
            for shape in SHAPES:
                seconds, phases = start(env, shape)
                runs.totals[shape].samples.append(seconds)
                runs.phases[shape].append(phases)
                say(f"  [{round_ + 1}/{repeats}] warm start, {shape.label}: {seconds:.2f} s {_fmt(phases)}")
    finally:
        back_to_default(env)
    _measured[id(env)] = runs
    return runs


def warm(env: BenchEnv, repeats: int) -> Figure:
    runs = warm_runs(env, repeats)
    return Figure(
        "warm",
        f"Warm start by shape: images built, stack down -> ready ({READY}; harness ensure_up)",
        "s",
        {shape.label: runs.totals[shape] for shape in SHAPES},
        target=Target(
            DEFAULT_SHAPE.label, "<=", WARM_TARGET_SECONDS, f"≤ {WARM_TARGET_SECONDS:g} s (default stack)"
        ),
        details={
            "phases (median s)": {
                shape.label: _median_phases(runs.phases[shape]) for shape in SHAPES if runs.phases[shape]
            }
        },
        notes=[
            "ensure_up = image check + `compose up -d` + wait until ready (key copy, SSH login, "
            "Slurm asked every 0.1 s, a tiny srun job); each round starts every shape in turn from a stack "
            "that is down (interleaved)",
            "the default stack is 2 nodes with accounting (slurmdbd + MariaDB)",
            LOAD_NOTE,
        ],
    )


def warm_per_node(env: BenchEnv, repeats: int) -> Figure:
    runs = warm_runs(env, repeats)
    series = {
        "accounting: s per extra node": runs.per_node(True),
        "no accounting: s per extra node": runs.per_node(False),
    }
    return Figure(
        "warm_per_node",
        "Warm start growth per extra compute node (slope over 2, 4 and 8 nodes, per round)",
        "s",
        series,
        target=Target(
            "accounting: s per extra node",
            "<",
            PER_NODE_TARGET_SECONDS,
            f"< {PER_NODE_TARGET_SECONDS:g} s per node",
        ),
        notes=[
            "from the same runs as `warm`: per round, the least-squares slope of ensure_up's time over the "
            "node count; replicas start in parallel, so the slope is what each extra container costs "
            "dockerd and the healthchecks on this host",
            LOAD_NOTE,
        ],
    )


def cold(env: BenchEnv) -> Figure:
    """One image build without cache, then the first start of each shape on the fresh images."""
    env.ensure_up()  # wheelhouse current, base image present
    env.down()
    build = Series([timed(lambda: _build_without_cache(env))])
    say(f"  images built without cache in {build.samples[0]:.1f} s")
    totals: dict[str, Series] = {}
    try:
        for shape in SHAPES:
            seconds, phases = start(env, shape)
            totals[shape.label] = Series([build.samples[0] + seconds])
            say(f"  cold start, {shape.label}: build + {seconds:.2f} s {_fmt(phases)}")
    finally:
        back_to_default(env)
    return Figure(
        "cold_shapes",
        "Cold start by shape: both images built without cache (`compose build --no-cache`, base image "
        f"present; one build, shared) + the shape's first start on them ({READY})",
        "s",
        {"image build (both images)": build, **totals},
        notes=[
            "the build does not depend on the shape, so it runs once and is added to each shape's start "
            "(the first shape's start also meets the coldest page cache); apt packages come from the Debian "
            "mirror through this host's proxy",
            "the base image itself (`bootstrap-host.sh`: a pull, or debootstrap where no registry is "
            "reachable) is the `cold` figure's, which removes images other stacks share: not run here",
        ],
    )


def _build_without_cache(env: BenchEnv) -> None:
    env.stack.refresh_wheelhouse()
    with _accounting(True):  # both images: the base one and slurmdbd's
        with env.stack._bounded(docker_deadline.BUILD_SECONDS, "docker compose build --no-cache") as docker:
            for _ in docker.compose.build(cache=False, stream_logs=True):
                pass


def _median_phases(phases: list[dict[str, float]]) -> dict[str, float]:
    names = dict.fromkeys(name for p in phases for name in p)
    return {name: round(statistics.median(p.get(name, 0.0) for p in phases), 3) for name in names}


def _fmt(phases: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()) + ")"
