"""The dev cluster's topology setting (harness/src/slurm_dev_cluster/topology.py): precedence, validation, node names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dev_cluster.compose_project import unwanted_containers
from slurm_dev_cluster.topology import (
    CLUSTERS_VAR,
    GPUS_VAR,
    MAX_GPUS_PER_NODE,
    MAX_NODES,
    MULTICLUSTER_COMPOSE_FILE,
    NODES_VAR,
    PARTITIONS_VAR,
    Topology,
    TopologyError,
    node_name,
    node_number,
)

nodes = st.integers(1, MAX_NODES)
gpus = st.integers(0, MAX_GPUS_PER_NODE)
partition_names = st.lists(
    st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True), min_size=1, max_size=4, unique=True
)


@given(nodes, gpus, partition_names)
def test_a_topology_survives_its_record_and_its_compose_environment(n, g, partitions):
    topology = Topology(n, g, tuple(partitions))
    assert Topology.from_record(topology.to_record()) == topology
    assert Topology.resolve(topology.compose_env()) == topology  # what compose reads gives it back
    assert topology.node_names == tuple(f"c{i}" for i in range(1, n + 1))
    assert [node_number(name) for name in topology.node_names] == list(range(1, n + 1))


@given(st.one_of(st.none(), nodes), st.one_of(st.none(), nodes), st.one_of(st.none(), nodes))
def test_a_flag_wins_over_the_record_and_the_environment_over_the_record(flag, env, recorded):
    environ = {} if env is None else {NODES_VAR: str(env)}
    record = None if recorded is None else Topology(nodes=recorded).to_record()
    if flag is not None and env is not None and flag != env:
        with pytest.raises(TopologyError, match=f"contradicts {NODES_VAR}"):
            Topology.resolve(environ, record, nodes=flag)
        return
    chosen = Topology.resolve(environ, record, nodes=flag).nodes
    assert chosen == next(v for v in (flag, env, recorded, Topology().nodes) if v is not None)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({NODES_VAR: "0"}, "--nodes N"),
        ({NODES_VAR: str(MAX_NODES + 1)}, "--nodes N"),
        ({NODES_VAR: "two"}, "not a whole number"),
        ({GPUS_VAR: str(MAX_GPUS_PER_NODE + 1)}, "--gpus-per-node G"),
        ({GPUS_VAR: "-1"}, "--gpus-per-node G"),
        ({PARTITIONS_VAR: "debug,debug"}, "distinct names"),
        ({PARTITIONS_VAR: "1st"}, "distinct names"),
        ({PARTITIONS_VAR: "a b"}, "distinct names"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_fix(environ, named):
    with pytest.raises(TopologyError, match=named):
        Topology.resolve(environ)


def test_compute_node_names_follow_the_node_number():
    assert node_name(3) == "c3" and node_number("c12") == 12
    assert node_number("login") is None and node_number("c0") is None and node_number("c1x") is None


def test_a_second_cluster_is_an_overlay_and_its_services_and_survives_the_record():
    two = Topology.resolve({}, None, clusters=2)
    assert two.compose_overlays == (MULTICLUSTER_COMPOSE_FILE,)
    assert [(c.name, c.services) for c in two.further_clusters] == [("two", ("slurmctld-two", "d1"))]
    assert Topology.from_record(two.to_record()) == two
    assert Topology.resolve(two.compose_env()) == two
    one = Topology()
    assert one.further_clusters == () and one.compose_overlays == ()
    old_record = {k: v for k, v in two.to_record().items() if k != "clusters"}  # a stack from before
    assert Topology.from_record(old_record).clusters == 1


def test_a_second_cluster_names_nodes_apart_from_the_first():
    two = Topology(nodes=MAX_NODES, clusters=2)
    [further] = two.further_clusters
    assert not set(further.node_names) & set(two.node_names)
    assert all(node_number(name) is None for name in further.node_names)  # never removed as extra c<n>


@pytest.mark.parametrize("clusters", [0, 3])
def test_a_cluster_count_out_of_range_is_refused_naming_the_fix(clusters):
    with pytest.raises(TopologyError, match=f"--clusters N or {CLUSTERS_VAR}=N"):
        Topology.resolve({CLUSTERS_VAR: str(clusters)})


@given(
    running=st.sets(
        st.sampled_from([f"c{i}" for i in range(1, 17)] + ["login", "slurmctld", "slurmdbd", "slurmrestd"])
    ),
    wanted=st.integers(min_value=1, max_value=16),
    rest=st.booleans(),
)
def test_a_running_stack_sheds_the_nodes_and_the_rest_server_its_settings_no_longer_want(
    running, wanted, rest
):
    """Nodes beyond the wanted count go, and slurmrestd once its profile is off; the cluster's own services,
    the wanted nodes and a slurmrestd still asked for stay."""
    nodes = [f"c{i}" for i in range(1, wanted + 1)]
    shed = set(unwanted_containers(sorted(running), nodes, rest=rest))
    expected = {name for name in running if name.startswith("c") and int(name[1:]) > wanted}
    expected |= {"slurmrestd"} & running if not rest else set()
    assert shed == expected
