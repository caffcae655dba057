"""`slurm-dev-cluster config` and `ssh-config`, used the way a user would: a script in another process
and directory finds the stack through SLURM_SDK_CONFIG alone, and `ssh -F` logs in with the Host block
(no prompt: the host key is pinned)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(
    """
    from slurm import Cluster
    from slurm.diagnostics import node_info

    with Cluster.from_env() as cluster:  # SLURM_SDK_CONFIG only
        info = cluster.submit(node_info).result(timeout=240)
    print(info["host"], info["sdk"])
    """
)


def harness_cli(*args: str, cwd, stack: str) -> subprocess.CompletedProcess:
    """The CLI run from ``cwd`` (elsewhere) for this repository's cluster: the project it serves is named
    by $SLURM_SDK_PROJECT_DIR (by default it is the project around the current directory), the stack by
    $SLURM_SDK_PROJECT: the one this test's worker uses, which under ``-n 2`` is a group's own stack
    (``<project>-alone``...), not the session's."""
    env = {k: v for k, v in os.environ.items() if k != "SLURM_SDK_CONFIG"}
    env["SLURM_SDK_PROJECT_DIR"] = str(Path(__file__).resolve().parents[2])
    env["SLURM_SDK_PROJECT"] = stack
    env["SLURM_SDK_IMPORT_ROOTS"] = "."  # as the ini sets it for pytest: the SDK from its own mount
    return subprocess.run(
        [sys.executable, "-m", "slurm_dev_cluster", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_config_lets_a_script_elsewhere_use_cluster_from_env(slurm_container, sdk_on_cluster, tmp_path):
    run = harness_cli(
        "config", cwd=tmp_path, stack=slurm_container.project
    )  # outside the checkout: harness is installed
    assert run.returncode == 0, run.stderr
    export, _, path = run.stdout.strip().partition("=")
    assert export == "export SLURM_SDK_CONFIG", run.stdout
    config = yaml.safe_load(open(shlex.split(path)[0]))
    assert config["backend"]["port"] == slurm_container.port
    assert config["backend"]["known_host_key"] == slurm_container.host_key

    env = {**os.environ, "SLURM_SDK_CONFIG": shlex.split(path)[0]}
    script = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert script.returncode == 0, script.stderr
    host, sdk = script.stdout.split()
    assert host in slurm_container.containers  # a compute node of this stack ran it
    assert sdk.startswith(f"{sdk_on_cluster}/src/slurm")


def test_config_output_option_writes_there(slurm_container, tmp_path):
    target = tmp_path / "nested" / "dev.yaml"
    run = harness_cli("config", "--output", str(target), cwd=tmp_path, stack=slurm_container.project)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"export SLURM_SDK_CONFIG={target}"
    assert yaml.safe_load(target.read_text())["backend"]["host"] == "127.0.0.1"


def test_ssh_config_block_logs_in_without_prompt(slurm_container, tmp_path):
    ssh = shutil.which("ssh")
    if ssh is None:
        pytest.fail("no `ssh` client on this host: install openssh-client (harness/setup.sh does)")
    run = harness_cli("ssh-config", "--name", "slurm-dev", cwd=tmp_path, stack=slurm_container.project)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Host slurm-dev\n")
    config = tmp_path / "ssh_config"
    config.write_text(run.stdout)
    login = subprocess.run(
        [ssh, "-F", str(config), "-o", "BatchMode=yes", "slurm-dev", "hostname && sinfo -h -o %P"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert login.returncode == 0, login.stderr
    lines = login.stdout.split()
    assert lines[0] == "login"
    assert any(p.rstrip("*") == "debug" for p in lines[1:])


def test_ssh_config_refuses_a_wildcard_alias(slurm_container, tmp_path):
    run = harness_cli("ssh-config", "--name", "slurm*", cwd=tmp_path, stack=slurm_container.project)
    assert run.returncode == 2
    assert "one word without wildcards" in run.stderr
