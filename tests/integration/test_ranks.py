"""Multi-rank tasks on the real cluster: 2 nodes x 2 ranks under srun across c1 and c2, the ranks meeting
over TCP at the master address and port their rank contexts agree on; a failing rank fails the job, named."""

from __future__ import annotations

import time

import pytest

from slurm import JobFailedError, JobState
from tests.rank_jobs import exit_on_rank, fail_on_rank, item_and_rank, rank_after_first_run, rendezvous

pytestmark = [pytest.mark.integration]


def test_two_nodes_four_ranks_meet_at_the_master_address(slurm_cluster):
    job = slurm_cluster.submit(rendezvous, "c1c2")
    assert "#SBATCH --nodes=2" in job.script and "#SBATCH --ntasks-per-node=2" in job.script
    first = job.result(timeout=300)
    every = job.results_by_rank()
    assert job.last_state is JobState.COMPLETED
    assert first == every[0] and [value["me"]["rank"] for value in every] == [0, 1, 2, 3]
    roll = first["roll"]
    assert all(value["roll"] == roll for value in every)  # each rank got the roll from rank 0 over TCP
    assert [entry["rank"] for entry in roll] == [0, 1, 2, 3]
    assert {entry["slurmd_node"] for entry in roll} == {"c1", "c2"}  # two real nodes, two ranks on each
    assert len({entry["hostname"] for entry in roll}) == 2
    assert [entry["node_rank"] for entry in roll] == [0, 0, 1, 1]
    assert [entry["local_rank"] for entry in roll] == [0, 1, 0, 1]
    assert all(entry["slurmd_node"] == entry["node"] for entry in roll)
    assert {entry["world_size"] for entry in roll} == {4} and {
        entry["local_world_size"] for entry in roll
    } == {2}
    nodes, master = roll[0]["nodes"], roll[0]["master"]
    assert sorted(nodes) == ["c1", "c2"] and nodes[0] == roll[0]["node"]
    assert master[0] == nodes[0]  # the first node by its name, which every node resolves, as at a site
    assert all(entry["hostname"] == entry["slurmd_node"] for entry in roll)  # `hostname` is the node name
    assert all(entry["nodes"] == nodes and entry["master"] == master for entry in roll)
    assert len({entry["pid"] for entry in roll if entry["slurmd_node"] == "c1"}) == 2
    assert slurm_cluster.job(job.job_id).results_by_rank() == every  # a new handle reads the same ranks
    torch = [value["torch"] for value in every]
    assert [env["RANK"] for env in torch] == ["0", "1", "2", "3"]
    assert {(env["MASTER_ADDR"], env["MASTER_PORT"], env["WORLD_SIZE"]) for env in torch} == {
        (master[0], str(master[1]), "4")
    }


def test_a_failing_rank_fails_the_job_and_is_named(slurm_cluster):
    job = slurm_cluster.submit(fail_on_rank, 3, 60.0)  # the others would sleep a minute: srun stops them
    with pytest.raises(ValueError, match="rank 3 refuses") as caught:
        job.result(timeout=300)
    assert any("rank 3 (of 4" in note for note in caught.value.__notes__), caught.value.__notes__
    assert job.last_state is JobState.FAILED
    with pytest.raises(ValueError, match="rank 3 refuses"):
        job.results_by_rank()
    assert "task 3: Exited with exit code 1" in job.stderr()


def test_a_map_of_multi_rank_tasks_runs_every_rank_of_every_item(slurm_cluster):
    jobs = slurm_cluster.map(item_and_rank, [10, 20])
    assert jobs.results(timeout=300) == [(10, 0, 0), (20, 0, 1)]  # rank 0's value per item
    assert [job.results_by_rank() for job in jobs] == [[(10, 0, 0), (10, 1, 0)], [(20, 0, 1), (20, 1, 1)]]


def test_a_rank_killed_outright_fails_the_job_saying_so(slurm_cluster):
    job = slurm_cluster.submit(exit_on_rank, 1)  # rank 1 os._exit(3)s: no result, no exception
    with pytest.raises(JobFailedError, match="rank 1 of 2 ended without a result: killed outright") as caught:
        job.result(timeout=300)
    assert caught.value.job_id == job.job_id and job.last_state is JobState.FAILED
    stderr = job.stderr()
    assert "task 1: Exited with exit code 3" in stderr  # srun's own line names the first to fail
    assert "rank 0: stopped by SIGTERM" in stderr  # the other rank was stopped, and says so


@pytest.mark.slow
def test_a_preempted_multi_rank_job_reruns_on_both_nodes(slurm_cluster, faults):
    # Every rank of the first run returns after 20 s (time enough to preempt it), of the rerun at once.
    job = slurm_cluster.submit(rank_after_first_run, 20.0)
    deadline = time.monotonic() + 120
    while job.stderr().count("[slurm-sdk] job") < 4:  # all four ranks of the first run started
        assert time.monotonic() < deadline, "the ranks did not start"
        time.sleep(0.5)
    faults.preempt(job.job_id)  # scontrol requeue by root: SIGTERM, held ~10 s, then it runs again
    assert job.results_by_rank(timeout=300) == [0, 1, 2, 3]
    assert job.restarts == 1 and job.last_state is JobState.COMPLETED
