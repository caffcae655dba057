"""Published images, the whole cycle on this machine: `slurm-dev-cluster push` to a registry on
127.0.0.1 (Debian's docker-registry, harness/src/slurm_dev_cluster/registry.py), the registry then serves every blob of the
tags, and a second stack comes up from the pulled images without building, runs a job, and goes away."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from slurm_dev_cluster import kit
from slurm_dev_cluster.registry import LocalRegistry
from slurm_dev_cluster.stack import IMAGE_REPOSITORY, Stack, accounting_enabled

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VERSION = "vtest"
#: A job, then its state as accounting has it: slurmdbd records the end a moment after the job ends (under
#: load seconds later; until then sacct lists nothing, or RUNNING), so it asks for up to 60 s.
SUBMIT_AND_ACCOUNT = """id=$(sbatch --parsable --wait -o /dev/null --wrap true) && echo job-ok || exit 1
for _ in $(seq 120); do
  state=$(sacct -n -X -j "$id" -o State 2>/dev/null | tr -d ' ')
  [ "$state" = COMPLETED ] && break
  sleep 0.5
done
echo "accounted=$state"
"""


def harness_cli(*args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "slurm_dev_cluster", *args],
        cwd=kit.CHECKOUT_ROOT,
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


def test_push_pull_run(slurm_stack: Stack, registry: LocalRegistry):
    """Every image the stack runs (the node image and, with accounting, slurmdbd's) goes the whole way:
    pushed under both tags, fully served by the registry, untagged here, pulled by a new stack, run."""
    release, inputs_tag = slurm_stack.release, slurm_stack.image_tag
    remote = f"{registry.address}/{IMAGE_REPOSITORY}"
    # The stack's own list of images (Stack.images), so an image added to the stack is covered here too.
    suffixes = [
        image.rpartition(":")[2].removeprefix(inputs_tag) for image in slurm_stack.images(IMAGE_REPOSITORY)
    ]
    assert "-accounting" in suffixes or not accounting_enabled()
    runs = [f"{remote}:{inputs_tag}{suffix}" for suffix in suffixes]  # what a stack from the registry runs
    pushed_refs = runs + [f"{remote}:{release}-{VERSION}{suffix}" for suffix in suffixes]
    project = f"slurmsdk-pulled-{uuid.uuid4().hex[:6]}"
    env = {"SLURM_SDK_IMAGE_REGISTRY": registry.address, "SLURM_SDK_PROJECT": project}
    try:
        push, push_seconds = harness_cli("push", "--registry", registry.address, "--version", VERSION)
        assert push.returncode == 0, push.stderr
        assert push.stdout.splitlines() == [
            f"{IMAGE_REPOSITORY}:{inputs_tag}{suffix} -> {remote}:{inputs_tag}{suffix}, "
            f"{remote}:{release}-{VERSION}{suffix}"
            for suffix in suffixes
        ]
        # What a machine that has none of the layers would need: every tag, its manifest, every blob.
        expected_tags = {
            f"{tag}{suffix}" for tag in (inputs_tag, f"{release}-{VERSION}") for suffix in suffixes
        }
        assert set(registry.tags(IMAGE_REPOSITORY)) >= expected_tags
        for tag in expected_tags:
            assert registry.missing_blobs(IMAGE_REPOSITORY, tag) == [], tag

        for ref in pushed_refs:  # untag: the next stack must pull (the layers stay, shared with the source)
            docker("image", "rm", ref)
        up, up_seconds = harness_cli("up", **env)
        assert up.returncode == 0, up.stderr
        for ref in runs:
            assert f"pulling {ref}" in up.stderr, up.stderr
        assert "images pulled" in up.stderr and "building images" not in up.stderr  # nothing built
        images = docker(
            "ps", "--filter", f"label=com.docker.compose.project={project}", "--format", "{{.Image}}"
        )
        assert set(images.split()) == set(runs)  # every container runs a pulled image, every pulled one runs
        # `up` ran its probe (SSH login + a batch job); one more job, through the harness's ssh verb, and
        # accounting (slurmdbd from the pulled image) knows it:
        job, _ = harness_cli("ssh", SUBMIT_AND_ACCOUNT, **env)
        assert job.returncode == 0 and "job-ok" in job.stdout, job.stderr
        if accounting_enabled():
            assert "accounted=COMPLETED" in job.stdout, job.stdout
        print(f"push {push_seconds:.1f} s; up from pulled images {up_seconds:.1f} s")
    finally:
        harness_cli("down", "--force", **env)
        subprocess.run(["docker", "image", "rm", *pushed_refs], capture_output=True)
