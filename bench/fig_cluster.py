"""Dev-cluster figures: cold start, `up` with nothing changed, image sizes (warm start by shape: fig_shapes)."""

from __future__ import annotations

import os
import subprocess
import time

from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run as docker_run

from bench.env import REPO_ROOT, BenchEnv, say
from bench.figure import Figure, Target
from bench.stats import Series, timed
from slurm_dev_cluster import compose_project, docker_deadline

RELEASE = os.environ.get("DEBIAN_RELEASE", "trixie")
BASE_IMAGE = f"debian:{RELEASE}"
#: harness/src/slurm_dev_cluster/bootstrap-host.sh: a base image pull, or debootstrap where no registry answers (minutes).
BOOTSTRAP_SECONDS = docker_deadline.BUILD_SECONDS


def stack_image(env: BenchEnv) -> str:
    """The dev image the bench stack runs (the harness tags it per input hash)."""
    return _service_image(env, "login")


def _service_image(env: BenchEnv, service: str) -> str:
    with env.stack._bounded(docker_deadline.INSPECT_SECONDS, "docker compose config") as docker:
        image = docker.compose.config().services[service].image
    assert image, f"compose.yaml names no image for {service}"
    return image


def _phase_series(phases: list[dict[str, float]]) -> dict[str, dict]:
    names = dict.fromkeys(name for p in phases for name in p)
    return {name: Series([p.get(name, 0.0) for p in phases]).to_json() for name in names}


def reuse(env: BenchEnv, repeats: int) -> Figure:
    """`docker compose up --wait` on a running, unchanged stack (what a second `up` costs)."""
    env.ensure_up()
    samples = Series()
    for round_ in range(repeats):
        with env.stack.compose.bounded(
            compose_project.UP_BOUND_SECONDS, "docker compose up --wait"
        ) as docker:
            seconds = timed(lambda: docker.compose.up(detach=True, wait=True, color=False, quiet=True))
        samples.samples.append(seconds)
        say(f"  [{round_ + 1}/{repeats}] compose up (nothing changed): {seconds:.2f} s")
    return Figure("reuse", "`docker compose up --wait` with nothing changed", "s", {"compose up": samples})


def image_size(env: BenchEnv) -> Figure:
    """Sizes are deterministic for a given build: measured once."""
    env.ensure_up()
    sizes, image = {}, stack_image(env)
    accounting_image = _service_image(env, "slurmdbd")
    for name in (image, accounting_image, BASE_IMAGE):
        try:
            with env.stack._bounded(
                docker_deadline.INSPECT_SECONDS, f"docker image inspect {name}"
            ) as docker:
                sizes[name] = Series([docker.image.inspect(name).size / 1e6])
        except DockerException as exc:
            say(f"  cannot inspect {name}: {exc}")
    return Figure(
        "image",
        f"Image sizes ({image}, its accounting variant for slurmdbd, and their base)",
        "MB",
        sizes,
        notes=[
            "uncompressed size as `docker images` reports it; the base image is included in it, and the "
            "accounting image (slurmdbd + MariaDB) is built on the dev image, so their layers are shared"
        ],
    )


def _fmt(phases: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()) + ")"


# ---- cold -------------------------------------------------------------------------------------------


def _remove_images_and_cache(env: BenchEnv) -> None:
    """Untag the bench stack's dev image (and the plain release tag), the Debian base, and drop the build
    cache. Containers of other stacks keep running on their (now untagged) images; their next build finds
    the cache this run leaves behind."""
    for name in (stack_image(env), f"slurm-sdk-dev:{RELEASE}", BASE_IMAGE):
        with env.stack._bounded(docker_deadline.INSPECT_SECONDS, f"docker image inspect {name}") as docker:
            present = docker.image.exists(name)
        if present:
            say(f"  removing image {name}")
            with env.stack._bounded(docker_deadline.CLEANUP_SECONDS, f"docker image rm {name}") as docker:
                docker.image.remove(name, force=True)
    with env.stack._bounded(docker_deadline.ANSWER_SECONDS, "docker buildx version") as docker:
        buildx = docker.buildx.is_installed()
    with env.stack._bounded(docker_deadline.CLEANUP_SECONDS, "docker builder prune") as docker:
        if buildx:
            docker.buildx.prune(all=True)
        else:  # Docker 20.10 without the buildx plugin: the daemon's own builder cache API
            say("  pruning build cache (docker builder prune -af)")
            docker_run([*docker.docker_cmd, "builder", "prune", "-af"])


def _bootstrap() -> None:
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "harness" / "src" / "slurm_dev_cluster" / "bootstrap-host.sh")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=BOOTSTRAP_SECONDS,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"harness/src/slurm_dev_cluster/bootstrap-host.sh failed (exit {result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )


def cold(env: BenchEnv, repeats: int) -> Figure:
    """No images, no build cache, no base image -> cluster ready: bootstrap-host.sh + ensure_up."""
    totals, bootstrap, phases = Series(), Series(), []
    for round_ in range(repeats):
        env.down()
        _remove_images_and_cache(env)
        started = time.perf_counter()
        bootstrap.samples.append(timed(_bootstrap))
        env.ensure_up()
        totals.samples.append(time.perf_counter() - started)
        phases.append({"bootstrap-host.sh (base image)": bootstrap.samples[-1], **env.stack.phases})
        say(
            f"  [{round_ + 1}/{repeats}] cold start: {totals.samples[-1]:.1f} s "
            f"(bootstrap {bootstrap.samples[-1]:.1f} s) {_fmt(env.stack.phases)}"
        )
    return Figure(
        "cold",
        "Cold start: no images, no build cache -> ready (bootstrap-host.sh + ensure_up)",
        "s",
        {"total": totals},
        target=Target("total", "<=", 120.0, "≤ 120 s"),
        details={"phases": _phase_series(phases)},
        notes=[
            "no registry is reachable here, so bootstrap-host.sh builds the Debian base image "
            "with debootstrap; where `docker pull debian` works that step is a pull"
        ],
    )
