"""Bad hosts give one clear message naming the cause and the fix (slurm_dev_cluster.preflight, CLI, plugin).

Docker is faked: a stand-in `docker` executable whose behaviour a FAKE_DOCKER env var selects.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from python_on_whales import DockerClient

from slurm_dev_cluster import preflight
from slurm_dev_cluster.__main__ import main
from slurm_dev_cluster.stack import REPO_ROOT

pytest_plugins = ("pytester",)  # the plugin's sessions, run in this process

# -S: the stand-in needs only the standard library; it starts faster without the site-packages scan.
FAKE_DOCKER = f"""#!{sys.executable} -S
import json, os, sys
mode, args = os.environ.get("FAKE_DOCKER", "ok"), sys.argv[1:]
if mode == "nothing-works":  # no daemon, and a CLI without the compose plugin
    sys.exit("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
if "compose" in args:
    if mode == "no-compose":
        sys.exit("docker: 'compose' is not a docker command.")
    if "version" in args:
        print("docker-compose version 1.29.2, build 5becea4c" if mode == "compose-v1" else "Docker Compose version v2.26.1")
    sys.exit(0)  # `compose ps` etc.: an empty project
if args[:1] == ["ps"]:  # the project's containers: none; "publisher": a container publishing the port asked for
    if mode == "publisher":
        print("proj-login-1\tproj\t/src/other-checkout")
    sys.exit(0)
if args[:1] == ["version"]:
    print(json.dumps({{"Client": {{"Version": "20.10.24"}}, "Server": {{"Version": "20.10.24"}}}}))
    sys.exit(0)
sys.exit(f"fake docker: unexpected call {{args}}")
"""


@pytest.fixture
def fake_bin(tmp_path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    return bin_dir


def fake_client(fake_bin: Path, monkeypatch, mode: str) -> DockerClient:
    monkeypatch.setenv("FAKE_DOCKER", mode)
    return DockerClient(client_call=[str(fake_bin / "docker")])


def test_missing_docker_cli_names_the_binary_and_the_install_step():
    problems = preflight.run_checks(DockerClient(client_call=["/nonexistent/bin/docker"]))
    assert [p.code for p in problems] == ["docker-missing"]
    text = str(preflight.PreflightError(problems))
    assert "/nonexistent/bin/docker` is not on PATH" in text and "slurm-dev-cluster setup-host" in text
    assert problems[0].unavailable


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (not the daemon)")
def test_unreachable_daemon_names_docker_host_and_how_to_fix(tmp_path, monkeypatch):
    socket_path = f"unix://{tmp_path}/no-such.sock"
    monkeypatch.setenv("DOCKER_HOST", socket_path)
    problem = preflight.check_daemon(DockerClient())
    assert problem is not None and problem.code == "daemon-down"
    assert socket_path in problem.cause
    assert "start the daemon" in problem.fix and "DOCKER_HOST" in problem.fix


def test_compose_v1_is_rejected_with_the_v2_install_hint(fake_bin, monkeypatch):
    problems = preflight.run_checks(fake_client(fake_bin, monkeypatch, "compose-v1"))
    assert [p.code for p in problems] == ["compose-v1"]
    assert "1.29.2" in problems[0].cause and "Compose v2 is required" in problems[0].cause
    assert "compose v2" in problems[0].fix.lower()


def test_only_legacy_docker_compose_installed(fake_bin, monkeypatch):
    legacy = fake_bin / "docker-compose"
    legacy.write_text("#!/bin/sh\necho 'docker-compose version 1.29.2'\n")
    legacy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    problem = preflight.check_compose_v2(fake_client(fake_bin, monkeypatch, "no-compose"))
    assert problem is not None and problem.code == "compose-missing"
    assert "legacy v1 `docker-compose`" in problem.cause


def test_the_daemon_is_named_first_when_compose_fails_too(fake_bin, monkeypatch):
    """Both Docker checks run side by side; the report keeps their dependency order: the daemon first."""
    problems = preflight.run_checks(fake_client(fake_bin, monkeypatch, "nothing-works"))
    assert [p.code for p in problems] == ["daemon-down"]
    assert "Cannot connect to the Docker daemon" in problems[0].cause


def test_working_fake_docker_passes(fake_bin, monkeypatch):
    assert preflight.run_checks(fake_client(fake_bin, monkeypatch, "ok")) == []


@pytest.fixture
def taken_port():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    yield listener.getsockname()[1]
    listener.close()


def test_fixed_ssh_port_already_taken(taken_port):
    problem = preflight.check_ssh_port(str(taken_port), stack_running=False)
    assert problem is not None and problem.code == "ssh-port-taken"
    assert f"127.0.0.1:{taken_port} is already in use" in problem.cause
    assert "unset SLURM_SDK_SSH_PORT" in problem.fix
    assert not problem.unavailable  # a misconfiguration: fails even outside CI
    # Our own running stack holding the port is fine.
    assert preflight.check_ssh_port(str(taken_port), stack_running=True) is None


@pytest.mark.skipif(shutil.which("ss") is None, reason="names the process with `ss` (iproute2)")
def test_a_taken_port_names_the_process_holding_it(taken_port, fake_bin, monkeypatch):
    """No container publishes it (the fake Docker lists none): the host process is named, by pid."""
    problem = preflight.check_ssh_port(str(taken_port), False, fake_client(fake_bin, monkeypatch, "ok"))
    assert problem is not None
    assert re.search(rf", by process \S+ \(pid {os.getpid()}\)$", problem.cause), problem.cause


def test_a_port_published_by_a_container_names_its_stack_and_how_to_stop_it(
    taken_port, fake_bin, monkeypatch
):
    holder = preflight.port_holder(fake_client(fake_bin, monkeypatch, "publisher"), taken_port)
    assert holder.who == "container proj-login-1 of Compose project proj (started in /src/other-checkout)"
    assert "`docker compose -p proj down -v`" in holder.fix and "/src/other-checkout" in holder.fix


def test_a_port_nobody_can_be_found_holding_still_says_how_to_look(fake_bin, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_bin))  # no `ss` either
    holder = preflight.port_holder(fake_client(fake_bin, monkeypatch, "ok"), 2222)
    assert holder.who == "an unknown process" and "ss -ltnp 'sport = :2222'" in holder.fix


@pytest.mark.parametrize("value", ["abc", "0", "70000"])
def test_invalid_ssh_port_value(value):
    problem = preflight.check_ssh_port(value, stack_running=False)
    assert problem is not None and problem.code == "ssh-port-invalid"


def test_unset_or_empty_port_means_ephemeral_and_is_not_checked():
    assert preflight.check_ssh_port(None, False) is None
    assert preflight.check_ssh_port("", False) is None


# ---- the same problems through the CLI and the pytest plugin -------------------------------------


def _env(tmp_path: Path, path: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "SLURM_SDK_", "CI"))}
    env.update(PATH=path, SLURM_SDK_STATE_HOME=str(tmp_path / "state"), PYTHONPATH=str(REPO_ROOT), **extra)
    return env


def test_cli_up_with_compose_v1_exits_2_with_cause_and_fix(tmp_path, fake_bin):
    run = subprocess.run(
        [sys.executable, "-m", "slurm_dev_cluster", "up"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=_env(tmp_path, str(fake_bin), FAKE_DOCKER="compose-v1"),
    )
    assert run.returncode == 2
    assert "error: dev cluster cannot start" in run.stderr
    assert "Docker Compose v2 is required" in run.stderr and "fix:" in run.stderr
    assert "Traceback" not in run.stderr


@dataclass
class Exited:
    """What a run of the CLI left: its exit code and what it wrote."""

    returncode: int
    stdout: str
    stderr: str


def run_cli_here(monkeypatch, capsys, env: dict[str, str], *args: str) -> Exited:
    """``slurm-dev-cluster *args`` with exactly ``env`` for environment, in the repository, run in this
    process through the console script's entry point (``main``, whose return value ``sys.exit`` makes the
    exit code; argparse exits 2 itself on a usage error): no interpreter to start, nor the kit and its
    Docker client to import again (~0.6 CPU-s a run). The fresh process is the ``up`` test's above."""
    for name in set(os.environ) - set(env):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(REPO_ROOT)
    try:
        code = main(list(args))
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else 1
    out, err = capsys.readouterr()
    return Exited(code, out, err)


def test_cli_up_with_taken_port_names_the_port(tmp_path, fake_bin, taken_port, monkeypatch, capsys):
    env = _env(tmp_path, str(fake_bin), FAKE_DOCKER="ok", SLURM_SDK_SSH_PORT=str(taken_port))
    run = run_cli_here(monkeypatch, capsys, env, "up")
    assert run.returncode == 2
    assert f"SLURM_SDK_SSH_PORT={taken_port}" in run.stderr and "already in use" in run.stderr


PLUGIN_USER_TESTS = """
import pytest

@pytest.mark.integration
def test_needs_cluster(slurm_container):
    pass

def test_unmarked_runs_locally(cluster_mode):
    assert cluster_mode == "local"
"""


@pytest.mark.parametrize("ci, outcome", [("", "1 passed, 1 skipped"), ("true", "1 passed, 1 error")])
def test_plugin_without_docker_skips_integration_tests_or_fails_in_ci(
    pytester, tmp_path, monkeypatch, ci, outcome
):
    """Another project using the plugin with -p: no Docker -> skip with the reason (CI=true -> fail). The
    session runs in this process (pytester): what the plugin does in a session, not a fresh process, is
    under test, and in a fresh one it would import the kit's Docker and SSH clients again (~1 CPU-s)."""
    pytester.makepyfile(test_user=PLUGIN_USER_TESTS)
    empty_path = tmp_path / "empty-bin"
    empty_path.mkdir()
    env = _env(tmp_path, str(empty_path), CI=ci)
    for name in set(os.environ) - set(env):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = pytester.runpytest_inprocess(
        "-p", "slurm_dev_cluster.pytest_plugin", "-p", "no:cacheprovider", "--strict-markers", "-rsf"
    )
    stdout = run.stdout.str()
    assert outcome in stdout, stdout + run.stderr.str()
    assert "the Docker CLI `docker` is not on PATH" in stdout
    if ci:
        assert "CI=true: failing instead of skipping" in stdout
