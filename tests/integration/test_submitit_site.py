"""submitit on a cluster that behaves like a site: node names that resolve, so a 2-node job's ranks meet at
the master_addr submitit gives them by name. The client script runs on the login node as user sdk
(submitit_rendezvous.py)."""

from __future__ import annotations

import json
import uuid

import pytest

from slurm_dev_cluster.kit import PROJECT_MOUNT

from .client_sites import SUBMITIT, client_site

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RENDEZVOUS = f"{PROJECT_MOUNT}/tests/integration/submitit_rendezvous.py"


@pytest.fixture(scope="module")
def submitit_site(login_transport) -> str:
    return client_site(login_transport, "submitit", (SUBMITIT,), "submitit")


def run_client(transport, site: str, script: str, *args: str) -> dict:
    folder = f"{transport.home()}/submitit-{uuid.uuid4().hex[:8]}"
    try:
        run = transport.run(
            f"mkdir -p {folder} && cd {folder} && PYTHONPATH={site} python3 {script} {folder} {' '.join(args)}",
            timeout=900,
        )
    finally:
        transport.run(f"rm -rf {folder}", check=False)
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_two_ranks_meet_at_master_addr_by_node_name(login_transport, submitit_site, compute_nodes):
    report = run_client(login_transport, submitit_site, RENDEZVOUS)
    ranks = sorted(report.get("ranks") or [], key=lambda rank: rank["rank"])
    assert [rank["rank"] for rank in ranks] == [0, 1], report
    first, second = ranks
    # submitit names rank 0's node, and that name is an address on both nodes.
    assert first["master_addr"] == second["master_addr"] == first["node"] in compute_nodes, ranks
    assert first["master_resolves_to"] == second["master_resolves_to"], ranks
    assert first["node"] != second["node"], ranks  # two nodes, so the connection crossed the network
    assert [rank["hostname"] for rank in ranks] == [rank["node"] for rank in ranks], ranks
    # Each rank heard the other's node name over the socket.
    assert first["peer"] == second["node"] and second["peer"] == first["node"], ranks
