"""Dependency handling without a cluster: reading requirements, the env cache key, resolution for another
interpreter (offline, from a local wheel directory) and the errors a user sees."""

from __future__ import annotations

import dataclasses
import operator
import string
import sys
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from slurm.errors import ConfigError
from slurm.packaging import make_packaging
from slurm.packaging.builds import wheel_from_installed
from slurm.packaging.environment import environment_key, without_built
from slurm.packaging.interpreter import NodeInterpreter, probe_interpreter
from slurm.packaging.requirements import (
    normalize_name,
    project_dependencies,
    requirements_file,
    wheel_requirements,
)
from slurm.packaging.resolver import Pin, culprits
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

# The strings of the regexes [a-z][a-z0-9]{0,8} and [0-9]\.[0-9]{1,2}, drawn as text: from_regex cost three
# quarters of these tests' time (~4 ms an example).
names = st.builds(
    operator.add,
    st.sampled_from(string.ascii_lowercase),
    st.text(string.ascii_lowercase + string.digits, max_size=8),
)
versions = st.builds(
    "{}.{}".format, st.sampled_from(string.digits), st.text(string.digits, min_size=1, max_size=2)
)
pins = st.lists(
    st.builds(lambda n, v: Pin(n, v, f"{n}-{v}-py3-none-any.whl", "u", "h"), names, versions),
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


def test_wheel_from_installed_refuses_a_distribution_without_record(tmp_path):
    class Bare:
        files = None
        metadata: ClassVar[dict[str, str]] = {"Name": "bare"}

    with pytest.raises(ConfigError, match="RECORD"):
        wheel_from_installed(Bare(), tmp_path)


def test_normalize_name():
    assert normalize_name("Foo_Bar.baz") == "foo-bar-baz"
