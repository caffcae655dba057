"""The test kit as another project uses it: `examples/downstream` runs its own pytest (a subprocess, the
plugin loaded through the pytest11 entry point) on its own dev cluster, then on this session's cluster
through `--existing-cluster`, bringing nothing up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from slurm_dev_cluster import client_config, kit
from slurm_dev_cluster.stack import state_root

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = kit.CHECKOUT_ROOT / "examples" / "downstream"
#: Settings of this session that must not leak into the example's own session.
LEAKING = ("SLURM_SDK_PROJECT", "SLURM_SDK_CONFIG", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")


def run_example(*args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in LEAKING and not k.startswith(("SLURM_SDK_PROJECT", "PYTEST_"))
    }
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rP", "-p", "no:cacheprovider", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return run, time.monotonic() - started


def test_example_project_on_its_own_dev_cluster(slurm_container):
    project = f"slurmsdk-kit-example-{uuid.uuid4().hex[:6]}"
    run, seconds = run_example(f"--slurm-project={project}")
    print(f"example session on its own stack: {seconds:.1f} s")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "3 passed" in run.stdout
    # Its own stack (not this session's), serving its own source from /opt/project ...
    assert f"starting stack {project}" in run.stderr
    assert "from /opt/project/src/kit_example" in run.stdout
    assert project != slurm_container.project
    # ... started by that session, so stopped at its end: no container of it is left.
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == ""


def test_example_project_on_an_existing_cluster(slurm_container, sdk_on_cluster, tmp_path):
    # This session's cluster plays the real cluster: the example's code is on a path the nodes share
    # (this checkout's mount), as a site's shared file system would hold it.
    config = client_config.sdk_config(slurm_container, kit.resolve(base_dir=kit.CHECKOUT_ROOT, environ={}))
    config["packaging"]["pythonpath"].append(f"{kit.PROJECT_MOUNT}/examples/downstream/src")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    project = f"slurmsdk-kit-existing-{uuid.uuid4().hex[:6]}"
    run, seconds = run_example(f"--existing-cluster={path}", f"--slurm-project={project}")
    print(f"example session on an existing cluster: {seconds:.1f} s")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "3 passed" in run.stdout
    assert f"from {kit.PROJECT_MOUNT}/examples/downstream/src/kit_example" in run.stdout
    assert not (state_root() / project).exists()  # nothing was brought up, not even a state directory
