"""Parsl's SlurmProvider run from the login node as its users run it: a HighThroughputExecutor whose one
block is a Slurm job, and 10 Python apps its workers run on a compute node. The script it runs is
parsl_client.py."""

from __future__ import annotations

import json
import uuid

import pytest

from slurm_dev_cluster.kit import PROJECT_MOUNT

from .client_sites import client_site
from .waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLIENT = f"{PROJECT_MOUNT}/tests/integration/parsl_client.py"


@pytest.fixture(scope="module")
def report(login_transport) -> dict:
    site = client_site(
        login_transport, "parsl", ("parsl",), "parsl"
    )  # its bin/ holds interchange.py, started by name
    folder = f"{login_transport.home()}/parsl-{uuid.uuid4().hex[:8]}"
    try:
        run = login_transport.run(
            f"mkdir -p {folder} && cd {folder} && PATH={site}/bin:$PATH PYTHONPATH={site} python3 {CLIENT} {folder} {site}",
            timeout=900,
        )
    finally:
        login_transport.run(f"rm -rf {folder}", check=False)
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_ten_apps_run_on_a_compute_node_in_one_slurm_block(report, login_transport, compute_nodes):
    assert "error" not in report, report
    assert [result for result, _ in report["apps"]] == [x * x for x in range(10)], report
    assert {node for _, node in report["apps"]} <= set(compute_nodes), report
    (block,) = report["blocks"]

    # The apps ran inside that block: Slurm's record of it names the node they reported. slurmdbd hears of
    # the block's start through slurmctld's agent queue, under load seconds late: until then sacct lists
    # nothing, or the block PENDING on "None assigned".
    def record() -> list[str]:
        return login_transport.run(f"sacct -n -X -P -j {block} -o State,NodeList").stdout.strip().split("|")

    def started() -> list[str] | None:
        row = record()
        return row if len(row) == 2 and row[0] != "PENDING" else None

    state, recorded = wait_until(
        started,
        60,
        lambda: f"sacct recording block {block}'s start; it lists {record()}",
    )
    assert {node for _, node in report["apps"]} == {recorded}, (state, recorded, report)
