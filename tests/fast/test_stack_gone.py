"""A client whose dev-cluster stack was stopped under it is told so, not that a key file is missing.

The kit leaves a note beside the key it removes (``<key>.removed``); the SDK quotes it when it finds its key
gone. Real sshd (the SSH transport tests' server), a ``Stack`` whose Docker is faked: ``down`` does what it
does to the state directory, and the dropped connection is what removed containers cause."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from slurm.errors import SSHError
from slurm.transports.ssh import KEY_REMOVED_SUFFIX, SSHTransport
from slurm_dev_cluster.stack import REPO_ROOT, Stack

from .test_ssh_transport import SSHD_, pytestmark  # noqa: F401 - skipped where sshd is missing


@pytest.fixture
def stack(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    stack = Stack(REPO_ROOT, project="hx-gone", client_call=["/nonexistent/docker"], say=lambda _: None)
    stack.state_dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def fake_docker(seconds, what):
        yield SimpleNamespace(compose=SimpleNamespace(down=lambda **_: iter(())))

    monkeypatch.setattr(stack.compose, "bounded", fake_docker)
    monkeypatch.setattr(stack.compose, "listed_services", lambda docker: [])  # no node beyond the profile
    monkeypatch.setattr(stack, "_restore_egress", lambda: None)
    return stack


def connected_client(sshd, stack) -> SSHTransport:
    shutil.copy(sshd.client_key, stack.key_path)
    stack.key_path.chmod(0o600)
    client = SSHTransport("127.0.0.1", sshd.port, sshd.user, str(stack.key_path), sshd.host_pub)
    assert client.run("echo hi").stdout == "hi\n"
    return client


def test_a_client_of_a_stopped_stack_hears_that_and_by_what(sshd, stack):
    client = connected_client(sshd, stack)
    stack.down(session="cli", by="`slurm-dev-cluster down --force`")
    assert not stack.key_path.exists()
    client._client.close()  # the login container went: the connection dropped
    with pytest.raises(SSHError) as info:
        client.run("echo hi")
    message = str(info.value)
    assert "the dev cluster hx-gone was stopped by `slurm-dev-cluster down --force`" in message
    assert "slurm-dev-cluster up" in message and "does not exist" not in message
    assert not info.value.transient  # a wait ends now, not after the outage limit
    client.close()


def test_a_pytest_session_stopping_the_stack_is_named(sshd, stack):
    client = connected_client(sshd, stack)
    stack.down(session="abc123")
    client._client.close()
    with pytest.raises(SSHError, match="was stopped by session abc123"):
        client.run("true")
    client.close()


def test_a_key_removed_without_a_note_is_still_told_apart_from_one_never_there(sshd, stack, tmp_path):
    client = connected_client(sshd, stack)
    stack.key_path.unlink()
    client._client.close()
    with pytest.raises(SSHError, match="was removed after this client connected"):
        client.run("true")
    client.close()
    never = SSHTransport("127.0.0.1", sshd.port, sshd.user, str(tmp_path / "nokey"), sshd.host_pub)
    with pytest.raises(SSHError, match="nokey does not exist"):
        never.run("true")


def test_the_note_is_where_the_sdk_looks(stack):
    assert str(stack.key_removed_note) == str(stack.key_path) + KEY_REMOVED_SUFFIX
