"""Wheel packaging that builds for real: a project's wheel and venv built with pip once per content, and the
host's wheel cache keyed by the source. Each build costs seconds of pip, which is why they live in the slow
tier; the rest of wheel and sync packaging stays in tests/fast/test_packaging_wheel_sync.py."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurm.backends.slurm import SlurmBackend
from slurm.packaging import builds, make_packaging
from tests.fast.test_packaging_wheel_sync import (  # noqa: F401 (host_cache: an autouse fixture)
    CountingTransport,
    host_cache,
    make_project,
    run_in_env,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def backend() -> SlurmBackend:
    return SlurmBackend(CountingTransport())


def test_wheel_env_built_once_per_content_and_imports_the_wheel(tmp_path, backend):
    project = make_project(tmp_path / "proj")
    cache = str(tmp_path / "cache")
    options = {
        "type": "wheel",
        "project_dir": str(project),
        "python": sys.executable,
        "cache_root": cache,
        "include_sdk": False,
    }
    first = make_packaging(options)
    first.prepare(backend)
    env = first.to_config()["env"]
    assert env.startswith(cache + "/envs/") and os.path.exists(env + "/.ready")
    assert first.last_environment.built
    # The module comes from the project layer beside the env, not from the project's source tree.
    layer = first.to_config()["layer"]
    assert layer.startswith(cache + "/projects/") and os.path.exists(layer + "/.ready")
    location = run_in_env(
        first, "import tinypkg, sys; print(tinypkg.VALUE, tinypkg.__file__, sys.executable)"
    )
    assert location == f"1 {layer}/tinypkg/__init__.py {env}/bin/python"
    assert backend.transport.puts == []  # the small pure wheel was unpacked here and written as its layer

    again = make_packaging(options)  # same content: same env, nothing built or uploaded
    again.prepare(backend)
    assert again.to_config()["env"] == env and backend.transport.puts == []
    assert not again.last_environment.built
    name = os.path.basename(env)
    assert sorted(os.listdir(cache + "/envs")) == [name, name + ".lock"]  # no temp dirs left

    (project / "src/tinypkg/__init__.py").write_text("VALUE = 2\n")
    changed = make_packaging(options)  # an edit: a new project layer on the same venv
    commands = len(backend.transport.commands)
    changed.prepare(backend)
    # The interpreter's probe, then one look at venv and layer; the layer is written, not installed by pip.
    assert len(backend.transport.commands) == commands + 2 and backend.transport.puts == []
    new_layer = changed.to_config()["layer"]
    assert changed.to_config()["env"] == env and new_layer != layer and os.path.exists(new_layer + "/.ready")
    assert not changed.last_environment.built
    assert run_in_env(changed, "import tinypkg; print(tinypkg.VALUE)") == "2"


def test_wheel_builds_are_cached_by_source_content(tmp_path, monkeypatch):
    project = make_project(tmp_path / "proj")
    first = builds.cached_wheel(project)
    monkeypatch.setattr(builds, "build_wheel", lambda *a: pytest.fail("unchanged source must not rebuild"))
    assert builds.cached_wheel(project) == first
    (project / "build").mkdir()  # stale build output is not part of the source
    (project / "build/junk.py").write_text("x = 1\n")
    assert builds.cached_wheel(project) == first
    monkeypatch.undo()
    parts = ("src", "pyproject.toml")  # a build known to read only these (the SDK's own)
    partial = builds.cached_wheel(project, parts)
    monkeypatch.setattr(
        builds, "build_wheel", lambda *a: pytest.fail("a file outside parts must not rebuild")
    )
    (project / "notes.txt").write_text("not read by this build\n")
    assert builds.cached_wheel(project, parts) == partial
    monkeypatch.undo()
    (project / "src/tinypkg/__init__.py").write_text("VALUE = 3\n")
    assert builds.cached_wheel(project) != first


# --- an edit patches the last wheel --------------------------------------------------------------

#: Edits of a two-module project; True: the wheel carries the edited file verbatim, so a patch may serve.
EDITS = {
    "module": (lambda p, n: (p / "src/tinypkg/__init__.py").write_text(f"VALUE = {n}\n"), True),
    "submodule": (lambda p, n: (p / "src/tinypkg/util.py").write_text(f"def f():\n    return {n}\n"), True),
    "description": (
        lambda p, n: (p / "pyproject.toml").write_text(PATCH_PYPROJECT.replace("0.1", f"0.1.{n}")),
        False,
    ),
    "readme": (lambda p, n: (p / "README.md").write_text(f"readme {n}\n"), False),
    "new module": (lambda p, n: (p / f"src/tinypkg/new{n}.py").write_text("X = 1\n"), False),
}
BACKEND_BUILD = builds.build_wheel
PATCH_PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tinypkg"
version = "0.1"
readme = "README.md"
"""


def _members(wheel) -> tuple[dict[str, bytes], set[tuple[str, ...]]]:
    """A wheel's members by name (RECORD aside) and its RECORD lines as a set (their order is the
    backend's)."""
    import csv
    import io
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    record = next(name for name in members if name.endswith(".dist-info/RECORD"))
    rows = {tuple(row) for row in csv.reader(io.StringIO(members.pop(record).decode()))}
    return members, rows


@given(steps=st.lists(st.sampled_from(sorted(EDITS)), min_size=1, max_size=2))
@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_an_edit_gets_the_wheel_the_backend_would_build(tmp_path_factory, monkeypatch, steps):
    """After each edit, ``cached_wheel`` returns the same members, bytes and RECORD lines as a fresh backend
    build of the edited tree, and runs the backend only when an edited file is not carried verbatim."""
    root = tmp_path_factory.mktemp("patch")
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "host-cache"))
    project = make_project(root / "proj")
    (project / "pyproject.toml").write_text(PATCH_PYPROJECT)
    (project / "README.md").write_text("readme\n")
    (project / "src/tinypkg/util.py").write_text("def f():\n    return 0\n")
    backend_runs = []
    real_build = BACKEND_BUILD  # not builds.build_wheel: monkeypatch keeps an earlier example's wrapper
    monkeypatch.setattr(builds, "build_wheel", lambda *a: backend_runs.append(a) or real_build(*a))
    builds.cached_wheel(project)
    for number, name in enumerate(steps, start=1):
        edit, verbatim = EDITS[name]
        edit(project, number)
        runs = len(backend_runs)
        wheel = builds.cached_wheel(project)
        assert len(backend_runs) == runs + (0 if verbatim else 1), f"edit {name!r}"
        fresh = real_build(project, root / f"fresh-{number}")
        assert _members(wheel) == _members(fresh), f"edit {name!r}"
