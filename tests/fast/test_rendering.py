"""Rendered job scripts, compared exactly with tests/fast/golden/*.sh (UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm.node.checkpoint import Checkpointing
from slurm.node.layout import expand_log_pattern
from slurm.packaging.none import NonePackaging
from slurm.rendering import render_script
from slurm.resources import Resources

GOLDEN = Path(__file__).parent / "golden"
JOB_DIR = "/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d"

CASES = {
    "minimal": dict(job_name="add", resources=Resources(), array=False, packaging=NonePackaging()),
    "full_resources": dict(
        job_name="train",
        resources=Resources(
            time="1-02:00:00",
            cpus=4,
            mem="16g",
            gpus="a100:2",
            partition="gpu",
            account="proj",
            requeue=False,
            sbatch={"constraint": "fast", "exclusive": True, "mail_type": "END"},
        ),
        array=False,
        packaging=NonePackaging(pythonpath=["/opt/code", "/shared/my libs"], python="/opt/venv/bin/python"),
    ),
    "array": dict(
        job_name="square",
        resources=Resources(time=30, mem=512),
        array=True,
        packaging=NonePackaging(pythonpath=["/opt/slurm_sdk_dev/src"]),
    ),
    "ranks": dict(
        job_name="train",
        array=False,
        packaging=NonePackaging(),
        resources=Resources(time="00:10:00", cpus=2, nodes=2, ntasks_per_node=2),
    ),
    "checkpoint": dict(
        job_name="train",
        array=False,
        packaging=NonePackaging(),
        resources=Resources(time="00:10:00", checkpoint=Checkpointing(90, 5)),
    ),
}


def render(case: dict) -> str:
    packaging = case["packaging"]
    return render_script(
        job_name=case["job_name"],
        job_dir=JOB_DIR,
        resources=case["resources"],
        array=case["array"],
        setup_lines=packaging.setup_lines(),
        python=packaging.python_command(),
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_script_matches_golden(name):
    path = GOLDEN / f"{name}.sh"
    text = render(CASES[name])
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{path} differs; if the change is intended, rerun with UPDATE_GOLDEN=1"


def test_rendering_is_deterministic():
    assert render(CASES["full_resources"]) == render(CASES["full_resources"])


def test_cluster_defaults_fill_unset_resources_only():
    task_resources = Resources(time="00:10:00", sbatch={"qos": "high"})
    merged = task_resources.over(
        Resources(time="00:01:00", partition="debug", sbatch={"qos": "low", "nice": 5})
    )
    assert (merged.time, merged.partition) == ("00:10:00", "debug")
    assert merged.sbatch == {"qos": "high", "nice": 5}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("/j/slurm-%j.out", "/j/slurm-12.out"),
        ("/j/slurm-%A_%a.err", "/j/slurm-12_3.err"),
        ("/j/%x-100%%-%q", "/j/train-100%-%q"),
    ],
)
def test_log_patterns_expand_like_slurm(pattern, expected):
    assert (
        expand_log_pattern(pattern, job_id="12", array_job_id="12", array_task_id="3", job_name="train")
        == expected
    )
