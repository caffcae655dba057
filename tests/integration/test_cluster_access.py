"""Who holds the cluster while what runs: a fixture wider than one test (here module-scoped, as a client
set up once for several tests would be) runs under the shared cluster lock, so a fault test on another
xdist worker cannot drop its SSH session or restart a node in the middle of it. Read from /proc/locks: the
lock this process holds, not a flag the plugin sets."""

from __future__ import annotations

import os

import pytest

from slurm_dev_cluster.locks import ClusterLock

pytestmark = pytest.mark.integration


def lock_modes_held_here(path) -> list[str]:
    """The flock modes (READ, WRITE) this process holds on ``path``, as the kernel lists them."""
    inode = os.stat(path).st_ino
    modes = []
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if "->" in fields:  # a waiter, not a holder
                continue
            kind, mode, pid, device_inode = fields[1], fields[3], fields[4], fields[5]
            if kind == "FLOCK" and int(pid) == os.getpid() and int(device_inode.rsplit(":", 1)[1]) == inode:
                modes.append(mode)
    return modes


@pytest.fixture(scope="module")
def held_while_the_module_fixture_ran(slurm_stack, login_transport) -> list[str]:
    login_transport.run("true")  # cluster work, as such a fixture does
    return lock_modes_held_here(ClusterLock(slurm_stack.state_dir).path)


def test_a_module_fixture_is_set_up_under_the_shared_cluster_lock(held_while_the_module_fixture_ran):
    assert held_while_the_module_fixture_ran == ["READ"]


def test_a_cluster_test_itself_holds_the_shared_lock(slurm_stack):
    assert lock_modes_held_here(ClusterLock(slurm_stack.state_dir).path) == ["READ"]
