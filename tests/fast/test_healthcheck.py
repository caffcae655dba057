"""images/healthcheck.sh's start-up wait, run for real with a stand-in `sacctmgr` (the slurmdbd role's
check) and a socket standing in for slurmdbd's port: until a container has first been healthy one check
keeps polling, afterwards each check tries once.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slurm_dev_cluster.stack import REPO_ROOT

HEALTHCHECK = REPO_ROOT / "images" / "healthcheck.sh"
SLURMDBD_PORT = 6819  # what the slurmdbd role's check first waits to accept connections

# One xdist worker for the module: its tests listen on 127.0.0.1:6819 or need it closed, so on two workers at
# once one saw the other's listener (a check "before the daemon listens" found it listening, or a bind
# was refused and the test skipped).
pytestmark = pytest.mark.xdist_group("healthcheck-port-6819")


@contextmanager
def slurmdbd_listening() -> Iterator[None]:
    """127.0.0.1:6819 accepting connections for the span, as slurmdbd's would."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", SLURMDBD_PORT))
        except OSError as exc:
            pytest.skip(
                f"127.0.0.1:{SLURMDBD_PORT} is taken here ({exc}); the test stands in for slurmdbd on it"
            )
        listener.listen(64)
        yield


def fake_sacctmgr(directory: Path, failures: int) -> Path:
    """A `sacctmgr` that fails ``failures`` times (slurmdbd not answering yet), then succeeds; each call
    appends a line to ``calls``."""
    calls = directory / "calls"
    script = directory / "sacctmgr"
    script.write_text(f'#!/bin/bash\necho x >> "{calls}"\n[ "$(wc -l < "{calls}")" -gt {failures} ]\n')
    script.chmod(0o755)
    return calls


def check(directory: Path, *, first_wait: int = 4) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "PATH": f"{directory}:{os.environ['PATH']}",
        "SLURM_SDK_HEALTHY_MARK": str(directory / "healthy-once"),
        "SLURM_SDK_HEALTH_FIRST_WAIT": str(first_wait),
    }
    return subprocess.run(
        ["bash", str(HEALTHCHECK), "slurmdbd"], env=env, capture_output=True, text=True, timeout=30
    )


def calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@settings(max_examples=8, deadline=None)
@given(failures=st.integers(min_value=0, max_value=6))
def test_the_first_check_polls_until_ready_then_marks_the_container(tmp_path_factory, failures):
    directory = tmp_path_factory.mktemp("health")
    log = fake_sacctmgr(directory, failures)
    with slurmdbd_listening():
        result = check(directory)
    assert result.returncode == 0, result.stderr
    assert calls(log) == failures + 1  # healthy on the first success, not at a later tick
    assert (directory / "healthy-once").exists()


def test_once_healthy_a_check_tries_exactly_once(tmp_path):
    log = fake_sacctmgr(tmp_path, failures=0)
    with slurmdbd_listening():
        assert check(tmp_path).returncode == 0
        fake_sacctmgr(tmp_path, failures=10**6)  # slurmdbd stops answering
        log.unlink()
        result = check(tmp_path)
    assert result.returncode == 1
    assert calls(log) == 1  # no polling in steady state: the exec rate stays one per interval


def test_a_first_check_that_never_succeeds_ends_unhealthy_within_its_bound(tmp_path):
    log = fake_sacctmgr(tmp_path, failures=10**6)
    with slurmdbd_listening():
        result = check(tmp_path, first_wait=1)
    assert result.returncode == 1
    assert calls(log) > 1  # it did poll
    assert not (tmp_path / "healthy-once").exists()


def test_reset_forgets_that_the_container_was_healthy(tmp_path):
    fake_sacctmgr(tmp_path, failures=0)
    with slurmdbd_listening():
        assert check(tmp_path).returncode == 0
    env = os.environ | {"SLURM_SDK_HEALTHY_MARK": str(tmp_path / "healthy-once")}
    subprocess.run(["bash", str(HEALTHCHECK), "reset"], env=env, check=True, timeout=10)
    assert not (tmp_path / "healthy-once").exists()


def test_nothing_is_forked_to_check_before_the_daemon_listens(tmp_path):
    """Port closed: the start-up wait polls only bash's /dev/tcp, never the real (costly) check."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", SLURMDBD_PORT)) == 0:
            pytest.skip(f"something listens on 127.0.0.1:{SLURMDBD_PORT} here")
    log = fake_sacctmgr(tmp_path, failures=0)
    result = check(tmp_path, first_wait=1)
    # Not even at the bound: a Slurm client retries for seconds against a closed port.
    assert calls(log) == 0
    assert result.returncode == 1
    assert "not listening yet" in result.stderr


READY_STATES = ("idle", "mix", "alloc", "comp")
OTHER_STATES = ("down", "drain", "idle*", "unk", "down*", "fail", "maint")


def fake_sinfo(directory: Path, lines: list[str]) -> None:
    """An `sinfo` that prints ``lines`` (as `sinfo -h -N -o %N=%t` would, a line per node and partition)."""
    (directory / "sinfo.out").write_text("".join(f"{line}\n" for line in lines))
    script = directory / "sinfo"
    script.write_text(f'#!/bin/bash\ncat "{directory / "sinfo.out"}"\n')
    script.chmod(0o755)


def healthcheck(directory: Path, *args: str, env: dict[str, str] | None = None) -> str:
    environment = os.environ | {"PATH": f"{directory}:{os.environ['PATH']}"} | (env or {})
    return subprocess.run(
        ["bash", str(HEALTHCHECK), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


@settings(max_examples=30, deadline=None)
@given(
    states=st.lists(st.sampled_from((*READY_STATES, *OTHER_STATES, None)), min_size=1, max_size=5),
    partitions=st.integers(min_value=1, max_value=2),
)
def test_unready_nodes_names_every_node_not_in_a_ready_state(tmp_path_factory, states, partitions):
    """The harness's READY_CHECK and the slurmd role both take node readiness from here (None: a node Slurm
    does not list yet)."""
    directory = tmp_path_factory.mktemp("sinfo")
    nodes = [f"c{n}" for n in range(1, len(states) + 1)]
    listed = [f"{node}={state}" for node, state in zip(nodes, states, strict=True) if state is not None]
    fake_sinfo(directory, listed * partitions)
    expected = "".join(
        f"{node}={state or 'none'} "
        for node, state in zip(nodes, states, strict=True)
        if state not in READY_STATES
    )
    assert healthcheck(directory, "unready-nodes", ",".join(nodes)) == expected


def test_the_cluster_name_is_read_from_slurm_conf(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("SlurmctldHost=slurmctld\nClusterName=elsewhere\nSlurmUser=slurm\n")
    assert healthcheck(tmp_path, "cluster-name", env={"SLURM_SDK_SLURM_CONF": str(conf)}) == "elsewhere\n"


def test_the_image_reads_the_cluster_name_from_its_own_slurm_conf(tmp_path):
    """The default is the slurm.conf the image installs (images/slurm/ -> /etc/slurm/), whose name the
    image build and slurmdbd's database use."""
    installed = REPO_ROOT / "images" / "slurm" / "slurm.conf"
    env = {"SLURM_SDK_SLURM_CONF": str(installed)}
    name = [
        line.split("=", 1)[1]
        for line in installed.read_text().splitlines()
        if line.startswith("ClusterName=")
    ]
    assert healthcheck(tmp_path, "cluster-name", env=env) == f"{name[0]}\n"
