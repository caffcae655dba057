"""Fixtures shared by the integration tests (the plugin in harness/ provides the cluster itself)."""

from __future__ import annotations

import pytest

from harness.stack import Connection, Stack


@pytest.fixture(scope="session")
def login_transport(slurm_container: Connection):
    """The SDK's SSH transport to the login node, as user sdk, pinned to the stack's host key."""
    from slurm.backends.ssh import SSHTransport

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
