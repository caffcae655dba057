"""A workflow's job builds the Cluster it submits children to with what its Task carries from the
submitting Cluster (``Task._for_cluster``: ``slurm.task`` does not import ``slurm.cluster``), through the
payload's pickling; a Task sent without it fails saying how to submit it."""

from __future__ import annotations

import json
import os
import pickle

import pytest

from slurm import Cluster
from slurm.node.layout import child_config_path
from slurm.serialization import dump_payload
from tests.fast import tasks


@pytest.fixture
def job_dir(cluster, tmp_path, monkeypatch) -> str:
    """A workflow's job directory with its child config; the job's environment, scrubbed in place by
    the workflow, is a copy of this process's."""
    monkeypatch.setattr("os.environ", dict(os.environ))
    with open(child_config_path(str(tmp_path)), "w") as handle:
        json.dump(cluster._child_config(), handle)
    return str(tmp_path)


def test_a_submitted_workflow_builds_its_cluster_on_the_node_and_submits_through_it(job_dir):
    sent = pickle.loads(pickle.dumps(tasks.nested_add._for_cluster(Cluster._from_child_config)))
    assert sent.run_on_node(job_dir, (1, 2), {})["sum"] == 3


def test_a_workflows_payload_loads_on_another_python_version(cluster):
    """What it carries goes by reference: by value (bytecode) it would load on this Python version only,
    and dump_payload refuses that when the nodes run another one."""
    sent = tasks.nested_add._for_cluster(cluster._from_child_config)
    dump_payload(sent, [((1, 2), {})], lambda: "3.0")


def test_a_workflow_not_sent_by_a_cluster_says_how_to_submit_it(job_dir):
    unsent = pickle.loads(pickle.dumps(tasks.nested_add))
    with pytest.raises(RuntimeError, match=r"Fix: submit the workflow with Cluster\.submit"):
        unsent.run_on_node(job_dir, (1, 2), {})
