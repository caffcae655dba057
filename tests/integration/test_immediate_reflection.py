"""Edit SDK code on the host; the very next job and a workflow's child see it: no rebuild, no restart."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from filelock import FileLock

from slurm_dev_cluster.stack import SDK_MOUNT

from . import devprobe, jobs

pytestmark = pytest.mark.integration
ORIGINAL_LINE = 'PROBE = "original"'


def _started_at(stack) -> dict[str, str]:
    return {c.name: str(c.state.started_at) for c in stack.docker.compose.ps()}


def test_immediate_reflection(slurm_cluster, slurm_stack):
    probe_file = Path(devprobe.__file__).resolve()
    lock_dir = slurm_stack.repo_root / ".slurm-sdk"  # gitignored
    lock_dir.mkdir(exist_ok=True)
    started = _started_at(slurm_stack)
    # Only this test touches the probe module; the lock keeps two sessions of it from interleaving.
    with FileLock(str(lock_dir / "devprobe.lock")):
        original = probe_file.read_text()
        assert ORIGINAL_LINE in original, (
            f"{probe_file} was left modified by an interrupted run: git checkout {probe_file}"
        )

        before = slurm_cluster.submit(jobs.devprobe_report).result(timeout=300)
        assert before == {"probe": "original", "slurm_file": f"{SDK_MOUNT}/src/slurm/__init__.py"}

        changed = f"changed-{uuid.uuid4().hex[:8]}"
        try:
            probe_file.write_text(original.replace(ORIGINAL_LINE, f'PROBE = "{changed}"'))
            after = slurm_cluster.submit(jobs.devprobe_report).result(timeout=300)
            assert after["probe"] == changed
            flow = slurm_cluster.submit(jobs.devprobe_workflow).result(timeout=300)
            assert flow["parent"]["probe"] == changed
            assert flow["child"]["probe"] == changed
        finally:
            probe_file.write_text(original)
    assert _started_at(slurm_stack) == started, "containers were restarted or recreated"
