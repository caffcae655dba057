"""Wheel packaging that builds for real: a project's wheel and venv built with pip once per content, and the
host's wheel cache keyed by the source. Each build costs seconds of pip, which is why they live in the slow
tier; the rest of wheel and sync packaging stays in tests/fast/test_packaging_wheel_sync.py."""

from __future__ import annotations

import os
import sys

import pytest

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
