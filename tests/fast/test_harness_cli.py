"""`slurm-dev-cluster` against a fake docker (an empty project): plain messages and exit codes. Each run is
in this process, through the console script's entry point (test_harness_preflight.run_cli_here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from slurm_dev_cluster.locks import Coordinator

from .test_harness_preflight import FAKE_DOCKER, Exited, _env, run_cli_here

PROJECT = "slurmsdk-cli-test"


@pytest.fixture
def fake_bin(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    return bin_dir


@pytest.fixture
def harness_cli(tmp_path, fake_bin, monkeypatch, capsys):
    """``slurm-dev-cluster *args`` with only the fake docker on PATH."""
    env = _env(tmp_path, str(fake_bin), FAKE_DOCKER="ok", SLURM_SDK_PROJECT=PROJECT)

    def run(*args: str) -> Exited:
        return run_cli_here(monkeypatch, capsys, env, *args)

    return run


def test_status_of_a_stack_that_is_not_running(harness_cli):
    run = harness_cli("status")
    assert run.returncode == 3
    assert f"project:   {PROJECT}" in run.stdout
    assert "not running (start it with: slurm-dev-cluster up)" in run.stdout


def test_down_refuses_while_a_test_session_uses_the_stack(tmp_path, harness_cli):
    user = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        Coordinator(tmp_path / "state" / PROJECT).register("some-session", "worker", pid=user.pid)
        run = harness_cli("down")
        assert run.returncode == 1
        assert f"{user.pid} (worker) still use it" in run.stderr and "--force" in run.stderr
    finally:
        user.stdin.close()
        user.wait()


@pytest.mark.parametrize(
    "args", [[], ["bogus"], ["exec", "nosuchservice"], ["exec", "--timeout", "0", "login", "true"]]
)
def test_usage_errors_show_the_commands(harness_cli, args):
    run = harness_cli(*args)
    assert run.returncode == 2
    assert "usage: slurm-dev-cluster" in run.stderr
