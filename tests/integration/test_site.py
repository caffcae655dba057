"""The dev cluster as a site looks to its users: nodes known by name, accounts and QOS with their
enforcement, partitions with time limits, under the dev and production defaults alike."""

from __future__ import annotations

import uuid

import pytest

from slurm_dev_cluster.stack import accounting_enabled

from .defaults_modes import MODES
from .waiting import wait_until

pytestmark = pytest.mark.integration
#: Every container that runs Slurm's config (slurmdbd: with accounting).
OTHER_ROLES = ("login", "slurmctld")


def _needs_accounting() -> None:
    if not accounting_enabled():
        pytest.skip("SLURM_SDK_ACCOUNTING=0: no slurmdbd, so no accounts or QOS")


def test_each_node_is_known_by_its_name_everywhere(slurm_stack):
    """`hostname` in cN is cN, and cN resolves to that node from every container of the stack."""
    nodes = slurm_stack.topology.node_names
    addresses = {}
    for node in nodes:
        assert slurm_stack.exec(node, ["hostname"]).strip() == node
        assert slurm_stack.exec(node, ["hostname", "-s"]).strip() == node
        addresses[node] = slurm_stack.exec(node, ["hostname", "-i"]).split()[0]
    containers = (*OTHER_ROLES, *nodes, *(("slurmdbd",) if accounting_enabled() else ()))
    for container in containers:
        for node in nodes:
            resolved = slurm_stack.exec(container, ["getent", "hosts", node]).split()
            assert resolved[0] == addresses[node], (container, node, resolved)


def test_a_jobs_node_list_names_are_addresses(login_transport, slurm_stack):
    """A 2-node job: each node's `hostname` is its SLURMD_NODENAME, and a process on the last node of the
    job's node list connects by name to one listening on the first (torch's MASTER_ADDR, MPI hostfiles)."""
    if slurm_stack.topology.nodes < 2:
        pytest.skip("needs 2 nodes")
    name = f"site-nodes-{uuid.uuid4().hex[:8]}"
    script, output = f"/home/sdk/{name}.sh", f"/home/sdk/{name}.out"
    login_transport.write_bytes(script, NODE_LIST_JOB.encode(), mode=0o755)
    try:
        login_transport.run(f"sbatch --wait -N2 --ntasks-per-node=1 -o {output} {script}", timeout=300)
        text = login_transport.read_bytes(output).decode()
    finally:
        login_transport.run(f"rm -f {script} {output}", check=False)
    names = [line.removeprefix("node ").split("=") for line in text.splitlines() if line.startswith("node ")]
    assert len(names) == 2 and len({node for node, _ in names}) == 2, text  # one line from each node
    assert all(node == host and node in slurm_stack.topology.node_names for node, host in names), text
    assert "accepted by-name" in text, text


#: The batch script of the test above: a listener on the first node, a client on the last, by name.
NODE_LIST_JOB = """#!/bin/bash
first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -1)
last=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | tail -1)
srun -N2 -n2 bash -c 'echo "node $SLURMD_NODENAME=$(hostname)"'
srun -N1 -n1 -w "$first" python3 -c '
import socket
server = socket.create_server(("", 29123))
server.settimeout(60)
conn, _ = server.accept()
print("accepted", conn.recv(16).decode())' &
for _ in $(seq 300); do
  srun -N1 -n1 -w "$last" python3 -c '
import socket, sys
socket.create_connection((sys.argv[1], 29123), 5).sendall(b"by-name")' "$first" 2>/dev/null && break
  sleep 0.2
done
wait
"""


@pytest.mark.parametrize("mode", MODES)
def test_the_job_user_has_accounts_and_qos_that_are_enforced(login_transport, faults, mode):
    _needs_accounting()
    run = login_transport.run
    associations = run(
        "sacctmgr -n -P show association user=sdk format=account,qos,defaultqos"
    ).stdout.split()
    assert sorted(associations) == ["physics|high,low,normal|normal", "research|high,low,normal|normal"]
    assert run("sacctmgr -n -P show user sdk format=defaultaccount").stdout.strip() == "research"
    config = run("scontrol show config").stdout
    assert "associations,limits,qos,safe" in config and "preempt/qos" in config

    # A job runs under the default account and QOS unless it asks for the other ones.
    # (slurmdbd hears of a job through slurmctld's agent queue, under load seconds after `sbatch --wait`
    # returns: until then sacct lists nothing for it.)
    def charged(job_id: str) -> list[str]:
        return wait_until(
            lambda: run(f"sacct -n -X -P -j {job_id} -o Account,QOS").stdout.split(),
            60,
            f"sacct listing job {job_id}",
        )

    job = run("sbatch --wait --parsable -o /dev/null --wrap true").stdout.strip()
    assert charged(job) == ["research|normal"]
    other = run("sbatch --wait --parsable -A physics --qos=low -o /dev/null --wrap true").stdout.strip()
    assert charged(other) == ["physics|low"]
    # What the user may not use is refused at submit, with Slurm's reason.
    for option, reason in (("-A nosuch", "Invalid account"), ("--qos=nosuch", "Invalid qos")):
        refused = run(f"sbatch {option} -o /dev/null --wrap true", check=False)
        assert refused.returncode != 0 and reason in refused.stderr, refused.stderr


@pytest.mark.parametrize("mode", MODES)
def test_partitions_have_a_default_and_a_maximum_time(login_transport, faults, mode):
    run = login_transport.run
    job = run("sbatch --parsable --hold -o /dev/null --wrap true").stdout.strip()
    try:
        assert "TimeLimit=01:00:00" in run(f"scontrol show job {job}").stdout
    finally:
        run(f"scancel {job}", check=False)
    # Over MaxTime: accepted (EnforcePartLimits=NO, Slurm's default) but never started: it pends for good.
    over = run("sbatch --parsable --time=2-00:00:00 -o /dev/null --wrap true").stdout.strip()
    try:
        wait_until(
            lambda: (
                run(f"squeue -h -j {over} -o '%T %r'").stdout.split() == ["PENDING", "PartitionTimeLimit"]
            ),
            60,
            f"job {over} pending for PartitionTimeLimit",
        )
    finally:
        run(f"scancel {over}", check=False)
