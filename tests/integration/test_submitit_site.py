"""submitit on a cluster that behaves like a site: node names that resolve, so a 2-node job's ranks meet at
the master_addr submitit gives them by name (submitit_rendezvous.py), and a real preemption that submitit's
Checkpointable survives (submitit_preempted.py). The client scripts run on the login node as user sdk."""

from __future__ import annotations

import json
import uuid

import pytest

from slurm_dev_cluster.kit import PROJECT_MOUNT
from slurm_dev_cluster.stack import accounting_enabled

from .client_sites import SUBMITIT, client_site
from .defaults_modes import MODES
from .waiting import accounted, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RENDEZVOUS = f"{PROJECT_MOUNT}/tests/integration/submitit_rendezvous.py"
PREEMPTED = f"{PROJECT_MOUNT}/tests/integration/submitit_preempted.py"


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


@pytest.mark.parametrize("mode", MODES)
def test_a_checkpointable_preempted_by_a_high_job_resumes_from_its_checkpoint(
    login_transport, submitit_site, faults, mode
):
    """A real preemption (QOS high over low), not submitit's test hook: the site sends submitit's own USR2 at
    preemption (PreemptParameters=send_user_signal, QOS low's GraceTime), submitit pickles the object and
    requeues the job itself (`scontrol requeue`), and the rerun resumes with the pickled state."""
    if not accounting_enabled():
        pytest.skip("SLURM_SDK_ACCOUNTING=0: no slurmdbd, so no QOS and no preemption")
    # Slurm runs the job once more after the run that returned the result (below). Under the dev defaults the
    # client waits for that run's end; under the production ones, whose hold before it is 120 s, it cancels
    # the job once it is seen held for it.
    until = "held" if mode == "production" else "end"
    report = run_client(login_transport, submitit_site, PREEMPTED, until)
    assert "error" not in report, report
    # The second run started from the checkpoint (starts counted on from 1), after a requeue.
    assert report["result"]["starts"] == 2 and int(report["result"]["restart_count"]) >= 1, report
    run = login_transport.run

    # The client returns once squeue has forgotten the job (or it was cancelled); its end reaches slurmdbd a
    # moment later, so sacct may still say RUNNING for the last run (or the high job) at first.
    def history() -> list[str]:
        return accounted(run, report["job_id"], every_run=True)

    def high_state() -> list[str]:
        return accounted(run, report["high"], "State,QOS")

    # Held for the extra run (below), the job was cancelled there; not held, it ran to its end.
    last = "CANCELLED" if until == "held" and report["held"] else "COMPLETED"
    runs = wait_until(
        lambda: (listed := history())[-1:] == [last] and listed,
        60,
        lambda: f"sacct's runs of the job: {history()}",
    )
    # submitit requeued itself within the grace time, before Slurm's own requeue at its end: REQUEUED.
    # Slurm 24.11 then requeues the run that returned once more (slurmctld: "requeue ... per user/system
    # request"), recorded PREEMPTED; the run after it completes (or, held for it, the job is cancelled).
    assert runs[0] == "REQUEUED", runs
    assert set(runs[1:-1]) <= {"PREEMPTED"}, runs
    if last == "CANCELLED":
        assert len(runs) >= 3 and report["held"].startswith("PENDING"), (runs, report["held"])
    wait_until(lambda: high_state() == ["COMPLETED|high"], 60, lambda: f"sacct: the high job {high_state()}")
