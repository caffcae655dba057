"""Dependency handling without a cluster: reading requirements, the env cache key, resolution for another
interpreter (offline, from a local wheel directory) and the errors a user sees."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from slurm.errors import ConfigError, DependencyError, SubmitError
from slurm.packaging import make_packaging
from slurm.packaging.builds import build_wheel, wheel_from_installed
from slurm.packaging.environment import EnvironmentSpec, ensure_environment, environment_key, without_built
from slurm.packaging.interpreter import NodeInterpreter, probe_interpreter
from slurm.packaging.requirements import (
    normalize_name,
    project_dependencies,
    requirements_file,
    wheel_requirements,
)
from slurm.packaging.resolver import Pin, culprits, resolve
from slurm.transports.host import HostTransport

NODE = NodeInterpreter(
    executable="/opt/venv/bin/python3",
    base_executable="/usr/bin/python3.13",
    realpath="/usr/bin/python3.13",
    version="3.13.5",
    implementation="cpython",
    abiflags="",
    machine="x86_64",
    libc="glibc",
    libc_version="2.41",
    has_pip=True,
)
PIN = Pin("humanize", "4.17.0", "humanize-4.17.0-py3-none-any.whl", "https://example.invalid/h.whl", "00")


@pytest.fixture(autouse=True)
def host_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "host-cache"))


# --- where dependencies are declared -------------------------------------------------------------------


def write_pyproject(root: Path, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "1"\n' + body)
    return root


def test_project_dependencies_come_from_pyproject(tmp_path):
    root = write_pyproject(
        tmp_path / "a", 'dependencies = ["humanize>=4", "msgpack; python_version>\'3\'"]\n'
    )
    assert project_dependencies(root) == ["humanize>=4", "msgpack; python_version>'3'"]
    assert project_dependencies(write_pyproject(tmp_path / "b", "")) == []
    assert project_dependencies(tmp_path / "no-such-project") == []


def test_dynamic_dependencies_name_the_fix(tmp_path):
    root = write_pyproject(tmp_path, 'dynamic = ["dependencies"]\n')
    with pytest.raises(ConfigError, match=r"dynamic.*requirements") as info:
        project_dependencies(root)
    assert info.value.key == "requirements"


def test_requirements_file_skips_comments_and_refuses_pip_options(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# tools\nhumanize>=4  # pure\n\nmsgpack\n")
    assert requirements_file(path) == ["humanize>=4", "msgpack"]
    path.write_text("humanize\n--index-url https://example.invalid/simple\n")
    with pytest.raises(ConfigError, match=r"requirements.txt:2: pip option '--index-url'"):
        requirements_file(path)
    with pytest.raises(ConfigError, match="does not exist"):
        requirements_file(tmp_path / "missing.txt")


def test_wheel_requirements_leave_out_extras(tmp_path):
    wheel = tmp_path / "p-1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(
            "p-1.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: p\nVersion: 1\n"
            "Requires-Dist: humanize>=4\nRequires-Dist: msgpack; python_version >= '3.8'\n"
            "Requires-Dist: pytest; extra == 'test'\n",
        )
    assert wheel_requirements(wheel) == ["humanize>=4", "msgpack; python_version >= '3.8'"]


def test_requirements_the_shipped_wheels_satisfy_are_not_resolved():
    wheels = [Path("slurm_sdk-0.1.0-py3-none-any.whl"), Path("sample_app-0.1-py3-none-any.whl")]
    assert without_built(["Slurm_SDK>=0.1", "humanize", "sample-app", "humanize"], wheels) == ["humanize"]


# --- the env cache key ---------------------------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
pins = st.lists(
    st.builds(
        lambda n, v: Pin(n, v, f"{n}-{v}-py3-none-any.whl", "u", "h"),
        names,
        st.from_regex(r"[0-9]\.[0-9]{1,2}", fullmatch=True),
    ),
    unique_by=lambda p: p.name,
    max_size=6,
)


@given(pins=pins, seed=st.randoms())
def test_key_ignores_pin_order(pins, seed):
    shuffled = list(pins)
    seed.shuffle(shuffled)
    assert environment_key(NODE, pins, "w") == environment_key(NODE, shuffled, "w")


@given(
    pins=pins,
    field=st.sampled_from(
        ["base_executable", "realpath", "version", "implementation", "machine", "libc_version", "abiflags"]
    ),
    value=st.text(min_size=1, max_size=12),
)
def test_key_changes_with_the_interpreter(pins, field, value):
    """A venv links to its interpreter: another path, version or platform must never reuse it."""
    other = dataclasses.replace(NODE, **{field: value})
    if other != NODE:
        assert environment_key(NODE, pins, "w") != environment_key(other, pins, "w")


@given(pins=pins.filter(bool), bump=st.sampled_from(["version", "filename"]), wheels=st.text(max_size=8))
def test_key_changes_with_any_pin_or_built_wheel(pins, bump, wheels):
    changed = [dataclasses.replace(pins[0], **{bump: getattr(pins[0], bump) + "1"}), *pins[1:]]
    assert environment_key(NODE, pins, wheels) != environment_key(NODE, changed, wheels)
    assert environment_key(NODE, pins, wheels) != environment_key(NODE, pins, wheels + "x")
    assert environment_key(NODE, pins, wheels) != environment_key(NODE, pins[1:], wheels)


def test_key_ignores_the_wrapper_but_not_its_base():
    """The dev cluster's ``python3`` is a wrapper script; what the venv links to is its base."""
    wrapper = dataclasses.replace(NODE, executable="/usr/local/bin/python3", has_pip=False)
    assert environment_key(NODE, [PIN], "") == environment_key(wrapper, [PIN], "")


# --- the node's interpreter ------------------------------------------------------------------------------


def test_probe_describes_the_interpreter_and_its_wheel_tags():
    node = probe_interpreter(HostTransport(), sys.executable)
    assert node.version.startswith(f"{sys.version_info[0]}.{sys.version_info[1]}.")
    assert node.abi == f"cp{sys.version_info[0]}{sys.version_info[1]}" and node.has_pip
    assert NODE.manylinux_platforms()[:2] == ["manylinux_2_41_x86_64", "manylinux_2_40_x86_64"]
    assert {"manylinux2014_x86_64", "manylinux1_x86_64"} <= set(NODE.manylinux_platforms())


def test_probe_of_a_missing_interpreter_names_the_option(tmp_path):
    with pytest.raises(ConfigError, match=r"does not run on the cluster.*option python") as info:
        probe_interpreter(HostTransport(), str(tmp_path / "no-python"))
    assert info.value.key == "python"


def test_musl_nodes_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="glibc"):
        dataclasses.replace(NODE, libc="", libc_version="").manylinux_platforms()


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@settings(max_examples=50)
@given(names=st.lists(names, min_size=1, max_size=4, unique=True), blamed_index=st.integers(0, 3))
@example(names=["a", "no"], blamed_index=0)  # "No matching distribution found for A": `no` is a word there
def test_culprits_match_whole_names_in_any_spelling(names, blamed_index):
    blamed = names[blamed_index % len(names)]
    text = f"ERROR: No matching distribution found for {blamed.upper().replace('-', '_')}==1.0"
    found = culprits(names, text)
    assert blamed in found
    assert all(name == blamed or name in blamed for name in found)  # others only as parts of it


def test_culprits_do_not_blame_a_prefix_of_another_name():
    assert culprits(["foo", "foo-bar"], "Because foo-bar was not found") == ["foo-bar"]


@pytest.mark.parametrize(
    ("text", "blamed"),
    [
        (
            "ERROR: Could not find a version that satisfies the requirement Foo_Bar==2 (from versions: none)",
            ["foo-bar"],
        ),
        (
            "ERROR: Cannot install foo==1.0, bar and no[x]>=2 because these package versions conflict",
            ["foo", "bar", "no"],
        ),
        (
            "The conflict is caused by:\n    foo 1.0 depends on bar==2\n    The user requested bar==3",
            ["foo", "bar"],
        ),
        (
            "Because foo was not found in the package registry and you require foo, we can conclude that",
            ["foo"],
        ),
        ("Because only foo<=1.0 is available and you require foo>1.0, we can conclude that", ["foo"]),
        ("Because foo==1.0 has no wheels with a matching Python ABI tag", ["foo"]),
        ("Because there is no version of foo==9.9 and you require foo==9.9, no solution is found", ["foo"]),
        ("Because all versions of foo depend on bar>2 and bar>2 was not found", ["foo", "bar"]),
    ],
)
def test_culprits_are_read_where_pip_and_uv_name_requirements(text, blamed):
    # "no", "is", "found", "the" and "bar-baz" are candidate names too: words of the message never match.
    assert culprits(["foo", "foo-bar", "bar", "no", "is", "found", "the", "bar-baz"], text) == blamed


# --- options ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("option", "value"), [("install_from", "ftp"), ("resolver", "poetry")])
def test_bad_choices_fail_when_the_packaging_is_built(option, value):
    for kind in ("wheel", "sync"):
        with pytest.raises(ConfigError, match=f"unknown {option} '{value}'; valid: ") as info:
            make_packaging({"type": kind, option: value})
        assert info.value.key == option


# --- include_sdk without a source checkout ---------------------------------------------------------------


@pytest.mark.slow
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


def test_wheel_from_installed_refuses_a_distribution_without_record(tmp_path):
    class Bare:
        files = None
        metadata: ClassVar[dict[str, str]] = {"Name": "bare"}

    with pytest.raises(ConfigError, match="RECORD"):
        wheel_from_installed(Bare(), tmp_path)


def test_normalize_name():
    assert normalize_name("Foo_Bar.baz") == "foo-bar-baz"
