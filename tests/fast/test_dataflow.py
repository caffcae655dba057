"""Dataflow: Jobs passed as arguments become afterok dependencies and their results are loaded on the node."""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurm import Cluster, JobFailedError, JobState, SerializationError, SubmitError, dataflow
from slurm.backends.local import LocalCommandBackend
from slurm.dataflow import ParentResultError, ResultOf
from slurm.job import Job
from slurm.node.outcome import dump_exception, dump_result
from slurm.node.payload import LOCAL_PYTHON
from slurm.serialization import dump_payload
from tests.fast import dataflow_tasks, tasks
from tests.fast.conftest import REPO

Pair = dataflow_tasks.Pair


class Parent:
    """Stands for the i-th parent job in a generated structure (the test builds Jobs and values from it)."""

    def __init__(self, number: int) -> None:
        self.number = number


PARENT_VALUES = [{"weights": [1.5, 2.5]}, 25, 42]

leaves = st.integers() | st.text(max_size=3) | st.none() | st.builds(Parent, st.integers(0, 2))
structures = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.builds(Pair, children, children)
        | st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=12,
)


def materialise(obj, leaf):
    """The structure with every Parent replaced by ``leaf(parent)``, built independently of dataflow.replace."""
    if isinstance(obj, Parent):
        return leaf(obj)
    if isinstance(obj, dict):
        return {key: materialise(value, leaf) for key, value in obj.items()}
    if isinstance(obj, Pair):
        return Pair(*(materialise(value, leaf) for value in obj))
    if isinstance(obj, tuple):
        return tuple(materialise(value, leaf) for value in obj)
    if isinstance(obj, list):
        return [materialise(value, leaf) for value in obj]
    return obj


def parents_in(obj) -> set[int]:
    found: set[int] = set()
    materialise(obj, lambda parent: found.add(parent.number))
    return found


def same_shape(a, b) -> bool:
    """Equal, and every container of the same type (a namedtuple stays one, a tuple never becomes a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_shape(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_shape(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.fixture
def finished_parents(cluster, tmp_path):
    """Three parent jobs that ended with a result file (the second one an element of an array)."""
    jobs = []
    for number, value in enumerate(PARENT_VALUES):
        index = 2 if number == 1 else 0
        job_dir = tmp_path / f"parent{number}"
        job_dir.mkdir()
        (job_dir / f"result-{index}.pkl").write_bytes(dump_result(value))
        job_id = f"{10 + number}_{index}" if number == 1 else str(10 + number)
        jobs.append(Job(cluster, job_id, name=f"p{number}", job_dir=str(job_dir), script="", index=index))
    return jobs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    args=st.lists(structures, max_size=3), kwargs=st.dictionaries(st.text(min_size=1, max_size=3), structures)
)
def test_jobs_at_any_depth_are_swapped_for_their_results(cluster, finished_parents, args, kwargs):
    call = (
        tuple(materialise(args, lambda p: finished_parents[p.number])),
        materialise(kwargs, lambda p: finished_parents[p.number]),
    )
    [swapped], parents = dataflow.extract(cluster, [call])

    assert {job.job_id for job in parents} == {finished_parents[n].job_id for n in parents_in((args, kwargs))}
    dump_payload(dataflow_tasks.echo, [swapped], lambda: LOCAL_PYTHON)  # no Job left to pickle
    if not parents:
        assert swapped[0] is call[0] and swapped[1] is call[1]  # nothing to swap: nothing copied
    loaded_args, loaded_kwargs = dataflow.inject(swapped)
    assert same_shape(list(loaded_args), materialise(args, lambda p: PARENT_VALUES[p.number]))
    assert same_shape(loaded_kwargs, materialise(kwargs, lambda p: PARENT_VALUES[p.number]))


class Gate:
    """A job that runs until the test opens it: the jobs after it are surely still waiting when the test
    submits what depends on them (as it would not be if they had ended: no Slurm dependency then)."""

    def __init__(self, cluster, tmp_path) -> None:
        self.path = tmp_path / "gate-open"
        self.job = cluster.submit(tasks.wait_for_file, str(self.path))

    def open(self) -> None:
        self.path.touch()


@pytest.fixture
def gate(cluster, tmp_path) -> Gate:
    return Gate(cluster, tmp_path)


@pytest.fixture
def running_parents(cluster, gate):
    """Three submitted parents returning PARENT_VALUES (the second an element of a map), waiting behind
    ``gate`` until the test opens it."""
    return [
        cluster.submit(dataflow_tasks.slow_value.after(gate.job), 0, PARENT_VALUES[0]),
        cluster.map(tasks.square.after(gate.job), [0, 5])[1],
        cluster.submit(dataflow_tasks.slow_value.after(gate.job), 0, PARENT_VALUES[2]),
    ]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    args=st.lists(structures, max_size=2), kwargs=st.dictionaries(st.text(min_size=1, max_size=3), structures)
)
def test_nested_jobs_through_the_local_backend(cluster, gate, running_parents, args, kwargs):
    job = cluster.submit(
        dataflow_tasks.echo,
        *materialise(args, lambda p: running_parents[p.number]),
        **materialise(kwargs, lambda p: running_parents[p.number]),
    )
    gate.open()  # after the first example's submission: its parents were still waiting
    got_args, got_kwargs = job.result(timeout=60)
    assert same_shape(list(got_args), materialise(args, lambda p: PARENT_VALUES[p.number]))
    assert same_shape(got_kwargs, materialise(kwargs, lambda p: PARENT_VALUES[p.number]))


def test_mapped_jobs_as_an_argument_become_the_list_of_their_results(cluster):
    squares = cluster.map(tasks.square, [1, 2, 3])
    assert cluster.submit(dataflow_tasks.echo, squares).result(timeout=60) == (([1, 4, 9],), {})


def test_two_levels_deep_without_results_passing_through_the_client(cluster, gate, monkeypatch):
    reads = dataflow_tasks.record_reads(cluster.backend.transport, monkeypatch)
    first = cluster.submit(tasks.add.after(gate.job), 1, 2)
    second = cluster.submit(dataflow_tasks.total, {"x": [first, (first, 4)]})
    third = cluster.submit(dataflow_tasks.echo, second, nested=[first, {"second": second}])
    gate.open()

    assert third.result(timeout=60) == ((10,), {"nested": [3, {"second": 10}]})
    assert first.depends_on == (gate.job.job_id,)
    assert second.depends_on == (first.job_id,)  # each parent once, however often it appears
    assert set(third.depends_on) <= {first.job_id, second.job_id}
    assert first._result_path not in reads and second._result_path not in reads
    assert third._result_path in reads
    assert f"argument: the result of job {first.job_id} (add)" in second.stderr()  # read there, once
    assert second.stderr().count("argument: the result of") == 1


def test_a_map_waits_for_every_job_in_any_of_its_items(cluster, gate):
    parents = cluster.map(tasks.square.after(gate.job), [1, 2, 3])
    children = cluster.map(tasks.square, parents)  # one Job per item
    gate.open()

    assert children.results(timeout=60) == [1, 16, 81]
    expected = tuple(job.job_id for job in parents)
    assert all(child.depends_on == expected for child in children)  # Slurm dependencies are per array job


def test_one_failed_parent_stops_the_whole_map_naming_it(cluster, gate):
    good = cluster.submit(tasks.add.after(gate.job), 1, 1)
    bad = cluster.submit(dataflow_tasks.fail_after.after(gate.job), 0, "no result")
    children = cluster.map(dataflow_tasks.echo, [good, {"bad": bad}])
    gate.open()

    assert children.wait(timeout=60) == [JobState.CANCELLED, JobState.CANCELLED]
    for child in children:
        with pytest.raises(JobFailedError, match=rf"can never start: .*job {bad.job_id} \(FAILED\)"):
            child.result()


def test_explicit_after_and_job_arguments_combine(cluster, gate, tmp_path):
    path = tmp_path / "order.txt"
    # Both parents wait for the gate; once it opens, `first` takes 0.2 s longer than `value`, so a child
    # that waited for `value` only would most likely write before it.
    first = cluster.submit(tasks.append_after_pause.after(gate.job), str(path), "a", 0.2)
    value = cluster.submit(dataflow_tasks.slow_value.after(gate.job), 0, "b")
    child = cluster.submit(dataflow_tasks.append_value.after(first), str(path), value)
    gate.open()

    assert child.result(timeout=60) == "b"
    assert path.read_text() == "ab"
    assert child.depends_on == (first.job_id, value.job_id)


def test_a_parent_failing_while_the_child_waits_names_the_parent(cluster, gate):
    parent = cluster.submit(dataflow_tasks.fail_after.after(gate.job), 0, "broken")
    child = cluster.submit(tasks.add, parent, 1)
    assert child.depends_on == (parent.job_id,)  # the parent had not failed yet: the child waits for it
    gate.open()

    assert child.wait(timeout=60) is JobState.CANCELLED
    with pytest.raises(JobFailedError, match=rf"its dependency afterok on job {parent.job_id} \(FAILED\)"):
        child.result()


def test_a_parent_known_to_have_failed_is_refused_at_submit(cluster):
    parent = cluster.submit(tasks.fail, "broken")
    with pytest.raises(tasks.TaskFailure):
        parent.result(timeout=60)
    with pytest.raises(
        SubmitError, match=rf"cannot pass job {parent.job_id} \(fail\) to add: .*ended FAILED"
    ):
        cluster.submit(tasks.add, [parent], 1)


def test_a_parent_that_already_completed_is_no_slurm_dependency(cluster):
    parent = cluster.submit(tasks.add, 1, 2)
    parent.result(timeout=60)  # Slurm may have forgotten it by the time the child is submitted
    child = cluster.submit(tasks.add, parent, 10)
    assert child.depends_on == ()
    assert child.result(timeout=60) == 13


def test_jobs_of_another_cluster_are_refused_at_submit(make_cluster, tmp_path):
    here, same_place = make_cluster(), make_cluster()
    parent = here.submit(tasks.add, 1, 2)
    assert same_place.submit(tasks.add, parent, 1).result(timeout=60) == 4  # another object, same place

    packaging = {"type": "none", "pythonpath": [REPO], "python": sys.executable}
    elsewhere = Cluster(
        LocalCommandBackend(str(tmp_path / "other")), packaging, job_root=str(tmp_path / "root2")
    )
    with pytest.raises(
        SubmitError, match=rf"job {parent.job_id} \(add\) was submitted to another cluster or job root"
    ):
        elsewhere.submit(tasks.add, {"x": parent}, 1)


def test_job_arguments_need_afterok(cluster):
    parent = cluster.submit(tasks.nap, 0.2)
    with pytest.raises(SubmitError, match=r"waits with 'afterany'.*need afterok"):
        cluster.submit(tasks.add.after(parent, dependency_type="afterany"), parent, 1)


def test_a_job_where_it_cannot_be_swapped_is_a_clear_error(cluster):
    parent = cluster.submit(tasks.nap, 0.1)
    with pytest.raises(SerializationError, match=r"argument 0 \(set .*not inside a set, a dict key"):
        cluster.submit(dataflow_tasks.echo, {parent})


def test_the_node_names_a_parent_without_result(tmp_path, monkeypatch):
    monkeypatch.setattr(dataflow, "RESULT_VISIBLE_WITHIN", 0.2)
    missing = ResultOf("7", "prepare", str(tmp_path / "result-0.pkl"))
    with pytest.raises(ParentResultError, match=r"parent job 7 \(prepare\) left no result at .*result-0.pkl"):
        dataflow.inject(((missing,), {}))
    failed = tmp_path / "result-1.pkl"
    failed.write_bytes(dump_exception(ValueError("bad input"), "Traceback ..."))
    with pytest.raises(
        ParentResultError, match=r"parent job 8 \(prepare\) raised builtins.ValueError: bad input"
    ):
        dataflow.inject(((), {"x": [ResultOf("8", "prepare", str(failed))]}))
