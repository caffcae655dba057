"""Wheel and sync packaging through HostTransport, with the "cluster" cache in a tmp dir."""

from __future__ import annotations

import io
import os
import posixpath
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from slurm.backends.slurm import SlurmBackend
from slurm.errors import ConfigError
from slurm.packaging import builds, make_packaging
from slurm.packaging.environment import build_script
from slurm.packaging.sync import MANIFEST, SyncPackaging, glob_to_regex, remote_dir_name
from slurm.packaging.wheel import WheelPackaging
from slurm.transports.host import HostTransport

PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tinypkg"
version = "0.1"
"""


class CountingTransport(HostTransport):
    """HostTransport that remembers uploads, to prove caches are hit."""

    def __init__(self) -> None:
        self.puts: list[str] = []
        self.commands: list[str] = []
        self.writes: list[str] = []
        self.synced: list[str] = []  # the files in every archive sync packaging uploaded, in order

    def run(self, command, **kwargs):
        self.commands.append(command)
        return super().run(command, **kwargs)

    def put(self, local_path: str, remote_path: str) -> None:
        self.puts.append(remote_path)
        super().put(local_path, remote_path)

    def write_bytes(self, path: str, data: bytes, mode: int | None = None) -> None:
        self.writes.append(path)
        if posixpath.basename(path).startswith(".upload-"):
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                self.synced += archive.getnames()
        super().write_bytes(path, data, mode)


@pytest.fixture(autouse=True)
def host_cache(tmp_path, monkeypatch) -> Path:
    """This host's packaging cache (builds, resolutions, wheels) in the test's tmp dir."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "host-cache"))
    return tmp_path / "host-cache/slurm-sdk"


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
    return subprocess.run(
        ["sh", "-c", "\n".join(lines)], capture_output=True, text=True, check=True
    ).stdout.strip()


# --- wheel -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "unpacked_here"),
    [
        ("tinypkg/__init__.py", True),
        ("tinypkg-1.data/scripts/tool", False),  # scripts go to bin/: pip's job
        ("../escape.py", False),
        ("/etc/absolute.py", False),
    ],
)
def test_a_layer_is_unpacked_here_only_for_a_small_pure_wheel(tmp_path, member, unpacked_here):
    from slurm.packaging.environment import UNPACK_LIMIT, unpacked

    wheel = tmp_path / "tinypkg-1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("tinypkg-1.dist-info/METADATA", "Name: tinypkg\n")
        archive.writestr(member, "x = 1\n")
    files = unpacked(wheel)
    assert (files is not None) == unpacked_here
    if files is not None:
        assert files[member] == (b"x = 1\n", 0o600) and len(files) == 2
    with zipfile.ZipFile(wheel, "a") as archive:
        for index in range(UNPACK_LIMIT):
            archive.writestr(f"tinypkg/m{index}.py", "")
    assert unpacked(wheel) is None  # too many files for one upload's checks: pip installs it


def test_wheel_child_reuses_the_env_without_building(tmp_path, backend, monkeypatch):
    env = tmp_path / "cache/envs/0123456789abcdef"
    (env / "bin").mkdir(parents=True)
    (env / "bin/python").symlink_to(sys.executable)
    (env / ".ready").touch()
    monkeypatch.setattr(builds, "build_wheel", lambda *a: pytest.fail("child must not build"))
    layer = tmp_path / "cache/projects/fedcba9876543210"
    layer.mkdir(parents=True)
    (layer / ".ready").touch()
    config = {"type": "wheel", "env": str(env), "layer": str(layer), "python": "python3"}
    child = make_packaging(config)
    child.prepare(backend)
    assert child.python_command() == f"{env}/bin/python"
    assert child.to_config() == config and child.setup_lines() == [
        f'export PYTHONPATH={layer}"${{PYTHONPATH:+:$PYTHONPATH}}"'
    ]
    (layer / ".ready").unlink()
    with pytest.raises(ConfigError, match="missing or incomplete"):
        make_packaging(config).prepare(backend)
    with pytest.raises(ConfigError, match="missing or incomplete"):
        WheelPackaging(env=str(tmp_path / "nope")).prepare(backend)
    (env / ".ready").unlink()  # a half-built env is no env for a child either
    with pytest.raises(ConfigError, match="missing or incomplete"):
        make_packaging({"type": "wheel", "env": str(env)}).prepare(backend)


def test_wheel_not_prepared_and_bad_project_are_clear_errors(tmp_path, backend):
    with pytest.raises(ConfigError, match="prepare"):
        WheelPackaging().python_command()
    with pytest.raises(ConfigError, match=r"no pyproject.toml"):
        WheelPackaging(project_dir=str(tmp_path), cache_root=str(tmp_path / "c")).prepare(backend)


def test_a_wheel_is_built_by_the_backend_itself_without_pip(tmp_path, monkeypatch):
    """With pyproject_hooks installed (the dev extra has it, through build), the project's backend builds
    the wheel in one process; pip is not started."""
    pytest.importorskip("pyproject_hooks")
    project = make_project(tmp_path / "proj", "5")
    monkeypatch.setattr(builds, "_run_bounded", lambda *args: pytest.fail("pip wheel must not run"))
    wheel = builds.build_wheel(project, tmp_path / "out")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("tinypkg/__init__.py") == b"VALUE = 5\n"


def test_a_wheel_build_that_hangs_is_stopped_with_the_command_and_limit(tmp_path, monkeypatch):
    """A build backend that never returns (as pip waiting on a silent package index) ends in an error
    naming the command and the limit, instead of holding the submission forever."""
    project = tmp_path / "stuck"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "stuck_backend"\nbackend-path = ["."]\n'
        '[project]\nname = "stuck"\nversion = "0.1"\n'
    )
    (project / "stuck_backend.py").write_text(
        "import time\n\ndef build_wheel(*args, **kwargs):\n    time.sleep(300)\n"
    )
    # The limit only has to be shorter than the hang: each of the two attempts (the backend through
    # pyproject_hooks, then pip) is stopped once it passes, wherever it has got to.
    monkeypatch.setattr(builds, "BUILD_TIMEOUT", 0.05)
    with pytest.raises(
        ConfigError, match=r"took longer than 0.05 s and was stopped: \$ .* -m pip wheel"
    ) as raised:
        builds.build_wheel(project, tmp_path / "out")
    assert "package index" in str(raised.value)


# --- the cluster-side build script: lock, half-built and vanished-interpreter envs ---------------------


def fake_python(tmp_path: Path, log: Path, pause: float = 0) -> Path:
    """Stands in for the cluster's python: ``-m venv ... DIR`` makes DIR/bin/python; every call is logged,
    so the test can count builds, and takes ``pause`` seconds (a build that holds its lock a while)."""
    script = tmp_path / "fakepython"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
if [ "$2" = venv ]; then
  for last; do :; done
  mkdir -p "$last/bin" && ln -sf {sys.executable} "$last/bin/python"
fi
sleep {pause}
exit 0
""")
    script.chmod(0o755)
    return script


def run_build(python: Path, env: str) -> int:
    return subprocess.run(
        [
            "sh",
            "-c",
            build_script(str(python), env, posixpath.dirname(env) + "/../wheelhouse", [], ["/x.whl"], True),
        ]
    ).returncode


def venv_builds(log: Path) -> int:
    return sum(" venv " in f" {line} " for line in log.read_text().splitlines()) if log.exists() else 0


def test_build_script_concurrent_builds_build_once(tmp_path):
    log = tmp_path / "calls.log"
    python = fake_python(tmp_path, log, pause=0.2)  # the other builds come while the first holds the lock
    env = str(tmp_path / "envs/abc")
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(run_build(python, env))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [0, 0, 0]
    assert venv_builds(log) == 1  # the two that waited on the lock found it ready
    assert sorted(os.listdir(tmp_path / "envs")) == ["abc", "abc.lock"]


def test_build_script_rebuilds_half_built_and_orphaned_envs(tmp_path):
    log = tmp_path / "calls.log"
    python = fake_python(tmp_path, log)
    env = tmp_path / "envs/abc"
    assert run_build(python, str(env)) == 0 and venv_builds(log) == 1
    assert run_build(python, str(env)) == 0 and venv_builds(log) == 1  # healthy: reused

    (env / "stale-file").touch()
    (env / ".ready").unlink()  # killed mid-build
    assert run_build(python, str(env)) == 0 and venv_builds(log) == 2
    assert not (env / "stale-file").exists()  # rebuilt from scratch, not patched

    (env / "bin/python").unlink()  # its interpreter vanished ("bin/python: No such file or directory")
    (env / "bin/python").symlink_to(tmp_path / "gone/python3.11")
    assert run_build(python, str(env)) == 0 and venv_builds(log) == 3
    assert os.path.exists(env / "bin/python")


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
    options = {"type": "sync", "source_dir": str(source), "remote_dir": str(remote), "include_sdk": False}
    first = make_packaging(options)
    first.prepare(backend)
    synced = {
        "pyproject.toml",
        "tool.py",
        "src/tinypkg/__init__.py",
        "src/tinypkg/keep.py",
        "src/tinypkg/gone.py",
    }
    assert set(backend.transport.synced) == synced
    assert remote_files(remote) == synced | {MANIFEST}

    unchanged = make_packaging(options)
    writes_before = len(backend.transport.writes)
    unchanged.prepare(backend)
    assert len(backend.transport.writes) == writes_before  # no archive, no manifest

    (source / "src/tinypkg/keep.py").write_text("A = 2\n")
    (source / "src/tinypkg/new.py").write_text("C = 1\n")
    (source / "src/tinypkg/gone.py").unlink()
    second = make_packaging(options)
    uploaded_before = len(backend.transport.synced)
    second.prepare(backend)
    assert backend.transport.synced[uploaded_before:] == ["src/tinypkg/keep.py", "src/tinypkg/new.py"]
    assert (remote / "src/tinypkg/keep.py").read_text() == "A = 2\n"
    assert remote_files(remote) == synced - {"src/tinypkg/gone.py"} | {"src/tinypkg/new.py", MANIFEST}


def test_sync_puts_the_remote_tree_on_pythonpath_and_children_reuse_it(tmp_path, backend, monkeypatch):
    source = make_tree(tmp_path / "proj")
    remote = tmp_path / "remote"
    strategy = SyncPackaging(
        source_dir=str(source), cache_root=str(tmp_path / "cache"), python=sys.executable, include_sdk=False
    )
    strategy.prepare(backend)
    assert strategy.env is None  # no dependencies, no SDK to ship: no venv, the python runs as it is
    remote = tmp_path / f"cache/src/{remote_dir_name(source.resolve())}"
    code = "import tinypkg, tool; print(tinypkg.__file__, tool.__file__)"
    assert run_in_env(strategy, code) == f"{remote}/src/tinypkg/__init__.py {remote}/tool.py"

    config = strategy.to_config()
    assert config["prepared"] is True and config["remote_dir"] == str(remote) and config["env"] is None
    monkeypatch.setattr("slurm.packaging.sync.scan_tree", lambda *a: pytest.fail("child must not sync"))
    child = make_packaging(config)
    child.prepare(backend)
    assert child.setup_lines() == strategy.setup_lines()


def test_sync_default_remote_dir_under_home_and_errors(tmp_path, backend):
    with pytest.raises(ConfigError, match="not prepared"):
        SyncPackaging().setup_lines()
    with pytest.raises(ConfigError, match="missing on the cluster"):
        SyncPackaging(remote_dir=str(tmp_path / "nope"), prepared=True).prepare(backend)
    assert SyncPackaging(remote_dir="~/x")._remote_dir(backend.transport, tmp_path) == os.path.expanduser(
        "~/x"
    )


def test_sync_projects_with_the_same_dir_name_get_their_own_remote_trees(tmp_path, backend):
    """Two checkouts both called ``app`` must not overwrite each other on the cluster."""
    remotes = []
    for parent in ("one", "two"):
        source = make_project(tmp_path / parent / "app")
        (source / "src/tinypkg/__init__.py").write_text(f"VALUE = {parent!r}\n")
        strategy = SyncPackaging(
            source_dir=str(source),
            cache_root=str(tmp_path / "cache"),
            python=sys.executable,
            include_sdk=False,
        )
        strategy.prepare(backend)
        remotes.append(strategy)
    assert remotes[0].remote_dir != remotes[1].remote_dir
    assert [run_in_env(s, "import tinypkg; print(tinypkg.VALUE)") for s in remotes] == ["one", "two"]
    assert os.path.basename(remotes[0].remote_dir).startswith("app-")


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("**/*.py", "a.py", True),
        ("**/*.py", "src/pkg/a.py", True),
        ("**/*.py", "a.pyc", False),
        ("*.py", "src/a.py", False),
        ("pyproject.toml", "pyproject.toml", True),
        ("pyproject.toml", "sub/pyproject.toml", False),
        ("data/**", "data/x/y.csv", True),
        ("a?.txt", "ab.txt", True),
    ],
)
def test_glob_patterns(pattern, path, matches):
    assert bool(glob_to_regex(pattern).match(path)) is matches


def test_concurrent_syncs_of_one_project_all_succeed(tmp_path):
    """Several submitters syncing the same project at once (one remote tree) must not trip over each other."""
    source = make_tree(tmp_path / "proj")
    remote = tmp_path / "remote"
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            SyncPackaging(source_dir=str(source), remote_dir=str(remote), include_sdk=False).prepare(
                SlurmBackend(HostTransport())
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (remote / "src/tinypkg/keep.py").read_text() == "A = 1\n"
    assert not [p for p in remote.iterdir() if p.name.startswith((".extract-", ".upload-"))]
