"""Renamed names keep working for one release, with a DeprecationWarning that names the replacement; the
new names are what the SDK itself uses (this suite passes with -W error::DeprecationWarning)."""

from __future__ import annotations

import pytest

import slurm
import slurm.backends.local
import slurm.job
from slurm import JobState, MappedJobs
from slurm.backends.local import HostTransport
from tests.fast import tasks


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        (slurm, "ArrayJob", MappedJobs),
        (slurm.job, "ArrayJob", MappedJobs),
        (slurm.backends.local, "LocalTransport", HostTransport),
    ],
)
def test_old_names_are_the_new_objects_with_a_warning(module, old, new):
    with pytest.warns(
        DeprecationWarning, match=rf"{module.__name__}\.{old} is deprecated.*use .*{new.__name__}"
    ):
        assert getattr(module, old) is new


def test_unknown_names_still_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = slurm.job.Nothing


def test_properties_that_asked_the_cluster_warn_and_still_answer(cluster):
    job = cluster.submit(tasks.add, 1, 2)
    jobs = cluster.map(tasks.square, [1, 2])
    assert job.result(timeout=60) == 3 and jobs.results(timeout=60) == [1, 4]
    with pytest.warns(DeprecationWarning, match=r"Job\.state is deprecated.*Job\.query_state\(\)"):
        assert job.state is job.query_state() is JobState.COMPLETED
    with pytest.warns(DeprecationWarning, match=r"MappedJobs\.states is deprecated.*query_states\(\)"):
        assert jobs.states == jobs.query_states() == [JobState.COMPLETED] * 2
    with pytest.warns(DeprecationWarning, match=r"Cluster\.job_root is deprecated.*resolve_job_root\(\)"):
        assert cluster.job_root == cluster.resolve_job_root()
    with pytest.warns(DeprecationWarning, match=r"Backend\.kind is deprecated.*child_type"):
        assert cluster.backend.kind == cluster.backend.child_type == "local"
