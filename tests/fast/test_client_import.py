"""A fresh client process pays for no heavy library before it needs one: ``import slurm`` plus ``Cluster()``
imports no pydantic (config validation), cloudpickle (payloads by value), YAML (config files) or paramiko
(SSH), nor the SDK's submitting and waiting side. How long it takes is the ``client_import`` bench figure,
not a test."""

import subprocess
import sys

import pytest

HEAVY = ("pydantic", "cloudpickle", "yaml", "paramiko")


#: What only submitting, waiting or a config file needs (and the standard library modules only they use).
SUBMITTING_SIDE = (
    "slurm.config",
    "slurm.job",
    "slurm.records",
    "slurm.serialization",
    "slurm.waiting",
    "slurm.watcher",
    "json",
    "subprocess",
    "logging",
    "datetime",
)


def imported_after(code: str) -> set[str]:
    """Every module (dotted name) loaded in a fresh interpreter after ``code``."""
    script = f"import sys; {code}; print(*sorted(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.fixture(scope="module")
def after_a_cluster() -> set[str]:
    """What ``import slurm; slurm.Cluster()`` loads: one fresh interpreter for the tests that read it."""
    return imported_after("import slurm; slurm.Cluster()")


def test_import_slurm_and_a_cluster_load_no_heavy_library(after_a_cluster):
    assert packages(after_a_cluster) & set(HEAVY) == set()


def test_the_heavy_libraries_come_when_needed():
    """The check above can fail: the same probe sees YAML once a config file is read."""
    code = (
        "import os, tempfile, slurm; f = tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False); "
        "f.write('backend: {type: local}\\n'); f.close(); slurm.Cluster.from_env(f.name); os.unlink(f.name)"
    )
    assert "yaml" in packages(imported_after(code))


def test_a_cluster_is_built_without_the_submitting_side(after_a_cluster):
    assert after_a_cluster & set(SUBMITTING_SIDE) == set()


def test_the_submitting_side_comes_with_the_first_submission(tmp_path):
    """The check above can fail: a submission on the local backend loads what it left out."""
    code = (
        f"import slurm; c = slurm.Cluster(slurm.backends.local.LocalCommandBackend({str(tmp_path)!r}), "
        f"job_root={str(tmp_path / 'jobs')!r}); c.submit(abs, -1)"
    )
    loaded = imported_after(f"import slurm.backends.local; {code}")
    assert {"slurm.job", "slurm.records", "slurm.serialization", "slurm.watcher", "json"} <= loaded
