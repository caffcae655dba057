"""Tighter by default, as a site is: what the SDK writes is private to the user, the login node forbids
SSH forwarding, and a job's leftover processes die with it."""

from __future__ import annotations

import base64
import shlex
import sys
import time
import uuid

import paramiko
import pytest

from slurm import Cluster
from slurm_dev_cluster.pytest_plugin import ssh_backend
from slurm_dev_cluster.stack import REPO_ROOT

from . import leftover_jobs

sys.path.insert(0, str(REPO_ROOT / "tests/sample_project/src"))  # as its developer imports it
import sample_app

pytestmark = pytest.mark.integration
TIMEOUT = 600
#: A second Unix user on the login node, besides the job user sdk.
OTHER_USER = "sdkpeer"
SAMPLE = REPO_ROOT / "tests/sample_project"


def _as_root(stack, script: str) -> str:
    return stack.exec("login", ["sh", "-c", script])


@pytest.fixture
def shared_root(slurm_stack, egress_open):
    """A fresh directory in /scratch (mode 1777: every user may look in): nothing above what the SDK writes
    there hides it, so each directory and file must be private by itself."""
    root = f"/scratch/private-{uuid.uuid4().hex[:10]}"
    yield root
    _as_root(slurm_stack, f"rm -rf {shlex.quote(root)}")


def test_another_user_reads_nothing_the_sdk_wrote(slurm_container, slurm_stack, shared_root):
    """A job with synced sources and a venv (sync packaging of the sample project), its job directory,
    result, logs and records, all under /scratch: no group or other bit anywhere, and another user reads
    not one file of it. ``~/.slurm-sdk`` as an older SDK left it (0755) is 0700 again."""
    _as_root(slurm_stack, "runuser -u sdk -- mkdir -p /home/sdk/.slurm-sdk && chmod 755 /home/sdk/.slurm-sdk")
    packaging = {
        "type": "sync",
        "source_dir": str(SAMPLE),
        "cache_root": f"{shared_root}/cache",
        "install_from": "wheelhouse",
    }
    with Cluster(
        backend=ssh_backend(slurm_container), packaging=packaging, job_root=f"{shared_root}/jobs"
    ) as cluster:
        seen = cluster.submit(sample_app.report, 1234567).result(timeout=TIMEOUT)
        assert seen["words"] == "1.2 million"
        env = cluster.packaging.env
    assert env and env.startswith(f"{shared_root}/cache/envs/")
    q = shlex.quote(shared_root)
    # Everything is there: the synced tree, the venv, a job directory with its script, result and logs.
    kinds = _as_root(
        slurm_stack,
        f"cd {q} && ls -d cache/src/*/src/sample_app cache/envs/*/bin/python jobs/records "
        "jobs/*/job.sh jobs/*/result-0.pkl jobs/*/slurm-*.out | sed 's|/.*||' | sort -u",
    ).split()
    assert kinds == ["cache", "jobs"]
    loose = _as_root(slurm_stack, f"find {q}/* ! -type l -perm /077 -printf '%m %p\\n' | head -20")
    assert loose == "", f"readable by others:\n{loose}"
    count = int(_as_root(slurm_stack, f"find {q}/* ! -type l | wc -l"))
    assert count > 100  # a venv, a synced tree and a job: not an empty tree
    _as_root(slurm_stack, f"id -u {OTHER_USER} >/dev/null 2>&1 || useradd -M -s /bin/sh {OTHER_USER}")
    # As root, every file; each one read as the other user (and the two top directories listed).
    readable = _as_root(
        slurm_stack,
        f"find {q} ! -type d ! -type l | while read -r f; do "
        f'runuser -u {OTHER_USER} -- head -c1 "$f" >/dev/null 2>&1 && echo "$f"; done; '
        f"for d in {q}/cache {q}/jobs; do runuser -u {OTHER_USER} -- ls $d >/dev/null 2>&1 && echo $d; done; true",
    )
    assert readable == "", f"{OTHER_USER} could read:\n{readable}"
    assert _as_root(slurm_stack, "stat -c %a /home/sdk/.slurm-sdk").strip() == "700"


def test_the_login_node_forbids_ssh_forwarding(slurm_container):
    """The job user's key opens a shell, but no tunnel: neither to slurmctld's port nor back from login."""
    client = paramiko.SSHClient()
    client.get_host_keys().add(
        f"[{slurm_container.host}]:{slurm_container.port}",
        *_key(slurm_container.host_key),
    )
    client.connect(
        slurm_container.host,
        slurm_container.port,
        username=slurm_container.user,
        key_filename=str(slurm_container.key_path),
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
    )
    try:
        transport = client.get_transport()
        with pytest.raises(paramiko.ChannelException) as refused:
            transport.open_channel("direct-tcpip", ("slurmctld", 6817), ("127.0.0.1", 0), timeout=30)
        assert refused.value.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        with pytest.raises(paramiko.SSHException):
            transport.request_port_forward("127.0.0.1", 0)
        _, out, _ = client.exec_command("echo shell works", timeout=30)
        assert out.read() == b"shell works\n"  # the login itself still works
    finally:
        client.close()


def test_a_daemonizing_task_leaves_no_process_on_its_node(slurm_cluster, slurm_stack):
    marker = uuid.uuid4().hex
    node, daemon = slurm_cluster.submit(leftover_jobs.leave_a_daemon, marker).result(timeout=TIMEOUT)
    # The job ends once the runner has written the result; the epilog runs then. Poll with a bound.
    find = (  # as root: every process whose environment holds the marker
        f"for e in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $e 2>/dev/null "
        f"| grep -qxF LEFTOVER={marker} && echo $e; done; true"
    )
    deadline = time.monotonic() + 60
    while left := slurm_stack.exec(node, ["sh", "-c", find]).split():
        assert time.monotonic() < deadline, (
            f"still running on {node} a minute after the job: {left} (pid {daemon})"
        )
        time.sleep(0.5)


def _key(line: str) -> tuple[str, paramiko.PKey]:
    kind, data = line.split()[:2]
    return kind, paramiko.PKey.from_type_string(kind, base64.b64decode(data))
