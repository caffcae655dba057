"""``.after`` and ``.options`` chained in any order and number keep every setting of the task."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm import Task
from slurm.rendering import sbatch_options
from slurm.resources import Resources
from tests.fast import tasks

BASES = {"add (resources)": tasks.add, "fan_out (workflow)": tasks.fan_out, "square (bare)": tasks.square}

job_ids = st.lists(st.integers(1, 10**6).map(str), min_size=1, max_size=3)
changes = st.fixed_dictionaries(
    {},
    optional={
        "time": st.sampled_from(["00:05:00", "10", "1-00:00:00"]),
        "cpus": st.integers(1, 64),
        "mem": st.sampled_from(["512M", "4G"]),
        "gpus": st.integers(1, 8),
        "partition": st.sampled_from(["debug", "gpu"]),
        "requeue": st.booleans(),
        "sbatch": st.dictionaries(
            st.sampled_from(["qos", "constraint", "comment"]), st.sampled_from(["a", "b"]), max_size=2
        ),
    },
)
steps = st.lists(
    st.one_of(st.tuples(st.just("after"), job_ids), st.tuples(st.just("options"), changes)), max_size=6
)


def apply(task: Task, step: tuple) -> Task:
    kind, value = step
    return task.after(*value) if kind == "after" else task.options(**value)


@given(base=st.sampled_from(sorted(BASES)), chain=steps)
def test_any_chain_keeps_resources_dependencies_and_workflowness(base, chain):
    original = BASES[base]
    expected_resources, expected_ids = original.resources, list(original.dependencies)
    variant = original
    for step in chain:
        variant = apply(variant, step)
        if step[0] == "after":
            expected_ids += step[1]
        else:
            expected_resources = Resources.from_dict(step[1]).over(expected_resources)
    assert variant.resources == expected_resources
    assert sbatch_options(variant.resources) == sbatch_options(expected_resources)
    assert list(variant.dependencies) == expected_ids
    assert variant.dependency_type == "afterok"
    assert (variant.is_workflow, variant.name, variant.fn) == (
        original.is_workflow,
        original.name,
        original.fn,
    )
    # The original is never changed by its variants.
    assert original.dependencies == () and original.resources == BASES[base].resources


def test_after_keeps_the_tasks_own_resources():
    """The reported bug: a GPU task submitted after another job asked for no GPU."""
    gpu = tasks.add.options(gpus=2)
    assert gpu.after("5").resources.gpus == "2"
    assert tasks.add.after("5").resources.time == "00:01:00"


def test_options_after_after_keeps_the_dependencies():
    assert tasks.add.after("5").options(cpus=3).after("6").dependencies == ("5", "6")


def test_copy_copy_keeps_everything():
    variant = tasks.add.after("5", dependency_type="afterany").options(requeue=False)
    copied = copy.copy(variant)
    assert vars(copied) == vars(variant) and copied is not variant


def test_mixing_dependency_kinds_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"already waits with 'afterok'.*cannot also wait with 'afterany'"):
        tasks.add.after("5").after("6", dependency_type="afterany")


def test_requeue_option_renders_no_requeue():
    assert ("no-requeue", True) in sbatch_options(tasks.add.options(requeue=False).resources)
    assert ("requeue", True) in sbatch_options(tasks.add.options(requeue=True).resources)
    assert not [name for name, _ in sbatch_options(tasks.add.resources) if "requeue" in name]


def test_a_task_carries_what_functools_update_wrapper_would_set():
    """slurm.task copies the function's attributes itself (functools would cost every array task the
    import of collections): the same ones, with the same values."""
    import functools
    import inspect

    class Wrapper:
        pass

    expected = vars(functools.update_wrapper(Wrapper(), tasks.add.fn))
    assert {name: vars(tasks.add)[name] for name in expected} == expected
    assert inspect.signature(tasks.add) == inspect.signature(tasks.add.fn)


@pytest.mark.parametrize("decorator", ["task", "workflow"])
def test_in_a_jobs_runner_options_are_checked_on_first_use_not_at_definition(monkeypatch, decorator):
    """A job's runner imports the task's module to call the function: the options were checked when the
    submitting side imported it, so there they are checked only when used (a workflow submitting the task
    as a child), with the same error, and a task's rendered options are unchanged."""
    import slurm
    from slurm import ResourceError, node

    make = getattr(slurm, decorator)
    monkeypatch.setattr(node, "in_job_runner", True)
    broken = make(mem="lots")(tasks.add.fn)  # no error here, in a job
    with pytest.raises(ResourceError, match="malformed mem 'lots'"):
        broken.resources  # noqa: B018 - the property is what checks
    ranked = make(nodes=2, ntasks_per_node=2)(tasks.add.fn)
    if decorator == "workflow":
        with pytest.raises(ResourceError, match="put them on the @task it submits instead"):
            ranked.resources  # noqa: B018
    else:
        assert ranked.resources.world_size == 4
    fine = make(time="00:05:00", cpus=2, name="sum")(tasks.add.fn)
    monkeypatch.setattr(node, "in_job_runner", False)
    assert fine.name == "sum"
    assert sbatch_options(fine.resources) == sbatch_options(
        make(time="00:05:00", cpus=2)(tasks.add.fn).resources
    )
    with pytest.raises(ResourceError, match="malformed mem 'lots'"):
        make(mem="lots")(tasks.add.fn)  # outside a job's runner: at definition, as always
