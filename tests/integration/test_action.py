"""The one-step action (action.yml -> .github/actions/dev-cluster/start.sh), driven as GitHub runs a
composite step: the inputs as INPUT_* variables (action.yml maps each one), GITHUB_ENV and GITHUB_OUTPUT
files, GITHUB_ACTION_PATH at this checkout. It must leave a cluster the SDK reaches through the
exported config. Its own compose project (not the kit's stack): no `integration` marker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / ".github" / "actions" / "dev-cluster" / "start.sh"
ACTION = yaml.safe_load((REPO_ROOT / "action.yml").read_text())


def read_pairs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_action_maps_every_input_to_the_script():
    step = ACTION["runs"]["steps"][0]
    for name in ACTION["inputs"]:
        variable = "INPUT_" + name.upper().replace("-", "_")
        assert step["env"][variable] == f"${{{{ inputs.{name} }}}}", name


def run_action(verb: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(SCRIPT), verb],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


@pytest.fixture
def action_env(tmp_path):
    project = f"hci-action-{uuid.uuid4().hex[:6]}"
    (tmp_path / "env").write_text("")
    (tmp_path / "output").write_text("")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "SLURM_SDK_"))},
        "GITHUB_ACTION_PATH": str(REPO_ROOT),
        "GITHUB_ENV": str(tmp_path / "env"),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "RUNNER_TEMP": str(tmp_path / "runner_temp"),
        "SLURM_SDK_PROJECT": project,
        "SLURM_SDK_STATE_HOME": str(tmp_path / "state"),
        "SLURM_SDK_ACTION_PYTHON": sys.executable,  # this venv has slurm-dev-cluster
        # as action.yml passes them, with the defaults the runner fills in
        "INPUT_NODES": "2",
        "INPUT_DEBIAN_RELEASE": os.environ.get("DEBIAN_RELEASE", "trixie"),
        "INPUT_ACCOUNTING": "true",
        "INPUT_REGISTRY": "",
        "INPUT_TAG": "",
    }
    try:
        yield env
    finally:
        down = run_action("down", env)
        assert down.returncode == 0, down.stderr[-2000:]


def test_action_starts_a_cluster_the_sdk_reaches_through_the_exported_config(action_env, tmp_path):
    from slurm import Cluster

    from . import ci_jobs

    started = time.monotonic()
    result = run_action("start", action_env)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"\naction: start -> outputs set in {took:.2f} s")
    exported, outputs = read_pairs(tmp_path / "env"), read_pairs(tmp_path / "output")
    assert outputs["sdk-config"] == exported["SLURM_SDK_CONFIG"]
    assert outputs["ssh-config"] == exported["SLURM_SDK_SSH_CONFIG"]
    assert int(outputs["ssh-port"]) > 0
    ssh = subprocess.run(
        ["ssh", "-F", exported["SLURM_SDK_SSH_CONFIG"], "slurm-dev", "sinfo -h -o %D"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ssh.returncode == 0 and ssh.stdout.strip() == "2", (ssh.stdout, ssh.stderr)
    with Cluster.from_env(exported["SLURM_SDK_CONFIG"]) as cluster:
        seen = cluster.submit(ci_jobs.parent).result(timeout=240)
    assert seen["child"].endswith("tests/integration/ci_jobs.py"), seen


def test_action_rejects_a_bad_input(action_env):
    result = run_action("start", {**action_env, "INPUT_ACCOUNTING": "maybe"})
    assert result.returncode == 2 and "accounting: 'maybe' is not true or false" in result.stderr
