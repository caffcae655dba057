"""The docs' Python blocks marked for the dev cluster run on it (the fast tier skips them).

Each page with such a block runs whole, in order, with ``dev_cluster`` true and $SLURM_SDK_CONFIG naming
this session's stack (what `slurm-dev-cluster config` prints), so ``Cluster.from_env()`` in a block
reaches the dev cluster over SSH.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from tests.docs_support import DEV_CLUSTER_MARK, PAGES, ROOT, run_page

ON_CLUSTER = [page for page in PAGES if DEV_CLUSTER_MARK in page.read_text()]

pytestmark = pytest.mark.integration


def test_some_page_has_a_dev_cluster_block():
    assert ON_CLUSTER


@pytest.mark.parametrize("page", ON_CLUSTER, ids=[str(p.relative_to(ROOT)) for p in ON_CLUSTER])
def test_dev_cluster_blocks_run(page, slurm_container, sdk_on_cluster, tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_SDK_CONFIG"}
    env["SLURM_SDK_PROJECT"] = slurm_container.project  # this worker's stack (a group's own under -n 2)
    run = subprocess.run(
        [sys.executable, "-m", "slurm_dev_cluster", "config", "-o", str(tmp_path / "sdk-config.yaml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    export, _, path = run.stdout.strip().partition("=")
    assert export == "export SLURM_SDK_CONFIG", run.stdout
    monkeypatch.setenv("SLURM_SDK_CONFIG", shlex.split(path)[0])
    monkeypatch.chdir(tmp_path)
    outcome = run_page(page, dev_cluster=True)
    assert not [reason for reason in outcome.skipped if "dev cluster" in reason], outcome.skipped
