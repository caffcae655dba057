"""pyproject.toml is the source of truth for the nodes: a dependency added there is importable on every
node after `harness up`, installed offline from the host-built wheelhouse (harness/src/slurm_dev_cluster/wheelhouse.py).

The slow tests run in a temporary copy of the repo with its own Compose project and state dir (the suite's stack is
not touched), torn down afterwards together with the images it built.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import airgap, wheelhouse
from slurm_dev_cluster.stack import REPO_ROOT, SDK_MOUNT, Stack
from slurm_dev_cluster.wheelhouse import WHEELHOUSE_DIR

pytestmark = pytest.mark.integration

NEW_DEPENDENCY = "iniconfig"  # tiny, pure Python, not among the image's Debian packages
#: What the image build needs from the repo (the SDK itself arrives by bind mount).
COPIED = ("compose.yaml", "pyproject.toml", ".dockerignore", "images")


def with_dependency(pyproject: str, requirement: str) -> str:
    """``pyproject.toml`` text with one more entry in ``[project].dependencies``."""
    edited, count = re.subn(r"(?ms)^(dependencies = \[\n)", rf'\1    "{requirement}",\n', pyproject, count=1)
    assert count == 1, "pyproject.toml has no `dependencies = [` block to extend"
    return edited


@pytest.fixture
def repo_copy(tmp_path, index_url):
    """A copy of the repo declaring NEW_DEPENDENCY, with its own project and state; torn down after."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in COPIED:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, root / name)
    shutil.rmtree(root / WHEELHOUSE_DIR)  # a fresh clone's state: no wheelhouse yet
    (root / WHEELHOUSE_DIR).mkdir()
    project = f"slurmsdk-deptest-{uuid.uuid4().hex[:8]}"
    # The project's name in pyproject.toml makes the copy's image inputs its own, so `up` builds this copy's
    # image. Two copies alike would share an image tag: a test running beside another (or after one whose
    # teardown was cut short) found the image built, so its `up` neither refreshed its wheelhouse nor built.
    (root / "pyproject.toml").write_text(
        with_dependency((REPO_ROOT / "pyproject.toml").read_text(), NEW_DEPENDENCY)
        + f"# the image inputs of {project}'s copy\n"
    )
    env = {
        **os.environ,
        "SLURM_SDK_PROJECT": project,
        "SLURM_SDK_STATE_HOME": str(tmp_path / "state"),
        "SLURM_SDK_KIT_DIR": str(root),  # the copy's cluster definition, not the installed kit's
    }
    env.pop("SLURM_SDK_SSH_PORT", None)
    stack = Stack(root, project=project, state_dir=tmp_path / "state" / project)
    try:
        yield root, env, stack
    finally:
        harness(root, env, "down", "--force")
        for image in stack.images():
            if stack.docker.image.exists(image):
                stack.docker.image.remove(image, force=True)


def harness(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """`slurm-dev-cluster` run in the copy, building the copy's definition ($SLURM_SDK_KIT_DIR)."""
    return subprocess.run(
        [sys.executable, "-m", "slurm_dev_cluster", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_wheelhouse_target_is_what_the_nodes_run(slurm_stack):
    """The wheelhouse resolves for RELEASES' Python and glibc and the daemon's arch: the nodes agree."""
    target = wheelhouse.target_for(slurm_stack.release, slurm_stack.docker.system.info().architecture)
    probe = [
        "python3",
        "-c",
        "import platform, sys; print('%d.%d' % sys.version_info[:2], "
        "platform.libc_ver()[1], platform.machine())",
    ]
    for service in slurm_stack.cluster_services:
        assert slurm_stack.exec(service, probe).split() == [target.python, target.glibc, target.arch], service


@pytest.mark.slow
def test_dependency_added_to_pyproject_is_importable_on_every_node_after_harness_up(repo_copy):
    root, env, stack = repo_copy
    # A plain `docker compose up --build` before any wheelhouse exists: the build fails, naming the fix.
    log = []
    with pytest.raises(DockerException):
        for _, line in stack.docker.compose.build(["slurmctld"], stream_logs=True):
            log.append(line.decode(errors="replace"))
    output = "".join(log)
    assert f"No matching distribution found for {NEW_DEPENDENCY}" in output
    assert "fix: run `slurm-dev-cluster wheelhouse`" in output

    up = harness(root, env, "up")  # refreshes the wheelhouse for the nodes, builds, starts
    assert up.returncode == 0, up.stderr[-3000:]
    manifest = (root / WHEELHOUSE_DIR / stack.release / "requirements.txt").read_text()
    assert f"{NEW_DEPENDENCY}==" in manifest
    probe = [
        "python3",
        "-c",
        f"import {NEW_DEPENDENCY}, slurm; print({NEW_DEPENDENCY}.__file__, slurm.__file__)",
    ]
    for service in stack.cluster_services:
        found, sdk = stack.exec(service, probe, user="sdk").split()
        assert found.startswith("/opt/venv/lib/"), f"{service}: {NEW_DEPENDENCY} imported from {found}"
        assert sdk.startswith(f"{SDK_MOUNT}/src/slurm/"), f"{service}: slurm imported from {sdk}"


@pytest.mark.slow
def test_harness_down_lifts_an_air_gap(repo_copy):
    """A disposable stack, so the suite's own stack is never taken down: its firewall rules go with it."""
    root, env, stack = repo_copy
    assert harness(root, env, "up").returncode == 0
    assert harness(root, env, "airgap", "on").returncode == 0
    assert airgap.egress_is_blocked(stack)
    down = harness(root, env, "down", "--force")
    assert down.returncode == 0, down.stderr[-2000:]
    assert "air gap removed" in down.stderr
    assert airgap.restore_egress(stack) == 0  # nothing tagged with the project is left
