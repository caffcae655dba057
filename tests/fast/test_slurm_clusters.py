"""SlurmBackend targeting one named cluster of several on a slurmdbd (``slurm_cluster``): every command
gets ``--clusters=<name>``, and Slurm's real ``-M`` output (tests/fast/golden/multicluster, captured on
the dev cluster's second cluster) parses to the same statuses. Dependencies across clusters are refused
at submit, naming both clusters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm import Cluster, task
from slurm.backends.base import JobState
from slurm.backends.local import LocalCommandBackend
from slurm.backends.slurm import SlurmBackend, without_cluster_headers
from slurm.errors import ConfigError, SubmitError
from slurm.job import Job
from slurm.limits import limits_query
from slurm.transports.host import HostTransport
from tests.fast.scripted_slurm import run_on_node, scripted_cluster
from tests.fast.test_slurm_backend import FakeSlurm

GOLDEN = Path(__file__).parent / "golden" / "multicluster"
LIVE = {"6_0": JobState.RUNNING, "6_1": JobState.RUNNING, "8": JobState.PENDING}


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.txt").read_text()


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakeSlurm:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return FakeSlurm(bin_dir)


@pytest.fixture
def two(fake) -> SlurmBackend:
    return SlurmBackend(HostTransport(), slurm_cluster="two", sbatch_extra=["--qos=high"])


def test_sbatch_targets_the_cluster_and_its_answer_gives_the_id(two, fake):
    fake.respond("sbatch", out=golden("sbatch"))
    assert two.submit("/jobs/a b/job.sh", array="0-1", dependencies=["5"]) == "6"
    assert fake.argv("sbatch") == [
        "--clusters=two",
        "--parsable",
        "--qos=high",
        "--array=0-1",
        "--dependency=afterok:5",
        "/jobs/a b/job.sh",
    ]


@pytest.mark.parametrize("squeue", ["squeue-live", "squeue-live-header"])  # the CLUSTER line, were it printed
def test_live_statuses_ask_the_cluster_and_parse_its_real_output(two, fake, squeue):
    fake.respond("sacct", out=golden("sacct-live"))
    fake.respond("squeue", out=golden(squeue))  # squeue confirms what sacct calls live
    assert {job_id: status.state for job_id, status in two.statuses(list(LIVE)).items()} == LIVE
    assert fake.argv("sacct")[:2] == ["--clusters=two", "-X"]
    assert fake.argv("squeue")[0] == "--clusters=two"


def test_ended_statuses_come_from_the_clusters_sacct_alone(two, fake):
    fake.respond("sacct", out=golden("sacct-cancelled"))
    states = {job_id: status.state for job_id, status in two.statuses(list(LIVE)).items()}
    assert states == dict.fromkeys(LIVE, JobState.CANCELLED)
    assert fake.calls() == ["sacct"]


def test_a_pending_reason_comes_from_the_clusters_squeue(two, fake):
    fake.respond("sacct", out=golden("sacct-cancelled"))
    fake.respond("squeue", out=golden("squeue-cancelled"))
    assert two.statuses(["8"], reasons_for=["8"])["8"].reason == "DependencyNeverSatisfied"


def test_cancel_and_the_queue_count_target_the_cluster(two, fake):
    two.cancel("6")
    assert fake.argv("scancel") == ["--clusters=two", "6"]
    fake.respond("squeue", out="CLUSTER: two\n8\n6_0\n6_1\n")
    assert two.queued_jobs() == 3  # the CLUSTER line is no job


def test_the_limits_are_the_clusters(two, fake):
    query = limits_query("two")
    assert "scontrol --clusters=two show config" in query and "where cluster=two" in query
    assert limits_query(None) == limits_query()  # the login node's own cluster: as before


def test_without_a_cluster_no_command_names_one(fake):
    backend = SlurmBackend(HostTransport())
    fake.respond("sbatch", out="7\n")
    backend.submit("/j.sh")
    backend.cancel("7")
    assert "--clusters=two" not in fake.argv("sbatch") + fake.argv("scancel")
    assert "slurm_cluster" not in backend.to_config()


def test_a_child_inside_the_allocation_submits_to_the_same_cluster(two):
    assert two.to_config()["slurm_cluster"] == "two"


@pytest.mark.parametrize("name", ["two,dev", "", "two; rm -rf ~", 7])
def test_a_cluster_that_is_not_one_name_is_refused_naming_the_fix(name):
    with pytest.raises(ConfigError, match="slurm_cluster='two'"):
        SlurmBackend(HostTransport(), slurm_cluster=name)  # type: ignore[arg-type]


def test_only_the_cluster_header_lines_are_dropped():
    assert without_cluster_headers(golden("squeue-live-header")).splitlines()[0].startswith("JOBID|")
    assert without_cluster_headers(golden("squeue-live")) == golden("squeue-live")


@task
def add_one(x: int) -> int:
    return x + 1


@pytest.mark.parametrize(("there", "here"), [("two", None), (None, "two"), ("dev", "two")])
def test_a_dependency_on_another_clusters_job_is_refused_naming_both(tmp_path, fake, there, here):
    other = Cluster(SlurmBackend(HostTransport(), slurm_cluster=there), job_root=str(tmp_path))
    this = Cluster(SlurmBackend(HostTransport(), slurm_cluster=here), job_root=str(tmp_path))
    parent = Job(other, "6", name="parent", job_dir=str(tmp_path / "p"), script="")
    names = [f"Slurm cluster {n!r}" if n else "the login node's own Slurm cluster" for n in (there, here)]
    for submit in (lambda: this.submit(add_one.after(parent), 1), lambda: this.submit(add_one, parent)):
        with pytest.raises(SubmitError) as refused:
            submit()
        assert names[0] in str(refused.value) and names[1] in str(refused.value)
        assert "no dependencies across clusters outside a federation" in str(refused.value)
    assert "sbatch" not in fake.calls()  # refused before anything was submitted


@pytest.mark.parametrize(
    ("there", "here", "allowed"),
    [(None, "dev", True), ("dev", None, True), (None, "two", False), ("two", None, False)],
)
def test_naming_the_login_nodes_own_cluster_is_the_same_cluster_as_naming_none(
    tmp_path, fake, there, here, allowed
):
    """One Cluster leaves slurm_cluster unset, the other names the login node's own cluster (``dev`` by its
    controller's ClusterName): the same cluster, so a dependency between their jobs is submitted."""
    fake.respond("scontrol", out="ClusterName             = dev\nMaxArraySize            = 1001\n")
    fake.respond("sbatch", out="7\n")
    other = Cluster(SlurmBackend(HostTransport(), slurm_cluster=there), job_root=str(tmp_path))
    this = Cluster(SlurmBackend(HostTransport(), slurm_cluster=here), job_root=str(tmp_path))
    parent = Job(other, "6", name="parent", job_dir=str(tmp_path / "p"), script="")
    asked = []
    for _ in range(2):
        for submit in (lambda: this.submit(add_one.after(parent), 1), lambda: this.submit(add_one, parent)):
            if allowed:
                assert submit().job_id == "7"
                assert "--dependency=afterok:6" in fake.argv("sbatch")
            else:
                with pytest.raises(SubmitError, match="no dependencies across clusters"):
                    submit()
        asked.append(fake.calls().count("scontrol"))
    assert asked[0] == asked[1] > 0  # each backend asks its login node's cluster name once, then knows it


def test_a_local_job_has_no_slurm_cluster(tmp_path):
    local = Cluster(LocalCommandBackend(state_dir=str(tmp_path / "state")), job_root=str(tmp_path / "j"))
    parent = Job(local, "1", name="parent", job_dir=str(tmp_path / "p"), script="")
    assert add_one.after(parent).dependency_clusters == {"1": None}


def test_a_job_submitted_to_a_named_cluster_over_ssh_runs_and_is_waited_for(sshd, tmp_path):
    cluster = scripted_cluster(sshd, tmp_path, slurm_cluster="two")
    job = cluster.submit(add_one, 41)
    run_on_node(job)
    assert job.result(timeout=30) == 42
    cluster.close()
    [call] = cluster.backend.transport.sbatch_calls  # type: ignore[attr-defined]
    assert call.startswith("--clusters=two --parsable ")


def test_the_config_file_names_the_cluster_in_the_backend_section():
    from slurm.backends import make_backend

    backend = make_backend({"type": "slurm", "slurm_cluster": "two"})
    assert isinstance(backend, SlurmBackend) and backend.slurm_cluster == "two"


def test_federated_ids_may_be_depended_on_from_another_cluster(tmp_path):
    from slurm.dataflow import federated_job_id

    assert federated_job_id("67108875") and federated_job_id("134217737_3")  # dev's and two's ids
    assert not federated_job_id("67043328") and not federated_job_id("8_1")
    other = Cluster(
        SlurmBackend(HostTransport(), slurm_cluster="two", federation=True), job_root=str(tmp_path)
    )
    parent = Job(other, "134217737", name="parent", job_dir=str(tmp_path / "p"), script="")
    follower = add_one.after(parent)
    here = Cluster(SlurmBackend(HostTransport(), federation=True), job_root=str(tmp_path))
    from slurm import dataflow

    dataflow.check_dependency_clusters(here, follower)  # no refusal: Slurm resolves it in the federation


@pytest.mark.parametrize("when", ["live", "ended"])
def test_in_a_federation_the_record_of_the_sibling_running_the_job_wins(fake, when):
    """Real `-M all` output, where dev's record of a job two runs says REVOKED (before or after two's)."""
    federated = SlurmBackend(HostTransport(), federation=True)
    fake.respond("sacct", out=golden(f"sacct-federation-{when}"))
    fake.respond("squeue", out=golden(f"squeue-federation-{when}"))
    state = JobState.RUNNING if when == "live" else JobState.COMPLETED
    statuses = federated.statuses(["67108878", "67108879"])
    assert {job_id: s.state for job_id, s in statuses.items()} == dict.fromkeys(statuses, state)
    assert fake.argv("sacct")[0] == "--clusters=all"
    if when == "live":  # squeue confirms what sacct calls live, from every cluster too
        assert fake.argv("squeue")[0] == "--clusters=all"
    assert federated.to_config()["federation"] is True


def test_a_lone_revoked_record_still_reads_cancelled():
    from slurm.backends.slurm import parse_status_lines

    assert parse_status_lines("5|REVOKED\n")["5"].state is JobState.CANCELLED
    assert parse_status_lines(golden("sacct-federation-ended"))["67108878"].state is JobState.COMPLETED


def test_cluster_status_names_the_cluster_and_asks_it(fake, tmp_path):
    from slurm.status import cluster_status, format_status
    from tests.fast.test_slurm_backend import FAKE

    (fake.dir / "sinfo").write_text(FAKE.format(dir=fake.dir))
    (fake.dir / "sinfo").chmod(0o755)
    fake.respond("sinfo", out="debug*|up|1|idle|d1\n")  # real `sinfo --clusters=two -h -o ...` output
    fake.respond("squeue", out="RUNNING\n")
    two = Cluster(SlurmBackend(HostTransport(), slurm_cluster="two"), job_root=str(tmp_path))
    status = cluster_status(two)
    assert status["slurm_cluster"] == "two" and status["partitions"][0]["nodelist"] == "d1"
    assert fake.argv("sinfo")[0] == fake.argv("squeue")[0] == "--clusters=two"
    assert "cluster:   two" in format_status(status)
