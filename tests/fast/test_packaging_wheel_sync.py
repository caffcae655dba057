"""Wheel and sync packaging through LocalTransport, with the "cluster" cache in a tmp dir."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from slurm.backends.local import LocalTransport
from slurm.backends.slurm import SlurmBackend
from slurm.errors import ConfigError
from slurm.packaging import make_packaging
from slurm.packaging import wheel as wheel_module
from slurm.packaging.sync import MANIFEST, SyncPackaging, glob_to_regex
from slurm.packaging.wheel import WheelPackaging, install_script

PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tinypkg"
version = "0.1"
"""


class CountingTransport(LocalTransport):
    """LocalTransport that remembers uploads, to prove caches are hit."""

    def __init__(self) -> None:
        self.puts: list[str] = []
        self.writes: list[str] = []

    def put(self, local_path: str, remote_path: str) -> None:
        self.puts.append(remote_path)
        super().put(local_path, remote_path)

    def write_bytes(self, path: str, data: bytes, mode: int | None = None) -> None:
        self.writes.append(path)
        super().write_bytes(path, data, mode)


@pytest.fixture
def backend() -> SlurmBackend:
    return SlurmBackend(CountingTransport())


def make_project(root: Path, value: str = "1") -> Path:
    (root / "src/tinypkg").mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "src/tinypkg/__init__.py").write_text(f"VALUE = {value}\n")
    return root


def run_in_env(strategy, code: str) -> str:
    lines = [*strategy.setup_lines(), f"{strategy.python_command()} -c {code!r}"]
    return subprocess.run(["sh", "-c", "\n".join(lines)], capture_output=True, text=True, check=True).stdout.strip()


# --- wheel -------------------------------------------------------------------------------------------


def test_wheel_env_built_once_per_content_and_imports_the_wheel(tmp_path, backend):
    project = make_project(tmp_path / "proj")
    cache = str(tmp_path / "cache")
    options = {"type": "wheel", "project_dir": str(project), "python": sys.executable, "cache_root": cache,
               "include_sdk": False}
    first = make_packaging(options)
    first.prepare(backend)
    env = first.to_config()["env"]
    assert env.startswith(cache + "/envs/") and os.path.exists(env + "/.ready")
    # The module comes from the env's site-packages, not from the project's source tree.
    location = run_in_env(first, "import tinypkg; print(tinypkg.VALUE, tinypkg.__file__)")
    assert location.startswith("1 " + env + "/lib/")
    assert len(backend.transport.puts) == 1

    again = make_packaging(options)  # rebuilt wheel, same content: same env, nothing uploaded
    again.prepare(backend)
    assert again.to_config()["env"] == env and len(backend.transport.puts) == 1
    assert [p for p in os.listdir(cache + "/envs")] == [os.path.basename(env)]  # no temp dirs left

    (project / "src/tinypkg/__init__.py").write_text("VALUE = 2\n")
    changed = make_packaging(options)
    changed.prepare(backend)
    assert changed.to_config()["env"] != env
    assert run_in_env(changed, "import tinypkg; print(tinypkg.VALUE)") == "2"


def test_wheel_child_reuses_the_env_without_building(tmp_path, backend, monkeypatch):
    env = tmp_path / "cache/envs/0123456789abcdef"
    env.mkdir(parents=True)
    (env / ".ready").touch()
    monkeypatch.setattr(wheel_module, "build_wheel", lambda *a: pytest.fail("child must not build"))
    child = make_packaging({"type": "wheel", "env": str(env), "python": "python3"})
    child.prepare(backend)
    assert child.python_command() == f"{env}/bin/python"
    assert child.to_config() == {"type": "wheel", "env": str(env), "python": "python3"}
    with pytest.raises(ConfigError, match="missing or incomplete"):
        WheelPackaging(env=str(tmp_path / "nope")).prepare(backend)


def test_wheel_includes_the_sdk_when_the_project_lacks_it(tmp_path, monkeypatch):
    built: list[str] = []

    def fake_build(project_dir: Path, out_dir: Path) -> Path:
        built.append(str(project_dir))
        return Path(__file__)  # any file: _contains_package is stubbed below

    monkeypatch.setattr(wheel_module, "build_wheel", fake_build)
    monkeypatch.setattr(wheel_module, "_contains_package", lambda wheel, package: False)
    make_project(tmp_path)
    WheelPackaging(project_dir=str(tmp_path))._build(tmp_path / "out")
    assert built == [str(tmp_path.resolve()), str(Path(wheel_module.__file__).resolve().parents[3])]


def test_wheel_not_prepared_and_bad_project_are_clear_errors(tmp_path, backend):
    with pytest.raises(ConfigError, match="prepare"):
        WheelPackaging().python_command()
    with pytest.raises(ConfigError, match="no pyproject.toml"):
        WheelPackaging(project_dir=str(tmp_path), cache_root=str(tmp_path / "c")).prepare(backend)


def test_install_script_loser_of_a_race_keeps_the_winners_env(tmp_path):
    """Two prepares of one wheel: the second to finish must leave the first's env alone and succeed."""
    fake_python = tmp_path / "fakepython"
    fake_python.write_text('#!/bin/sh\n[ "$2" = venv ] && mkdir -p "$5/bin"\nexit 0\n')
    fake_python.chmod(0o755)
    env = tmp_path / "envs/abc"
    (env / "bin").mkdir(parents=True)
    (env / ".ready").write_text("winner")
    subprocess.run(["sh", "-c", install_script(str(fake_python), ["/x.whl"], str(env))], check=True)
    assert (env / ".ready").read_text() == "winner" and not (env / "bin/.ready").exists()
    assert os.listdir(tmp_path / "envs") == ["abc"]


def test_install_script_concurrent_builds_end_with_one_ready_env(tmp_path):
    fake_python = tmp_path / "fakepython"
    fake_python.write_text('#!/bin/sh\n[ "$2" = venv ] && mkdir -p "$5/bin"\nsleep 0.2\nexit 0\n')
    fake_python.chmod(0o755)
    env = str(tmp_path / "envs/abc")
    results: list[int] = []

    def install() -> None:
        results.append(subprocess.run(["sh", "-c", install_script(str(fake_python), ["/x.whl"], env)]).returncode)

    threads = [threading.Thread(target=install) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [0, 0, 0]
    assert sorted(os.listdir(env)) == [".ready", "bin"] and os.listdir(tmp_path / "envs") == ["abc"]


# --- sync --------------------------------------------------------------------------------------------


def make_tree(root: Path) -> Path:
    make_project(root)
    (root / "src/tinypkg/keep.py").write_text("A = 1\n")
    (root / "src/tinypkg/gone.py").write_text("B = 1\n")
    (root / "tool.py").write_text("TOOL = 1\n")
    (root / "README.md").write_text("not synced\n")
    for skipped in (".venv/lib", ".git", "src/tinypkg/__pycache__"):
        (root / skipped).mkdir(parents=True)
        (root / skipped / "x.py").write_text("skipped\n")
    return root


def remote_files(remote: Path) -> set[str]:
    return {p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file()}


def test_sync_uploads_only_changes_and_deletes_removed_files(tmp_path, backend):
    source = make_tree(tmp_path / "proj")
    remote = tmp_path / "remote"
    options = {"type": "sync", "source_dir": str(source), "remote_dir": str(remote)}
    first = make_packaging(options)
    first.prepare(backend)
    synced = {"pyproject.toml", "tool.py", "src/tinypkg/__init__.py", "src/tinypkg/keep.py", "src/tinypkg/gone.py"}
    assert set(first.last_uploaded) == synced
    assert remote_files(remote) == synced | {MANIFEST}

    unchanged = make_packaging(options)
    writes_before = len(backend.transport.writes)
    unchanged.prepare(backend)
    assert unchanged.last_uploaded == [] and len(backend.transport.writes) == writes_before

    (source / "src/tinypkg/keep.py").write_text("A = 2\n")
    (source / "src/tinypkg/new.py").write_text("C = 1\n")
    (source / "src/tinypkg/gone.py").unlink()
    second = make_packaging(options)
    second.prepare(backend)
    assert second.last_uploaded == ["src/tinypkg/keep.py", "src/tinypkg/new.py"]
    assert second.last_deleted == ["src/tinypkg/gone.py"]
    assert (remote / "src/tinypkg/keep.py").read_text() == "A = 2\n"
    assert remote_files(remote) == synced - {"src/tinypkg/gone.py"} | {"src/tinypkg/new.py", MANIFEST}


def test_sync_puts_the_remote_tree_on_pythonpath_and_children_reuse_it(tmp_path, backend, monkeypatch):
    source = make_tree(tmp_path / "proj")
    remote = tmp_path / "remote"
    strategy = SyncPackaging(source_dir=str(source), cache_root=str(tmp_path / "cache"), python=sys.executable)
    strategy.prepare(backend)
    remote = tmp_path / "cache/src/proj"
    code = "import tinypkg, tool; print(tinypkg.__file__, tool.__file__)"
    assert run_in_env(strategy, code) == f"{remote}/src/tinypkg/__init__.py {remote}/tool.py"

    config = strategy.to_config()
    assert config["prepared"] is True and config["remote_dir"] == str(remote)
    monkeypatch.setattr("slurm.packaging.sync.scan_tree", lambda *a: pytest.fail("child must not sync"))
    child = make_packaging(config)
    child.prepare(backend)
    assert child.setup_lines() == strategy.setup_lines()


def test_sync_default_remote_dir_under_home_and_errors(tmp_path, backend):
    with pytest.raises(ConfigError, match="not prepared"):
        SyncPackaging().setup_lines()
    with pytest.raises(ConfigError, match="missing on the cluster"):
        SyncPackaging(remote_dir=str(tmp_path / "nope"), prepared=True).prepare(backend)
    assert SyncPackaging(remote_dir="~/x")._remote_dir(backend.transport, tmp_path) == os.path.expanduser("~/x")


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("**/*.py", "a.py", True), ("**/*.py", "src/pkg/a.py", True), ("**/*.py", "a.pyc", False),
    ("*.py", "src/a.py", False), ("pyproject.toml", "pyproject.toml", True),
    ("pyproject.toml", "sub/pyproject.toml", False), ("data/**", "data/x/y.csv", True), ("a?.txt", "ab.txt", True),
])
def test_glob_patterns(pattern, path, matches):
    assert bool(glob_to_regex(pattern).match(path)) is matches
