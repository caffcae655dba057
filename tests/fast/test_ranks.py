"""Multi-rank tasks through LocalCommandBackend, whose srun starts one process per rank with Slurm's
variables: rank contexts, a real TCP rendezvous at the master address/port, rank 0's result and every
rank's, a failing rank named; plus the pure parts (node lists, layouts, rendering, validation)."""

from __future__ import annotations

import os
import pathlib
import pickle
import signal
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm import (
    Checkpointing,
    JobFailedError,
    JobState,
    ResourceError,
    Resources,
    rank_context,
    set_torch_env,
    task,
)
from slurm.backends import local_srun
from slurm.backends.local_srun import rank_environments
from slurm.errors import RankTerminated
from slurm.node.gather import gather, write_rank_outcome
from slurm.node.layout import rank_result_path
from slurm.node.outcome import dump_exception, dump_result
from slurm.node.ranks import MASTER_PORT_BASE, expand_hostlist, expand_tasks_per_node
from slurm.rendering import sbatch_options
from slurm.serialization import Outcome
from tests.fast.test_end_to_end import wait_until
from tests.rank_jobs import exit_on_rank, fail_on_rank, item_and_rank, rank_after_first_run, rendezvous


def test_every_rank_runs_and_they_meet_at_the_master_address(cluster):
    job = cluster.submit(rendezvous, "local")
    assert "srun --kill-on-bad-exit=1" in job.script and "--gather-ranks 4" in job.script
    first, every = job.result(timeout=60), job.results_by_rank()
    assert first == every[0] and first["tag"] == "local"
    roll = first["roll"]
    assert all(value["roll"] == roll for value in every)  # rank 0 collected all four over TCP
    assert [(e["rank"], e["node_rank"], e["local_rank"]) for e in roll] == [
        (0, 0, 0),
        (1, 0, 1),
        (2, 1, 0),
        (3, 1, 1),
    ]
    assert len({e["pid"] for e in roll}) == 4 and len({e["node"] for e in roll}) == 2
    assert {e["world_size"] for e in roll} == {4} and {e["local_world_size"] for e in roll} == {2}
    assert {tuple(e["master"]) for e in roll} == {tuple(roll[0]["master"])}
    assert [value["torch"]["RANK"] for value in every] == ["0", "1", "2", "3"]


@pytest.mark.parametrize(("nodes", "per_node"), [(1, 3), (3, 1)])
def test_other_layouts_meet_too(cluster, nodes, per_node):
    job = cluster.submit(rendezvous.options(nodes=nodes, ntasks_per_node=per_node), "layout")
    roll = job.result(timeout=60)["roll"]
    assert [(e["rank"], e["node_rank"], e["local_rank"]) for e in roll] == [
        (rank, *divmod(rank, per_node)) for rank in range(nodes * per_node)
    ]
    assert len({e["node"] for e in roll}) == nodes


def test_a_rank_that_raises_fails_the_job_with_that_rank_named(cluster):
    job = cluster.submit(fail_on_rank, 2, 30.0)  # the others would sleep: srun stops them at once
    with pytest.raises(ValueError, match="rank 2 refuses") as caught:
        job.result(timeout=60)
    assert any("rank 2 (of 4, on " in note for note in caught.value.__notes__)
    assert job.last_state is JobState.FAILED
    stderr = job.stderr()
    assert (
        "task 2: Exited with exit code 1" in stderr
        and "the job failed: rank 2 of 4: rank 2 refuses" in stderr
    )
    assert stderr.count("Traceback") == 1  # the victims say one line each, not a traceback


def test_a_rank_killed_outright_fails_the_job_saying_so(cluster, tmp_path):
    # No settle: rank 1 exits as soon as rank 0 runs its task (the emulated nodes share this file system).
    # Rank 0 was in its task, its SIGTERM handler in place: it records being stopped, so only rank 1 is lost.
    job = cluster.submit(exit_on_rank, 1, others_running=str(tmp_path / "rank-0-running"))
    with pytest.raises(JobFailedError, match="rank 1 of 2 ended without a result: killed outright"):
        job.result(timeout=60)
    stderr = job.stderr()
    assert "task 1: Exited with exit code 3" in stderr  # srun's own line names the first to fail
    assert "rank 0: stopped by SIGTERM" in stderr


def test_a_map_runs_every_rank_of_every_item(cluster):
    jobs = cluster.map(item_and_rank, [10, 20, 30])
    assert jobs.results(timeout=60) == [(10, 0, 0), (20, 0, 1), (30, 0, 2)]
    assert jobs[1].results_by_rank() == [(20, 0, 1), (20, 1, 1)]


def test_one_process_task_has_a_world_of_one(cluster):
    @task
    def context():
        return rank_context()

    job = cluster.submit(context)
    assert "srun" not in job.script
    ctx = job.result(timeout=60)
    assert (ctx.rank, ctx.world_size, ctx.local_rank) == (0, 1, 0)
    assert job.results_by_rank() == [ctx]


def test_outside_a_job_the_context_is_this_process_alone(monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))  # set_torch_env below writes into it
    for name in [key for key in os.environ if key.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    context = rank_context()
    assert (context.rank, context.world_size, context.master_addr, context.master_port) == (
        0,
        1,
        "127.0.0.1",
        29500,
    )
    assert rendezvous("here")["roll"][0]["rank"] == 0  # calling a multi-rank task directly: one rank


def test_set_torch_env_sets_the_variables_torch_reads(monkeypatch):
    env = dict(rank_environments({"SLURM_JOB_NODELIST": "c[1-2]", "SLURM_NTASKS_PER_NODE": "2"}, 23456)[3][2])
    monkeypatch.setattr(os, "environ", {})  # what set_torch_env writes into
    context = set_torch_env(rank_context(env))
    assert {
        name: os.environ[name] for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    } == {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "23456",
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
    }
    assert context.node == "c2"


def test_slurm_variables_give_the_master_node_and_a_port_from_the_job_id():
    env = {
        "SLURM_JOB_ID": "1234",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "2",
        "SLURM_STEP_NUM_TASKS": "6",
        "SLURM_STEP_NODELIST": "gpu[07-09]",
        "SLURM_STEP_TASKS_PER_NODE": "2(x3)",
    }
    context = rank_context(env)
    assert context.nodes == ("gpu07", "gpu08", "gpu09") and context.node == "gpu09"
    assert (context.master_addr, context.master_port) == ("gpu07", MASTER_PORT_BASE + 1234)
    assert (context.rank, context.local_rank, context.world_size, context.local_world_size) == (5, 1, 6, 2)


@given(nodes=st.integers(1, 4), per_node=st.integers(1, 4))
def test_every_layout_numbers_ranks_once_and_all_agree(nodes, per_node):
    names = ",".join(f"n{i}" for i in range(nodes))
    layout = rank_environments({"SLURM_JOB_NODELIST": names, "SLURM_NTASKS_PER_NODE": str(per_node)}, 30000)
    contexts = [rank_context(env) for _, _, env in layout]
    assert sorted(context.rank for context in contexts) == list(range(nodes * per_node))
    assert {(c.world_size, c.local_world_size, c.nodes, c.master_addr, c.master_port) for c in contexts} == {
        (nodes * per_node, per_node, tuple(names.split(",")), "127.0.0.1", 30000)
    }
    for context in contexts:  # Slurm's block distribution
        assert (context.node_rank, context.local_rank) == divmod(context.rank, per_node)
        assert context.node == f"n{context.node_rank}"


NODE_GROUPS = st.lists(
    st.tuples(
        st.sampled_from(["c", "gpu", "node-", "r1n"]),  # prefix
        st.integers(1, 3),  # zero-padded width
        st.lists(st.integers(0, 120), min_size=1, max_size=6, unique=True),  # node numbers
    ),
    min_size=1,
    max_size=3,
)


def compact(prefix: str, width: int, numbers: list[int]) -> str:
    """Slurm's compact form of prefix+numbers: runs of consecutive numbers become a-b ranges."""
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    ranges = [f"{run[0]:0{width}d}" + (f"-{run[-1]:0{width}d}" if len(run) > 1 else "") for run in runs]
    return f"{prefix}[{','.join(ranges)}]"


@given(NODE_GROUPS)
def test_node_lists_expand_like_slurm(groups):
    expected = [f"{prefix}{n:0{width}d}" for prefix, width, numbers in groups for n in sorted(numbers)]
    assert expand_hostlist(",".join(compact(*group) for group in groups)) == expected


def test_node_list_forms():
    assert expand_hostlist("c1") == ["c1"]
    assert expand_hostlist("c1,c2") == ["c1", "c2"]
    assert expand_hostlist("rack[1-2]-n[01-02]") == ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]
    assert expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    with pytest.raises(ValueError, match="malformed node list"):
        expand_hostlist("c[1-x]")
    with pytest.raises(ValueError, match="malformed tasks-per-node"):
        expand_tasks_per_node("2(y3)")


def test_local_srun_ends_when_its_last_rank_does_without_polling(monkeypatch):
    """The local srun waits for its ranks' exits, not on a clock (a poll cost every multi-rank local job half
    its interval): it never sleeps, and answers with the first failed rank's status once all have ended."""

    def no_sleep(seconds):
        raise AssertionError(f"srun slept {seconds} s instead of waiting for its ranks")

    monkeypatch.setattr(local_srun, "time", type("Clockless", (), {"sleep": no_sleep, "monotonic": None}))
    ranks = [
        (0, "c1", subprocess.Popen(["sh", "-c", "sleep 0.05"])),
        (1, "c1", subprocess.Popen(["sh", "-c", "exit 3"])),
    ]
    assert local_srun._wait(ranks, kill_on_bad_exit=False) == 3
    assert [proc.returncode for _, _, proc in ranks] == [0, 3]


def test_local_srun_forwards_sigterm_to_its_ranks_without_waiting_in_the_handler(monkeypatch):
    """The handler runs wherever the signal lands, e.g. inside ``Popen.poll`` in ``_wait`` with the poll lock
    held: a wait in it could not take that lock, sat out the kill timeout and killed ranks still writing their
    outcome. It only passes the signal on; ``_wait`` reaps the ranks."""
    ranks = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]

    def no_wait(*_args, **_kwargs):
        raise AssertionError("srun's SIGTERM handler waited for a rank")

    try:
        for proc in ranks:
            monkeypatch.setattr(proc, "wait", no_wait)
            proc._waitpid_lock.acquire()  # as inside Popen.poll when the signal comes
        handler = local_srun._forward
        handler(ranks, signal.SIGTERM)
    finally:
        for proc in ranks:
            proc._waitpid_lock.release()
            monkeypatch.undo()
    assert [proc.wait(timeout=30) for proc in ranks] == [-signal.SIGTERM, -signal.SIGTERM]


# A rank's stop, delivered by the rank to itself at a chosen point of the runner: at its first line (a
# fast-failing rank has srun stop the others while a slow one still starts), or while it writes the value
# its task returned. ``real`` is the runner's own function, called after the signal is sent.
_STOPPED_AT = """
import os, signal, sys
from slurm.node import runner
real = getattr(runner, sys.argv[1])
def stop_then(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)
setattr(runner, sys.argv[1], stop_then)
sys.exit(runner.main(["--rank", sys.argv[2]]))
"""


@pytest.mark.parametrize(
    ("where", "code", "recorded"),
    [("_print_header", 1, "stopped by SIGTERM"), ("dump_result", 0, 5)],
    ids=["while-starting", "while-writing-its-value"],
)
def test_a_stopped_rank_always_leaves_its_outcome_and_no_traceback(tmp_path, where, code, recorded):
    from slurm.node.layout import payload_path
    from slurm.node.payload import LOCAL_PYTHON
    from slurm.serialization import dump_payload
    from tests.fast import tasks

    job_dir = str(tmp_path)
    with open(payload_path(job_dir), "wb") as payload:
        payload.write(dump_payload(tasks.add, [((2, 3), {})], lambda: LOCAL_PYTHON))
    env = {key: value for key, value in os.environ.items() if key != "SLURM_ARRAY_TASK_ID"}
    env.update(SLURM_PROCID="1", SLURM_NTASKS="4")
    run = subprocess.run(  # from the repo's root, where the payload's task module imports from
        [sys.executable, "-c", _STOPPED_AT, where, job_dir],
        env=env,
        cwd=pathlib.Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == code, run.stderr
    assert "Traceback" not in run.stderr
    with open(rank_result_path(job_dir, 0, 1), "rb") as left:
        outcome = Outcome.load(pickle.load(left)["outcome"])
    if code:
        assert "rank 1: stopped by SIGTERM" in run.stderr
        assert recorded in outcome.fields["message"]
    else:
        assert outcome.value("1") == recorded


def test_gather_names_the_rank_that_raised_not_the_ones_srun_stopped(tmp_path):
    job_dir = str(tmp_path)
    write_rank_outcome(job_dir, 0, 0, "c1", dump_exception(RankTerminated("stopped by SIGTERM"), ""))
    write_rank_outcome(job_dir, 0, 2, "c2", dump_exception(ValueError("bad"), "Traceback ..."))
    write_rank_outcome(job_dir, 0, 3, "c2", dump_result(3))
    outcome, code = gather(job_dir, 0, 4, restarts=0)
    fields = pickle.loads(outcome)
    assert code == 1 and (fields["rank"], fields["node"], fields["failed_ranks"]) == (2, "c2", [0, 1, 2])
    os.unlink(rank_result_path(job_dir, 0, 2))
    fields = pickle.loads(gather(job_dir, 0, 4, restarts=0)[0])
    assert fields["rank"] is None and "ranks 1, 2 of 4 ended without a result" in fields["message"]


def test_gather_ignores_what_ranks_left_in_an_earlier_run_of_a_requeued_job(tmp_path):
    job_dir = str(tmp_path)
    write_rank_outcome(job_dir, 0, 0, "c1", dump_result("run 2", restarts=1))
    write_rank_outcome(job_dir, 0, 1, "c1", dump_result("run 1", restarts=0))  # rank 1 died in run 2
    fields = pickle.loads(gather(job_dir, 0, 2, restarts=1)[0])
    assert not fields["ok"] and "rank 1 of 2 ended without a result" in fields["message"]
    write_rank_outcome(job_dir, 0, 1, "c1", dump_result("run 2", restarts=1))
    outcome, code = gather(job_dir, 0, 2, restarts=1)
    assert code == 0 and Outcome.load(outcome).values_by_rank("1") == ["run 2"] * 2


def test_rendered_options_and_their_validation():
    options = dict(sbatch_options(Resources(nodes=2, ntasks_per_node=2, cpus=2)))
    assert (options["nodes"], options["ntasks-per-node"], options["cpus-per-task"]) == (2, 2, 2)
    assert dict(sbatch_options(Resources(nodes=3)))["ntasks-per-node"] == 1  # one rank per node
    assert "nodes" not in dict(sbatch_options(Resources()))
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ResourceError, match="nodes must be an int >= 1"):
            Resources(nodes=bad)
    with pytest.raises(ResourceError, match="checkpoint=True cannot be combined with nodes"):
        Resources(nodes=2, time="00:10:00", checkpoint=Checkpointing())
    with pytest.raises(ResourceError, match="use the nodes= and ntasks_per_node= argument"):
        Resources(sbatch={"ntasks": 4})
    with pytest.raises(ResourceError, match="a @workflow runs once"):
        from slurm import workflow

        workflow(nodes=2)(lambda cluster: None)
    with pytest.raises(ResourceError, match="a @workflow runs once"):
        workflow(lambda cluster: None).options(ntasks_per_node=2)


def test_a_preempted_multi_rank_job_runs_again_and_its_ranks_answer_from_the_rerun(cluster):
    # Each rank returns its rank, after 60 s on the first run (it is preempted long before), at once on the rerun.
    job = cluster.submit(rank_after_first_run, 60.0)
    assert wait_until(
        lambda: job.stderr().count("[slurm-sdk] job") == 4, timeout=30
    )  # all four ranks started
    cluster.backend.preempt(job.job_id)  # SIGTERM to the job, then it runs again
    assert job.results_by_rank(timeout=60) == [0, 1, 2, 3]
    assert job.restarts == 1 and job.last_state is JobState.COMPLETED
    assert job.stderr().count("stopped by SIGTERM") == 4  # the first run's ranks, none of them gathered
