"""Production-like resources on the dev cluster: memory a client asks for is granted,
memory over the allocation is enforced, two partitions, fake GPUs, slurmctld state that outlives its
container, and a topology by configuration (more nodes, `--scale`)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from slurm import JobFailedError, JobState
from slurm.errors import SubmitError
from slurm_dev_cluster import ssh
from slurm_dev_cluster.stack import Connection, Stack

from . import resource_jobs
from .waiting import wait_until

pytestmark = pytest.mark.integration
TIMEOUT = 300
NODE_MEMORY_MB = 4096  # slurm.conf: RealMemory of every compute node
#: `scontrol show job`'s allocated TRES: `AllocTRES=` since Slurm 23.02, `TRES=` in 22.05 (bookworm).
ALLOCATED_TRES = re.compile(r"(?<![A-Za-z])(?:Alloc)?TRES=(\S+)")
#: What a job asked for per node or per job: `gres/gpu:N` since 23.02, `gres:gpu:N` in 22.05.
REQUESTED_GPUS = re.compile(r"TresPer(?:Node|Job)=\S*gres[/:]gpu:(\d+)")


def allocated_tres(shown: str) -> dict[str, str]:
    """``cpu=1,mem=2G,...,gres/gpu=1`` of a running job's `scontrol show job`, as a dict."""
    match = ALLOCATED_TRES.search(shown)
    assert match, f"no allocated TRES in `scontrol show job`:\n{shown}"
    return dict(item.split("=", 1) for item in match[1].split(","))


def test_memory_a_common_client_asks_for_is_granted(slurm_cluster):
    job = slurm_cluster.submit(resource_jobs.job_environment.options(mem="2G"))
    shown = job.result(timeout=TIMEOUT)["scontrol"]
    assert allocated_tres(shown).get("mem") == "2G", shown


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


def test_partitions_the_sdk_can_choose(slurm_cluster, slurm_stack, login_transport):
    configured = slurm_stack.topology.partitions  # default: debug (the default partition), batch
    partitions = login_transport.run("sinfo -h -o '%P'").stdout.split()
    expected = [f"{configured[0]}*", *configured[1:]]
    assert sorted(partitions) == sorted(expected), partitions  # order: as slurmctld recovered them
    default = slurm_cluster.submit(resource_jobs.job_environment)
    assert default.result(timeout=TIMEOUT)["partition"] == configured[0]
    for other in configured[1:]:
        chosen = slurm_cluster.submit(resource_jobs.job_environment.options(partition=other))
        assert chosen.result(timeout=TIMEOUT)["partition"] == other


@pytest.mark.parametrize("gpus, expected", [(1, r"[01]"), (2, r"0,1")])
def test_gpus_are_scheduled_accounted_and_visible(slurm_cluster, slurm_stack, gpus, expected):
    if slurm_stack.topology.gpus_per_node < gpus:
        pytest.skip(
            f"the stack has {slurm_stack.topology.gpus_per_node} fake GPUs per node (SLURM_SDK_GPUS_PER_NODE)"
        )
    seen = slurm_cluster.submit(resource_jobs.job_environment.options(gpus=gpus)).result(timeout=TIMEOUT)
    devices = seen["cuda_visible_devices"]
    assert re.fullmatch(expected, devices), seen
    # Slurm's own record: the request, the allocated (accounted) TRES and which device indexes it holds.
    request = REQUESTED_GPUS.search(seen["scontrol"])
    assert request and int(request[1]) == gpus, seen["scontrol"]
    assert allocated_tres(seen["scontrol"]).get("gres/gpu") == str(gpus), seen["scontrol"]
    indexes = devices if gpus == 1 else "0-1"
    assert re.search(rf"GRES=gpu:{gpus}\(IDX:{indexes}\)", seen["scontrol"]), seen["scontrol"]


def test_more_gpus_than_a_node_has_are_refused(slurm_cluster, slurm_stack):
    from slurm.errors import SubmitError

    with pytest.raises(SubmitError, match=r"(?i)requested node configuration is not available"):
        slurm_cluster.submit(
            resource_jobs.job_environment.options(gpus=slurm_stack.topology.gpus_per_node + 1)
        )


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


def _node_states(login_transport) -> dict[str, str]:
    """Every node Slurm lists, with its compact state (`idle`, `mix`, `down*`, ...)."""
    listed = login_transport.run("sinfo -h -N -o '%N %t' | sort -u").stdout.splitlines()
    return dict(line.split() for line in listed if line.strip())


#: sinfo's compact states of a node that takes jobs: free, partly or wholly allocated, or finishing one
#: (and 24.11's `plnd`: free, with a pending job planned on it). A suffix (`*` not responding, `~` powered
#: off, ...) or any other state (down, drain, inval, unk, ...) means it does not.
IN_SERVICE = frozenset({"idle", "mix", "alloc", "comp", "plnd"})


def _assert_nodes(login_transport, nodes: tuple[str, ...]) -> None:
    """Slurm lists exactly ``nodes``, every one in service (not necessarily idle: under `pytest -n 2` a job
    another test left behind may still run on one)."""
    states = _node_states(login_transport)
    assert sorted(states) == sorted(nodes), states
    assert all(states[node] in IN_SERVICE for node in nodes), states


def _wait_for_idle(login_transport, nodes: tuple[str, ...], timeout: float = TIMEOUT) -> None:
    """Until no job holds any of ``nodes`` (a job another test left behind ends within its time limit)."""

    def jobs_on_them() -> str:
        return login_transport.run(f"squeue -h -w {','.join(nodes)} -o '%i %T %N %j'").stdout.strip()

    wait_until(
        lambda: not jobs_on_them(),
        timeout,
        lambda: f"{', '.join(nodes)} free of jobs (jobs on them: {jobs_on_them()})",
        interval=1.0,
    )


class OpenSession:
    """A raw SSH connection to the login node (no reconnects: it fails if the login node was replaced),
    plus the login container's identity, taken before a reshape and checked after it."""

    def __init__(self, stack: Stack, connection: Connection) -> None:
        self.stack = stack
        self.client = ssh.connect(
            connection.host, connection.port, connection.user, connection.key_path, connection.host_key
        )
        self.login = self._login()

    def _login(self) -> tuple[str, int]:
        port = self.stack.published_port()
        return self.stack.docker.container.inspect(self.stack.container_names()["login"]).id, port

    def assert_untouched(self) -> None:
        assert self._login() == self.login, "the reshape recreated the login node (id, port)"
        code, out, err = ssh.run(self.client, "squeue -h -o %i | wc -l")
        assert code == 0 and out.strip().isdigit(), (code, out, err)

    def close(self) -> None:
        self.client.close()


@pytest.mark.slow
def test_four_node_stack_by_configuration_and_back(
    faults, slurm_stack, slurm_container, slurm_cluster, login_transport
):
    """`harness up --nodes 4` on a running stack: two node services more register themselves as c3 and
    c4 in every partition and take jobs; back to the topology it had, the extra nodes leave Slurm too.

    The login node is left alone throughout, even after a login restart (the merged CI run's bug: the
    next reshape recreated login on a new port and cut every concurrent SSH session): an SSH connection
    and a Cluster opened before the reshape still work after it."""
    faults.restart("login")  # back on the port the stack keeps for its whole life
    faults.reset()
    submitted_before = slurm_cluster.submit(resource_jobs.job_environment).result(timeout=TIMEOUT)
    session = OpenSession(slurm_stack, slurm_container)
    original = slurm_stack.topology
    wanted = replace(original, nodes=4)
    four = Stack(
        slurm_stack.repo_root,
        project=slurm_stack.project,
        project_source=slurm_stack.project_source,
        topology=wanted,
        say=lambda _: None,
    )
    try:
        assert four.plan()[0] == "rescale"
        assert four.ensure_up(session="test-four-nodes").action != "reused"
        session.assert_untouched()
        _assert_nodes(login_transport, wanted.node_names)
        counts = dict(line.split() for line in login_transport.run("sinfo -h -o '%R %D'").stdout.splitlines())
        assert counts == dict.fromkeys(original.partitions, "4"), counts
        # Four whole-node tasks at once: one on each node, so every node ran a job (once every node is free).
        _wait_for_idle(login_transport, wanted.node_names)
        ran_on = slurm_cluster.map(resource_jobs.whole_node_after, [3] * 4).results(timeout=TIMEOUT)
        assert sorted(ran_on) == sorted(wanted.node_names)
    finally:
        back = Stack(
            slurm_stack.repo_root,
            project=slurm_stack.project,
            project_source=slurm_stack.project_source,
            topology=original,
            say=lambda _: None,
        )
        back.ensure_up(session="test-four-nodes")
    session.assert_untouched()
    session.close()
    _assert_nodes(login_transport, original.node_names)
    assert sorted(slurm_stack.container_names()) == sorted(slurm_stack.expected_services)
    submitted_after = slurm_cluster.submit(resource_jobs.job_environment).result(timeout=TIMEOUT)
    assert int(submitted_after["job_id"]) > int(submitted_before["job_id"])


@pytest.mark.slow
def test_a_node_service_named_to_plain_compose_adds_that_node(
    faults, slurm_stack, slurm_container, login_transport
):
    """Plain `docker compose up c<N+1>`: that service is node c<N+1>, it runs jobs, and removing it leaves
    the node DOWN in Slurm until the harness forgets it; login is not touched."""
    nodes = slurm_stack.topology.nodes
    extra = f"c{nodes + 1}"
    compose = slurm_stack.docker.compose
    session = OpenSession(slurm_stack, slurm_container)
    try:
        compose.up([extra], detach=True, wait=True, quiet=True, dependencies=False)
        _assert_nodes(login_transport, (*slurm_stack.topology.node_names, extra))
        _job_runs_on(login_transport, extra)
        assert slurm_stack.exec(extra, ["hostname"]).strip() == extra
    finally:
        compose.rm([extra], stop=True)
        assert slurm_stack.forget_removed_nodes() == [extra]
    session.assert_untouched()
    session.close()
    _assert_nodes(login_transport, slurm_stack.topology.node_names)


@pytest.mark.slow
def test_gpus_and_partitions_change_on_a_running_stack(faults, slurm_stack, slurm_container, slurm_cluster):
    """`harness up --gpus-per-node 1 --partitions ...` on a running stack: every node is recreated with the
    new environment and registers afresh (a dynamic node would otherwise keep the GPU count slurmctld's
    state volume remembers, and be refused as INVAL); login comes back on the same port."""
    original = slurm_stack.topology
    wanted = replace(original, gpus_per_node=1, partitions=(*original.partitions, "extra"))
    port = slurm_stack.published_port()
    changed = Stack(
        slurm_stack.repo_root,
        project=slurm_stack.project,
        project_source=slurm_stack.project_source,
        topology=wanted,
        say=lambda _: None,
    )
    try:
        assert changed.plan()[0] == "reconfigure"
        changed.ensure_up(session="test-reconfigure")
        assert slurm_stack.published_port() == port == slurm_container.port
        shown = slurm_cluster.submit(resource_jobs.job_environment.options(gpus=1, partition="extra")).result(
            timeout=TIMEOUT
        )
        assert shown["partition"] == "extra" and shown["cuda_visible_devices"] == "0", shown
        with pytest.raises(SubmitError, match=r"(?i)requested node configuration is not available"):
            slurm_cluster.submit(resource_jobs.job_environment.options(gpus=wanted.gpus_per_node + 1))
    finally:
        Stack(
            slurm_stack.repo_root,
            project=slurm_stack.project,
            project_source=slurm_stack.project_source,
            topology=original,
            say=lambda _: None,
        ).ensure_up(session="test-reconfigure")
    assert slurm_stack.published_port() == port
    gpus = original.gpus_per_node
    shown = slurm_cluster.submit(resource_jobs.job_environment.options(gpus=gpus)).result(timeout=TIMEOUT)
    assert shown["cuda_visible_devices"] == (",".join(map(str, range(gpus))) or "<unset>"), shown
