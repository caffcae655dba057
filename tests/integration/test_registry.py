"""Published images, the whole cycle on this machine: `python -m harness push` to a registry on
127.0.0.1 (Debian's docker-registry, harness/registry.py), the registry then serves every blob of the
tags, and a second stack comes up from the pulled images without building, runs a job, and goes away."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from harness import kit
from harness.registry import LocalRegistry
from harness.stack import IMAGE_REPOSITORY, Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VERSION = "vtest"


def harness_cli(*args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=kit.KIT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    return run, time.monotonic() - started


@pytest.fixture
def registry(tmp_path):
    with LocalRegistry(tmp_path / "registry") as running:
        yield running


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.xfail(
    strict=False,
    reason="known bug since accounting became the default: the accounting image is pushed and pulled too, "
    "and the test's expected image set predates it",
)
def test_push_pull_run(slurm_stack: Stack, registry: LocalRegistry):
    release, inputs_tag = slurm_stack.release, slurm_stack.image_tag
    pushed_refs = [f"{registry.address}/{IMAGE_REPOSITORY}:{t}" for t in (inputs_tag, f"{release}-{VERSION}")]
    project = f"slurmsdk-pulled-{uuid.uuid4().hex[:6]}"
    env = {"SLURM_SDK_IMAGE_REGISTRY": registry.address, "SLURM_SDK_PROJECT": project}
    try:
        push, push_seconds = harness_cli("push", "--registry", registry.address, "--version", VERSION)
        assert push.returncode == 0, push.stderr
        assert push.stdout.startswith(f"{IMAGE_REPOSITORY}:{inputs_tag} -> {', '.join(pushed_refs)}")
        # What a machine that has none of the layers would need: every tag, its manifest, every blob.
        assert set(registry.tags(IMAGE_REPOSITORY)) >= {inputs_tag, f"{release}-{VERSION}"}
        assert registry.missing_blobs(IMAGE_REPOSITORY, inputs_tag) == []

        for ref in pushed_refs:  # untag: the next stack must pull (the layers stay, shared with the source)
            docker("image", "rm", ref)
        up, up_seconds = harness_cli("up", **env)
        assert up.returncode == 0, up.stderr
        assert f"pulling {pushed_refs[0]}" in up.stderr and "images pulled" in up.stderr
        assert "building images" not in up.stderr  # nothing built
        images = docker(
            "ps", "--filter", f"label=com.docker.compose.project={project}", "--format", "{{.Image}}"
        )
        assert images.split() and set(images.split()) == {pushed_refs[0]}
        # `up` ran its probe (SSH login + a batch job); one more job, through the harness's ssh verb:
        job, _ = harness_cli("ssh", "sbatch --wait -o /dev/null --wrap true && echo job-ok", **env)
        assert job.returncode == 0 and "job-ok" in job.stdout, job.stderr
        print(f"push {push_seconds:.1f} s; up from pulled images {up_seconds:.1f} s")
    finally:
        harness_cli("down", "--force", **env)
        subprocess.run(["docker", "image", "rm", *pushed_refs], capture_output=True)
