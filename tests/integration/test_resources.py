"""Production-like resources on the dev cluster (issue 11): memory a client asks for is granted,
memory over the allocation is enforced, two partitions, fake GPUs, slurmctld state that outlives its
container, and `--scale` refused."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from python_on_whales.exceptions import DockerException

from slurm import JobFailedError, JobState

from . import resource_jobs

pytestmark = pytest.mark.integration
TIMEOUT = 300
NODE_MEMORY_MB = 4096  # slurm.conf: RealMemory of every compute node


def test_memory_a_common_client_asks_for_is_granted(slurm_cluster):
    job = slurm_cluster.submit(resource_jobs.job_environment.options(mem="2G"))
    shown = job.result(timeout=TIMEOUT)["scontrol"]
    assert re.search(r"AllocTRES=\S*mem=2G", shown), shown


def test_nodes_declare_production_like_memory_and_a_default_per_cpu(login_transport):
    nodes = login_transport.run("sinfo -h -N -o '%N %m' | sort -u").stdout.split("\n")
    memory = {line.split()[0]: int(line.split()[1]) for line in nodes if line.strip()}
    assert memory and all(mb == NODE_MEMORY_MB for mb in memory.values()), memory
    config = login_transport.run("scontrol show config").stdout
    assert re.search(r"SelectTypeParameters\s*=\s*CR_CORE_MEMORY", config, re.I), config
    assert re.search(r"DefMemPerCPU\s*=\s*1024", config), config


@pytest.mark.slow
def test_task_over_its_memory_ends_out_of_memory(slurm_cluster):
    hog = slurm_cluster.submit(resource_jobs.hold_memory.options(mem="50M"), 400)
    with pytest.raises(JobFailedError) as raised:
        hog.result(timeout=TIMEOUT)
    assert raised.value.state == JobState.OUT_OF_MEMORY.value, str(raised.value)
    assert "OUT_OF_MEMORY" in str(raised.value) and "exceeded memory limit" in str(raised.value)
    assert "mem=" in str(raised.value)  # the fix is named


@pytest.mark.slow
def test_the_same_task_within_its_memory_completes(slurm_cluster):
    assert (
        slurm_cluster.submit(resource_jobs.hold_memory.options(mem="1G"), 400).result(timeout=TIMEOUT) == 400
    )


def test_two_partitions_the_sdk_can_choose(slurm_cluster, login_transport):
    partitions = login_transport.run("sinfo -h -o '%P'").stdout.split()
    assert sorted(partitions) == ["batch", "debug*"], partitions  # order: as slurmctld recovered them
    default = slurm_cluster.submit(resource_jobs.job_environment)
    chosen = slurm_cluster.submit(resource_jobs.job_environment.options(partition="batch"))
    assert default.result(timeout=TIMEOUT)["partition"] == "debug"
    assert chosen.result(timeout=TIMEOUT)["partition"] == "batch"


@pytest.mark.parametrize("gpus, expected", [(1, r"[01]"), (2, r"0,1")])
def test_gpus_are_scheduled_accounted_and_visible(slurm_cluster, gpus, expected):
    seen = slurm_cluster.submit(resource_jobs.job_environment.options(gpus=gpus)).result(timeout=TIMEOUT)
    devices = seen["cuda_visible_devices"]
    assert re.fullmatch(expected, devices), seen
    # Slurm's own record of the allocation: the GRES and which device indexes this job holds.
    assert f"gres/gpu:{gpus}" in seen["scontrol"], seen["scontrol"]
    indexes = devices if gpus == 1 else "0-1"
    assert re.search(rf"GRES=gpu:{gpus}\(IDX:{indexes}\)", seen["scontrol"]), seen["scontrol"]


def test_more_gpus_than_a_node_has_are_refused(slurm_cluster):
    from slurm.errors import SubmitError

    with pytest.raises(SubmitError, match=r"(?i)requested node configuration is not available"):
        slurm_cluster.submit(resource_jobs.job_environment.options(gpus=3))


@pytest.mark.slow
def test_job_ids_continue_after_slurmctld_is_recreated(slurm_cluster, faults, slurm_stack):
    before = slurm_cluster.submit(resource_jobs.job_environment)
    before.result(timeout=TIMEOUT)
    slurm_stack.docker.compose.up(
        ["slurmctld"], detach=True, wait=True, dependencies=False, force_recreate=True, quiet=True
    )
    after = slurm_cluster.submit(resource_jobs.job_environment)
    assert int(after.result(timeout=TIMEOUT)["job_id"]) > int(before.job_id), (before.job_id, after.job_id)


def _job_runs_on(login_transport, node: str) -> None:
    login_transport.run(f"sbatch --wait -w {node} -o /dev/null --wrap true", timeout=120)


def _duplicate_watch_seconds() -> int:
    """How long a new compute node watches for a twin (the entrypoint is the one home of that number)."""
    entrypoint = (Path(__file__).resolve().parents[2] / "images/entrypoint.sh").read_text()
    return int(re.search(r"^DUPLICATE_WATCH_SECONDS=(\d+)", entrypoint, re.M).group(1))


def _wait_until_older_than_its_watch(slurm_stack, service: str) -> None:
    """A node younger than its watch would see the newcomer too and refuse itself (documented): an
    earlier test may have just restarted it, so let it age past the watch first."""
    started = slurm_stack.docker.container.inspect(slurm_stack.container_names()[service]).state.started_at
    age = (datetime.now(UTC) - started).total_seconds()
    time.sleep(max(0.0, _duplicate_watch_seconds() + 1 - age))


@pytest.mark.xfail(
    strict=False,
    reason="known bug: in full CI runs `up --scale c2=2` restarts the "
    "running c2, which is then young enough to see the newcomer and refuse itself "
    "instead of the newcomer (seen twice); the refusal needs a tie-break by age",
)
@pytest.mark.slow
def test_scale_of_a_compute_node_is_refused_naming_the_cause(faults, slurm_stack, login_transport):
    compose = slurm_stack.docker.compose
    _job_runs_on(login_transport, "c2")  # a cluster in use: slurmctld has reached c2 already
    _wait_until_older_than_its_watch(slurm_stack, "c2")
    try:
        with pytest.raises(DockerException):
            compose.up(
                ["c2"],
                scales={"c2": 2},
                detach=True,
                wait=True,
                wait_timeout=60,
                dependencies=False,
                quiet=True,
            )
        extra = [c for c in compose.ps(all=True) if c.name.endswith("-c2-2")]
        assert extra, [c.name for c in compose.ps(all=True)]
        assert extra[0].state.status == "exited" and extra[0].state.exit_code == 137  # killed by its watcher
        logs = slurm_stack.docker.container.logs(extra[0])
        assert "node c2 is already run by another container" in logs and "--scale" in logs, logs
    finally:
        compose.up(["c2"], scales={"c2": 1}, detach=True, wait=True, dependencies=False, quiet=True)
        # slurmctld may have resolved "c2" to the refused container while it lived (README): re-resolve.
        slurm_stack.exec("slurmctld", ["scontrol", "reconfigure"])
    assert [c.name for c in compose.ps(all=True) if "-c2-" in c.name] == [slurm_stack.container_names()["c2"]]
    _job_runs_on(login_transport, "c2")  # the node that was already there kept serving
