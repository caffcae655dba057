"""A user's project with dependencies (tests/sample_project: humanize + msgpack) through `wheel` and `sync`.

Cold: the first submission ever: a new cache root on the cluster AND an empty packaging cache on this host
(its own XDG_CACHE_HOME, so uv's and pip's caches are empty too): build, resolve, fetch, venv, job.
Warm: the next submission from a new Cluster (a new process would do the same): probe, key, one health
check, job. Both against the `none` round trip on the same SSH connection.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.env import REPO_ROOT, BenchEnv, say
from bench.figure import Figure, Target
from bench.stats import Series, interleave, ratio
from bench.tasks import square

SAMPLE = REPO_ROOT / "tests/sample_project"
TIMEOUT = 900.0
CACHE_PARENT = "/home/sdk/.bench/envs"
KINDS = ("wheel", "sync")


def _sample_app() -> Any:
    if str(SAMPLE / "src") not in sys.path:
        sys.path.insert(0, str(SAMPLE / "src"))
    import sample_app

    return sample_app


def _packaging(kind: str, cache_root: str) -> dict[str, Any]:
    return {
        "type": kind,
        "project_dir" if kind == "wheel" else "source_dir": str(SAMPLE),
        "cache_root": cache_root,
    }


@contextmanager
def _host_cache(fresh: bool) -> Iterator[None]:
    """A fresh, empty XDG_CACHE_HOME for the span (cold), or the one in force (warm)."""
    if not fresh:
        yield
        return
    previous = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory(prefix="bench-host-cache-") as tmp:
        os.environ["XDG_CACHE_HOME"] = tmp
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = previous


def _submit(
    env: BenchEnv, kind: str, cache_root: str, *, cold: bool, fresh_host: bool | None = None
) -> float:
    """One submission and its result; ``cold``: the env must be built (else reused). The host cache is
    fresh when cold unless ``fresh_host`` says otherwise (the untimed set-up of the warm series)."""
    app = _sample_app()
    with _host_cache(fresh=cold if fresh_host is None else fresh_host):
        started = time.perf_counter()
        cluster = env.cluster(_packaging(kind, cache_root))
        seen = cluster.submit(app.report, 1234567).result(timeout=TIMEOUT)
        seconds = time.perf_counter() - started
    built = cluster.packaging.last_environment.built
    if seen.get("roundtrip") != "1234567" or not seen["msgpack"].startswith(cache_root) or built != cold:
        raise RuntimeError(
            f"{kind} ({'cold' if cold else 'warm'}): wrong result or env reuse: {seen}, built={built}"
        )
    return seconds


def _none_roundtrip(env: BenchEnv) -> Callable[[], float]:
    cluster = env.cluster()

    def run() -> float:
        started = time.perf_counter()
        value = cluster.submit(square, 7).result(timeout=TIMEOUT)
        if value != 49:
            raise RuntimeError(f"none round trip returned {value!r}")
        return time.perf_counter() - started

    return run


def _fresh_root(tag: str) -> str:
    return f"{CACHE_PARENT}/{tag}-{uuid.uuid4().hex[:8]}"


def _worst(series: dict[str, Series], names: list[str]) -> Series:
    """Per round, the slower of several interleaved series."""
    return Series([max(values) for values in zip(*(series[n].samples for n in names), strict=True)])


def _cold_and_warm(env: BenchEnv, repeats: int, tag: str) -> dict[str, Series]:
    env.run(f"rm -rf {CACHE_PARENT} && mkdir -p {CACHE_PARENT}")
    warm_roots = {kind: _fresh_root(f"{tag}-warm-{kind}") for kind in KINDS}
    for kind in KINDS:  # untimed: the warm series need an env to reuse
        _submit(env, kind, warm_roots[kind], cold=True, fresh_host=False)
    runs: dict[str, Callable[[], float]] = {"none round trip": _none_roundtrip(env)}
    for kind in KINDS:
        runs[f"{kind} warm"] = lambda kind=kind: _submit(env, kind, warm_roots[kind], cold=False)
        runs[f"{kind} cold"] = lambda kind=kind: _submit(
            env, kind, _fresh_root(f"{tag}-cold-{kind}"), cold=True
        )
    try:
        return interleave(repeats, runs, warmup=False, say=say)
    finally:
        env.run(f"rm -rf {CACHE_PARENT}")


NOTES = [
    "sample project: its own package + humanize (pure Python) + msgpack (compiled, cp3xx manylinux); "
    "the SDK's wheel and its two dependencies are shipped too (include_sdk)",
    "cold: new cache root on the cluster and an empty host cache (wheel build, resolution and downloads "
    "included); warm: a new Cluster submitting again (interpreter probe, env key, health check)",
]


def deps_online(env: BenchEnv, repeats: int) -> Figure:
    series = _cold_and_warm(env, repeats, "online")
    none = series["none round trip"]
    ratios = {f"{kind} warm / none": ratio(series[f"{kind} warm"], none) for kind in KINDS}
    ratios["slower warm / none"] = ratio(_worst(series, [f"{k} warm" for k in KINDS]), none)
    return Figure(
        "deps",
        "Project with 2 dependencies, nodes reach the index: cold and warm env, wheel and sync",
        "s",
        series,
        ratios=ratios,
        target=Target("slower warm / none", "<=", 1.2, "warm ≤ 1.2× none"),
        notes=[*NOTES, "install_from: auto (the nodes reach PyPI through the site CA)"],
        details={"slower cold (s)": _worst(series, [f"{k} cold" for k in KINDS]).to_json()},
    )


def deps_airgapped(env: BenchEnv, repeats: int) -> Figure:
    from slurm_dev_cluster.airgap import egress_blocked

    env.ensure_up()
    with egress_blocked(env.stack):
        series = _cold_and_warm(env, repeats, "airgap")
    cold = _worst(series, [f"{k} cold" for k in KINDS])
    return Figure(
        "deps_airgap",
        "Project with 2 dependencies, air-gapped nodes: cold and warm env, wheel and sync",
        "s",
        {**series, "slower cold": cold},
        ratios={
            f"{kind} warm / none": ratio(series[f"{kind} warm"], series["none round trip"]) for kind in KINDS
        },
        target=Target("slower cold", "<=", 30.0, "cold ≤ 30 s"),
        notes=[
            *NOTES,
            "slurm_dev_cluster.airgap blocks the containers' egress; install_from: auto finds no "
            "index and uploads a wheelhouse resolved and downloaded on this host",
        ],
    )


def resolvers(env: BenchEnv, repeats: int) -> Figure:
    """Host side only: resolve the sample project's dependencies for the bench cluster's Python."""
    from slurm.packaging.interpreter import probe_interpreter
    from slurm.packaging.requirements import project_dependencies
    from slurm.packaging.resolver import _RUNNERS
    from slurm.packaging.wheelhouse import fetch_wheels

    node = probe_interpreter(env.transport, "python3")
    requirements = [r for r in project_dependencies(SAMPLE) if not r.startswith("slurm-sdk")]
    answers: dict[str, list[str]] = {}

    def run(tool: str, cold: bool, download: bool = False) -> float:
        with _host_cache(fresh=cold):
            started = time.perf_counter()
            pins = _RUNNERS[tool](requirements, node, "bench")
            if download:
                fetch_wheels(pins)
            seconds = time.perf_counter() - started
        answers[tool] = sorted(pin.filename for pin in pins)
        return seconds

    series = interleave(
        repeats,
        {
            "uv: resolve, empty cache": lambda: run("uv", True),
            "pip: resolve, empty cache": lambda: run("pip", True),
            "uv: resolve, warm cache": lambda: run("uv", False),
            "pip: resolve, warm cache": lambda: run("pip", False),
            "uv: resolve + download wheelhouse, empty cache": lambda: run("uv", True, True),
            "pip: resolve + download wheelhouse, empty cache": lambda: run("pip", True, True),
        },
        say=say,
    )
    if answers["uv"] != answers["pip"]:
        raise RuntimeError(f"uv and pip resolved differently: {answers}")
    return Figure(
        "resolvers",
        f"Resolving 2 dependencies for the nodes' Python ({node.abi}, "
        f"glibc {node.libc_version}) on this host: uv vs pip",
        "s",
        series,
        ratios={
            "pip / uv (empty cache)": ratio(
                series["pip: resolve, empty cache"], series["uv: resolve, empty cache"]
            ),
            "pip / uv (warm cache)": ratio(
                series["pip: resolve, warm cache"], series["uv: resolve, warm cache"]
            ),
        },
        notes=[
            "uv pip compile --format pylock.toml vs pip install --dry-run --report, both for the "
            "node's version and manylinux tags, wheels only; both pick the same files",
            "the SDK caches a resolution for 24 h, so warm submissions run neither",
        ],
        details={"wheels": answers["uv"]},
    )
