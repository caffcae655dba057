"""Fixtures shared by the integration tests (the plugin in harness/ provides the cluster itself)."""

from __future__ import annotations

import uuid

import pytest

from slurm_dev_cluster.stack import Connection, Stack


@pytest.fixture(scope="session")
def login_transport(slurm_container: Connection):
    """The SDK's SSH transport to the login node, as user sdk, pinned to the stack's host key."""
    from slurm.transports.ssh import SSHTransport

    transport = SSHTransport(
        slurm_container.host,
        port=slurm_container.port,
        user=slurm_container.user,
        key_filename=str(slurm_container.key_path),
        known_host_key=slurm_container.host_key,
    )
    yield transport
    transport.close()


@pytest.fixture(scope="session")
def compute_nodes(slurm_stack: Stack) -> tuple[str, ...]:
    """The stack's compute node names, c1..cN (its topology: SLURM_SDK_NODES / `harness up --nodes`)."""
    return slurm_stack.topology.node_names


class Gate:
    """A file on the shared /home that a gated job waits for; ``open()`` creates it."""

    def __init__(self, transport) -> None:
        self.transport, self.path = transport, f"{transport.home()}/gate-{uuid.uuid4().hex}"

    def open(self) -> None:
        self.transport.write_bytes(self.path, b"go\n")


@pytest.fixture
def gate(login_transport):
    gate = Gate(login_transport)
    yield gate
    login_transport.run(f"rm -f {gate.path}", check=False)
