"""Dependency handling that runs pip (or uv) for real, offline from a local wheel directory: resolution for
another interpreter, environments built from the index or from a wheelhouse, and the SDK's wheel re-packed
from an installed copy. Each test costs pip runs of seconds, which is why they live in the slow tier; the
reading of requirements, the cache key and the messages stay in tests/fast/test_packaging_dependencies.py."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from slurm.errors import DependencyError, SubmitError
from slurm.packaging.builds import build_wheel
from slurm.packaging.environment import EnvironmentSpec, ensure_environment
from slurm.packaging.interpreter import probe_interpreter
from slurm.packaging.resolver import resolve
from slurm.transports.host import HostTransport
from tests.fast.test_packaging_dependencies import NODE, host_cache, write_pyproject  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.slow


# --- resolution for the node, offline from a local wheel directory -----------------------------------------


@pytest.fixture(scope="session")
def tiny_dep_wheels(tmp_path_factory) -> Path:
    """A directory holding one wheel, tiny-dep 1.2, built once per session (a pip build costs seconds);
    the tests only read it."""
    root = tmp_path_factory.mktemp("index")
    wheels = root / "wheels"
    project = write_pyproject(root / "dep", "")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\n'
        'build-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tiny-dep"\nversion = "1.2"\n'
        '[tool.setuptools]\npy-modules = ["tiny_dep"]\n'
    )
    (project / "tiny_dep.py").write_text("X = 1\n")
    wheels.mkdir()
    built = build_wheel(project, root / "build")
    built.rename(wheels / built.name)
    return wheels


@pytest.fixture
def local_index(tiny_dep_wheels, monkeypatch) -> Path:
    """A wheel directory as the only index, for both pip (PIP_*) and uv (UV_*): no network in the fast tier."""
    for name, value in {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(tiny_dep_wheels),
        "PIP_CONSTRAINT": "",
        "UV_NO_INDEX": "1",
        "UV_FIND_LINKS": str(tiny_dep_wheels),
        "UV_OFFLINE": "1",
    }.items():
        monkeypatch.setenv(name, value)
    return tiny_dep_wheels


RESOLVERS = [
    "pip",
    pytest.param(
        "uv",
        marks=pytest.mark.skipif(
            subprocess.run([sys.executable, "-c", "import uv"]).returncode != 0, reason="uv is not installed"
        ),
    ),
]


@pytest.mark.parametrize("tool", RESOLVERS)
def test_resolution_targets_the_node_python(local_index, tool):
    [pin] = resolve(["Tiny_Dep>=1"], NODE, tool)
    assert (pin.name, pin.version, pin.filename) == ("tiny-dep", "1.2", "tiny_dep-1.2-py3-none-any.whl")
    assert len(pin.sha256) == 64


@pytest.mark.parametrize("tool", RESOLVERS)
def test_unresolvable_dependency_names_package_python_platform_and_fix(local_index, tool):
    with pytest.raises(DependencyError) as info:
        resolve(["tiny-dep", "no-such-package-zz>=1"], NODE, tool, source="pyproject.toml of app")
    message = str(info.value)
    assert "cannot install no-such-package-zz (from pyproject.toml of app)" in message
    assert "tiny-dep," not in message  # the one that resolves is not blamed
    assert "CPython 3.13.5 on x86_64, glibc 2.41" in message and "manylinux_2_41_x86_64" in message
    assert "Fix:" in message and "Nothing was submitted" in message
    assert isinstance(info.value, SubmitError)


def test_resolutions_are_cached_per_requirements_and_target(local_index, monkeypatch):
    first = resolve(["tiny-dep"], NODE, "pip")
    monkeypatch.setenv("PIP_FIND_LINKS", str(local_index.parent / "empty"))  # index gone: the cache answers
    assert resolve(["tiny-dep"], NODE, "pip") == first
    with pytest.raises(DependencyError):  # another target is another resolution
        resolve(["tiny-dep"], dataclasses.replace(NODE, version="3.12.1"), "pip")


def test_env_from_the_index_keeps_its_wheels_for_the_next_env(local_index, tmp_path, monkeypatch):
    """Index path: the node's pip downloads into the cluster's wheelhouse, then installs from it only; the
    next env with the same dependencies needs neither the index nor a reachability probe."""
    transport = HostTransport()
    node = probe_interpreter(transport, sys.executable)
    pins = tuple(resolve(["tiny-dep"], node, "pip"))
    cache = str(tmp_path / "cluster-cache")
    first = ensure_environment(transport, EnvironmentSpec(sys.executable, node, pins), cache, "index")
    assert first.built and first.install_from == "index"
    assert (tmp_path / "cluster-cache/wheelhouse" / pins[0].filename).is_file()
    out = subprocess.run(
        [first.python, "-c", "import tiny_dep; print(tiny_dep.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(first.path + "/lib/")

    monkeypatch.setattr(
        "slurm.packaging.environment.index_reachable",
        lambda *a: pytest.fail("the wheelhouse has every wheel: no probe needed"),
    )
    other = dataclasses.replace(node, version=node.version)  # same interpreter, another set of built wheels
    wheel = build_wheel(write_pyproject(tmp_path / "proj", ""), tmp_path / "proj-build")
    second = ensure_environment(
        transport, EnvironmentSpec(sys.executable, other, pins, (wheel,)), cache, "auto"
    )
    assert second.built and second.install_from == "wheelhouse" and second.path != first.path
    again = ensure_environment(
        transport, EnvironmentSpec(sys.executable, other, pins, (wheel,)), cache, "auto"
    )
    assert again.path == second.path and not again.built


def test_env_from_a_wheelhouse_uploaded_from_here(local_index, tmp_path):
    transport = HostTransport()
    node = probe_interpreter(transport, sys.executable)
    pins = tuple(resolve(["tiny-dep"], node, "pip"))
    env = ensure_environment(
        transport, EnvironmentSpec(sys.executable, node, pins), str(tmp_path / "c"), "wheelhouse"
    )
    assert env.built and env.install_from == "wheelhouse"
    assert (tmp_path / "host-cache/slurm-sdk/wheels" / pins[0].filename).is_file()  # downloaded once, here
    subprocess.run([env.python, "-c", "import tiny_dep"], check=True)


# --- include_sdk without a source checkout ---------------------------------------------------------------


def test_sdk_wheel_rebuilt_from_an_installed_wheel(tmp_path):
    """An SDK installed from a wheel (no checkout) re-packs itself from its RECORD, and that wheel installs
    and imports in a fresh target."""
    repo = Path(__file__).resolve().parents[2]
    original = build_wheel(repo, tmp_path / "build")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(original),
        ],
        check=True,
    )
    code = (
        "import importlib.metadata as m, pathlib, sys; from slurm.packaging import builds; "
        "assert builds.sdk_source_root() is None; "
        "print(builds.sdk_wheel(pathlib.Path(sys.argv[1])))"
    )
    rebuilt = Path(
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "out")],
            env={"PYTHONPATH": str(site)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    with zipfile.ZipFile(rebuilt) as archive:
        members = set(archive.namelist())
    assert {"slurm/__init__.py", "slurm/packaging/builds.py"} <= members
    assert not any(name.endswith(".pyc") or name.endswith("/INSTALLER") for name in members)
    again = tmp_path / "again"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(again),
            str(rebuilt),
        ],
        check=True,
    )
    out = subprocess.run(
        [sys.executable, "-c", "import slurm; print(slurm.__file__)"],
        env={"PYTHONPATH": str(again)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(str(again))
