"""`slurm-dev-cluster` against a fake docker (an empty project): plain messages and exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from slurm_dev_cluster.locks import Coordinator
from slurm_dev_cluster.stack import REPO_ROOT

from .test_harness_preflight import FAKE_DOCKER, _env

PROJECT = "slurmsdk-cli-test"


@pytest.fixture
def fake_bin(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    return bin_dir


def harness_cli(tmp_path, fake_bin, *args: str) -> subprocess.CompletedProcess:
    env = _env(tmp_path, str(fake_bin), FAKE_DOCKER="ok", SLURM_SDK_PROJECT=PROJECT)
    return subprocess.run(
        [sys.executable, "-m", "slurm_dev_cluster", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def test_status_of_a_stack_that_is_not_running(tmp_path, fake_bin):
    run = harness_cli(tmp_path, fake_bin, "status")
    assert run.returncode == 3
    assert f"project:   {PROJECT}" in run.stdout
    assert "not running (start it with: slurm-dev-cluster up)" in run.stdout


def test_down_refuses_while_a_test_session_uses_the_stack(tmp_path, fake_bin):
    user = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        Coordinator(tmp_path / "state" / PROJECT).register("some-session", "worker", pid=user.pid)
        run = harness_cli(tmp_path, fake_bin, "down")
        assert run.returncode == 1
        assert f"{user.pid} (worker) still use it" in run.stderr and "--force" in run.stderr
    finally:
        user.stdin.close()
        user.wait()


@pytest.mark.parametrize(
    "args", [[], ["bogus"], ["exec", "nosuchservice"], ["exec", "--timeout", "0", "login", "true"]]
)
def test_usage_errors_show_the_commands(tmp_path, fake_bin, args):
    run = harness_cli(tmp_path, fake_bin, *args)
    assert run.returncode == 2
    assert "usage: slurm-dev-cluster" in run.stderr
