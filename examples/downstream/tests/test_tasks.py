"""The project's tests: plain ones on the local backend, `integration` ones on a real Slurm cluster (the
kit's dev cluster by default, or the cluster of `--existing-cluster CONFIG`)."""

from __future__ import annotations

import pytest
from kit_example.tasks import where_am_i, word_counts

TIMEOUT = 240


def test_word_counts_locally(slurm_cluster):
    assert slurm_cluster.submit(word_counts, "a b a").result(timeout=TIMEOUT) == {"a": 2, "b": 1}


@pytest.mark.integration
def test_word_counts_on_slurm(slurm_cluster):
    jobs = slurm_cluster.map(word_counts, ["x y x", "Y y"])
    assert jobs.results(timeout=TIMEOUT) == [{"x": 2, "y": 1}, {"y": 2}]


@pytest.mark.integration
def test_tasks_import_from_the_mounted_project(slurm_cluster):
    seen = slurm_cluster.submit(where_am_i).result(timeout=TIMEOUT)
    assert seen["job_id"]  # it ran as a Slurm job
    assert seen["module_dir"].endswith("/src/kit_example")
    assert not seen["writable"]  # the project's source is mounted read-only on the nodes
    print(f"ran on {seen['host']} from {seen['module_dir']}")  # shown with -s / -rP
