"""A fresh client process pays for no heavy library before it needs one: ``import slurm`` plus ``Cluster()``
imports no pydantic (config validation), cloudpickle (payloads by value), YAML (config files) or paramiko
(SSH). How long it takes is the ``client_import`` bench figure, not a test."""

import subprocess
import sys

HEAVY = ("pydantic", "cloudpickle", "yaml", "paramiko")


def imported_after(code: str) -> set[str]:
    script = f"import sys; {code}; print(*sorted({{m.split('.')[0] for m in sys.modules}}))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def test_import_slurm_and_a_cluster_load_no_heavy_library():
    assert imported_after("import slurm; slurm.Cluster()") & set(HEAVY) == set()


def test_the_heavy_libraries_come_when_needed():
    """The check above can fail: the same probe sees YAML once a config file is read."""
    code = (
        "import os, tempfile, slurm; f = tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False); "
        "f.write('backend: {type: local}\\n'); f.close(); slurm.Cluster.from_env(f.name); os.unlink(f.name)"
    )
    assert "yaml" in imported_after(code)
