"""Several Slurm clusters on one slurmdbd, the opt-in shape (`slurm-dev-cluster up --clusters 2`,
images/multicluster.compose.yaml): one client submits to the login node's own cluster `dev` and, with
``slurm_cluster="two"``, to cluster `two`; jobs, a map, a dependency and a cancel each land on the cluster
asked for, and ``sacct -M all`` lists both. On a stack with one cluster (the default) these tests skip,
saying so."""

from __future__ import annotations

import pytest

from slurm import Cluster, JobState
from slurm.backends.slurm import SSHBackend
from slurm.dataflow import federated_job_id
from slurm.errors import SubmitError

from . import jobs
from .waiting import wait_until

pytestmark = pytest.mark.integration
TWO = "two"  # images/multicluster.compose.yaml: controller slurmctld-two, node d1


@pytest.fixture
def cluster_two(login_transport, slurm_container, slurm_cluster):
    """A Cluster on the same login node and packaging as ``slurm_cluster``, submitting to cluster two."""
    # A cluster whose controller is registered now (a stack shrunk to one cluster leaves `two` in slurmdbd).
    listed = login_transport.run("sacctmgr -n -P show cluster format=cluster,controlhost").stdout.split()
    known = [name for name, _, host in (line.partition("|") for line in listed) if host]
    if TWO not in known:
        pytest.skip(
            f"this stack has one Slurm cluster ({', '.join(known)}), the default; start it with a second "
            "one: `slurm-dev-cluster up --clusters 2` (or SLURM_SDK_CLUSTERS=2)"
        )
    cluster = Cluster(backend(slurm_container, slurm_cluster=TWO), packaging=slurm_cluster.packaging)
    yield cluster
    cluster.close()


def backend(connection, **options) -> SSHBackend:
    """An SSH backend to the stack's login node with these options (``slurm_cluster``, ``federation``)."""
    return SSHBackend(
        connection.host,
        connection.port,
        connection.user,
        key_filename=str(connection.key_path),
        known_host_key=connection.host_key,
        **options,
    )


def accounted(login_transport, *job_ids: str) -> set[tuple[str, str, str]]:
    """(cluster, job id, state) of these jobs on every cluster, as `sacct -M all` lists them."""
    out = login_transport.run(f"sacct -M all -X -n -P -o Cluster,JobID,State -j {','.join(job_ids)}").stdout
    return {tuple(line.split("|")[:3]) for line in out.splitlines() if line.strip()}  # type: ignore[misc]


def test_one_client_runs_a_job_on_each_cluster_and_sacct_all_lists_both(
    slurm_cluster, cluster_two, login_transport, compute_nodes
):
    here, there = slurm_cluster.submit(jobs.where, "dev"), cluster_two.submit(jobs.where, TWO)
    assert there.result(timeout=300)[:2] == (TWO, "d1")
    value, node, _ = here.result(timeout=300)
    assert value == "dev" and node in compute_nodes
    # A job's end reaches slurmdbd a moment after its result file: sacct may still say RUNNING.
    expected = {("dev", here.job_id, "COMPLETED"), (TWO, there.job_id, "COMPLETED")}
    wait_until(
        lambda: expected <= accounted(login_transport, here.job_id, there.job_id),
        60,
        lambda: (
            f"sacct -M all listing {sorted(expected)}; it lists "
            f"{sorted(accounted(login_transport, here.job_id, there.job_id))}"
        ),
    )


def test_a_map_and_a_dependency_on_the_second_cluster(cluster_two):
    mapped = cluster_two.map(jobs.where, range(3))
    assert {node for _, node, _ in mapped.results(timeout=300)} == {"d1"}
    first = cluster_two.submit(jobs.double, 4)
    second = cluster_two.submit(jobs.double.after(first), 5)
    assert (first.result(timeout=300), second.result(timeout=300)) == (8, 10)


def test_a_cancel_reaches_the_second_cluster(cluster_two, login_transport):
    job = cluster_two.submit(jobs.sleep_then_return, 240)
    job.cancel()
    assert job.wait(timeout=120) is JobState.CANCELLED
    wait_until(
        lambda: [
            row
            for row in accounted(login_transport, job.job_id)
            if row[0] == TWO and row[2].startswith("CANCELLED")
        ],
        60,
        lambda: (
            f"sacct -M all saying job {job.job_id} on {TWO} was CANCELLED; it lists "
            f"{sorted(accounted(login_transport, job.job_id))}"
        ),
    )


def test_a_dependency_across_clusters_is_refused_before_slurm_sees_it(slurm_cluster, cluster_two):
    parent = slurm_cluster.submit(jobs.double, 1)
    if federated_job_id(parent.job_id):
        pytest.skip("the clusters form a federation, where Slurm keeps dependencies across clusters")
    with pytest.raises(SubmitError, match="no dependencies across clusters outside a federation") as refused:
        cluster_two.submit(jobs.double.after(parent), 2)
    assert "the login node's own Slurm cluster" in str(refused.value) and "'two'" in str(refused.value)
    assert parent.result(timeout=300) == 2


def test_naming_the_login_nodes_own_cluster_depends_on_its_unnamed_jobs(
    slurm_cluster, slurm_container, cluster_two
):
    """``slurm_cluster="dev"`` is the cluster a Cluster without one submits to (the login node's controller
    says ``ClusterName=dev``): a dependency between their jobs is Slurm's own, not refused."""
    named = Cluster(backend(slurm_container, slurm_cluster="dev"), packaging=slurm_cluster.packaging)
    try:
        parent = slurm_cluster.submit(jobs.double, 3)
        child = named.submit(jobs.double.after(parent), 4)
        passed_on = named.submit(jobs.double, parent)
        assert (child.result(timeout=300), passed_on.result(timeout=300)) == (8, 12)
    finally:
        named.close()


@pytest.fixture
def federation(cluster_two, login_transport):
    if "Sibling:" not in login_transport.run("scontrol show federation").stdout:
        pytest.skip(
            "the clusters form no federation (the default); start the stack with SLURM_SDK_FEDERATION=1 "
            "(`slurm-dev-cluster down`, then `SLURM_SDK_FEDERATION=1 slurm-dev-cluster up --clusters 2`)"
        )


def test_a_federated_job_sent_to_the_sibling_ends_with_the_siblings_state(
    federation, slurm_cluster, slurm_container
):
    """Submitted to dev's controller without -M and steered to two: dev's record of it says REVOKED, two's
    the truth; with ``federation=True`` the wait reads two's. A dependency on it from dev is Slurm's to keep."""
    steered = Cluster(
        backend(slurm_container, federation=True, sbatch_extra=["--cluster-constraint=two"]),
        packaging=slurm_cluster.packaging,
    )
    on_dev = Cluster(
        backend(slurm_container, federation=True, sbatch_extra=["--cluster-constraint=dev"]),
        packaging=slurm_cluster.packaging,
    )
    try:
        job = steered.submit(jobs.where, "federated")
        follower = on_dev.submit(jobs.double.after(job), 21)
        assert job.wait(timeout=300) is JobState.COMPLETED
        assert job.result()[:2] == ("federated", "d1")
        assert int(job.job_id) >> 26 == 1  # a federated id names the submitting cluster (dev), not two
        assert follower.result(timeout=300) == 42
    finally:
        steered.close()
        on_dev.close()
