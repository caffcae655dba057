"""images/healthcheck.sh's start-up wait, run for real with a stand-in `sacctmgr` (the slurmdbd role's
check) and a socket standing in for slurmdbd's port: until a container has first been healthy one check
keeps polling, afterwards each check tries once.

The stand-in listens on a port of its own (the script's ``SLURM_SDK_SLURMDBD_PORT``), not 6819: tests on
other workers, or in other checkouts on the same host, never see its listener or take its port. The first
wait polls every 10 ms (not 0.1 s) and its bound is a fraction of a second (not whole seconds): the same
loop, with less time slept.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from slurm_dev_cluster.stack import REPO_ROOT

HEALTHCHECK = REPO_ROOT / "images" / "healthcheck.sh"
POLL_SECONDS = "0.01"  # between the first wait's tries (0.1 in a container)


@contextmanager
def slurmdbd_listening() -> Iterator[int]:
    """A port of 127.0.0.1 accepting connections for the span, as slurmdbd's 6819 would."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@contextmanager
def slurmdbd_not_listening() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections for the span (bound, so nothing else takes it, but not
    listening), as 6819 does while slurmdbd starts."""
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        yield reserved.getsockname()[1]


def fake_sacctmgr(directory: Path, failures: int) -> Path:
    """A `sacctmgr` that fails ``failures`` times (slurmdbd not answering yet), then succeeds; each call
    appends a line to ``calls``."""
    calls = directory / "calls"
    script = directory / "sacctmgr"
    # Bash builtins only (mapfile, not wc): each call costs one bash start, however often the check polls.
    script.write_text(
        f'#!/bin/bash\necho x >> "{calls}"\nmapfile -t lines < "{calls}"\n(( ${{#lines[@]}} > {failures} ))\n'
    )
    script.chmod(0o755)
    return calls


def check(directory: Path, port: int, *, first_wait_ms: int = 4000) -> subprocess.CompletedProcess[str]:
    """The slurmdbd role's check, with slurmdbd on ``port``."""
    env = os.environ | {
        "PATH": f"{directory}:{os.environ['PATH']}",
        "SLURM_SDK_HEALTHY_MARK": str(directory / "healthy-once"),
        "SLURM_SDK_HEALTH_FIRST_WAIT_MS": str(first_wait_ms),
        "SLURM_SDK_HEALTH_POLL_SECONDS": POLL_SECONDS,
        "SLURM_SDK_SLURMDBD_PORT": str(port),
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
    with slurmdbd_listening() as port:
        result = check(directory, port)
    assert result.returncode == 0, result.stderr
    assert calls(log) == failures + 1  # healthy on the first success, not at a later tick
    assert (directory / "healthy-once").exists()


def test_once_healthy_a_check_tries_exactly_once(tmp_path):
    log = fake_sacctmgr(tmp_path, failures=0)
    with slurmdbd_listening() as port:
        assert check(tmp_path, port).returncode == 0
        fake_sacctmgr(tmp_path, failures=10**6)  # slurmdbd stops answering
        log.unlink()
        result = check(tmp_path, port)
    assert result.returncode == 1
    assert calls(log) == 1  # no polling in steady state: the exec rate stays one per interval


def test_a_first_check_that_never_succeeds_ends_unhealthy_within_its_bound(tmp_path):
    log = fake_sacctmgr(tmp_path, failures=10**6)
    with slurmdbd_listening() as port:
        result = check(tmp_path, port, first_wait_ms=200)
    assert result.returncode == 1
    assert calls(log) > 1  # it did poll
    assert not (tmp_path / "healthy-once").exists()


def test_reset_forgets_that_the_container_was_healthy(tmp_path):
    fake_sacctmgr(tmp_path, failures=0)
    with slurmdbd_listening() as port:
        assert check(tmp_path, port).returncode == 0
    env = os.environ | {"SLURM_SDK_HEALTHY_MARK": str(tmp_path / "healthy-once")}
    subprocess.run(["bash", str(HEALTHCHECK), "reset"], env=env, check=True, timeout=10)
    assert not (tmp_path / "healthy-once").exists()


def test_nothing_is_forked_to_check_before_the_daemon_listens(tmp_path):
    """Port closed: the start-up wait polls only bash's /dev/tcp, never the real (costly) check."""
    log = fake_sacctmgr(tmp_path, failures=0)
    with slurmdbd_not_listening() as port:
        result = check(tmp_path, port, first_wait_ms=50)  # the bound only has to end the wait
    # Not even at the bound: a Slurm client retries for seconds against a closed port.
    assert calls(log) == 0
    assert result.returncode == 1
    assert "not listening yet" in result.stderr


READY_STATES = ("idle", "mix", "alloc", "comp")
OTHER_STATES = ("down", "drain", "idle*", "unk", "down*", "fail", "maint")


def fake_sinfo(directory: Path, lines: list[str]) -> None:
    """An `sinfo` that prints ``lines`` (as `sinfo -h -N -o %N=%t` would, a line per node and partition)."""
    script = directory / "sinfo"
    # printf, a builtin, rather than cat over a file: one process start per call, not two.
    printed = f"printf '%s\\n' {shlex.join(lines)}" if lines else ""
    script.write_text(f"#!/bin/bash\n{printed}\n")
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
