"""tests/bytecode.py: the test run's processes share bytecode outside the tree when told not to write it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.bytecode import private_cache_dir, share_bytecode


def test_nothing_changes_when_bytecode_is_written_as_usual(tmp_path):
    environ = {"XDG_CACHE_HOME": str(tmp_path)}
    assert share_bytecode(environ) is None
    assert environ == {"XDG_CACHE_HOME": str(tmp_path)}


def test_a_process_started_after_it_writes_bytecode_to_the_private_cache_not_beside_the_source(tmp_path):
    environ = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    environ.pop("PYTHONPYCACHEPREFIX", None)
    prefix = share_bytecode(environ)
    assert prefix == tmp_path / "cache" / "slurm-sdk" / "pycache"
    assert "PYTHONDONTWRITEBYTECODE" not in environ and environ["PYTHONPYCACHEPREFIX"] == str(prefix)
    assert prefix.stat().st_mode & 0o777 == 0o700
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "some_module.py").write_text("VALUE = 1\n")
    subprocess.run(
        [sys.executable, "-c", "import some_module"], cwd=tmp_path / "src", env=environ, check=True
    )
    assert not (tmp_path / "src" / "__pycache__").exists()
    assert [path.name for path in prefix.rglob("some_module.*.pyc")] == [
        f"some_module.{sys.implementation.cache_tag}.pyc"
    ]


def test_a_prefix_the_user_chose_is_kept(tmp_path):
    environ = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp_path / "mine")}
    assert share_bytecode(environ) == tmp_path / "mine"
    assert environ == {"PYTHONPYCACHEPREFIX": str(tmp_path / "mine")}


def test_a_cache_directory_others_can_write_to_is_not_used(tmp_path):
    (tmp_path / "slurm-sdk" / "pycache").mkdir(parents=True)
    (tmp_path / "slurm-sdk" / "pycache").chmod(0o777)
    assert private_cache_dir(tmp_path) is None
    environ = {"PYTHONDONTWRITEBYTECODE": "1", "XDG_CACHE_HOME": str(tmp_path)}
    assert share_bytecode(environ) is None
    assert environ == {"PYTHONDONTWRITEBYTECODE": "1", "XDG_CACHE_HOME": str(tmp_path)}
