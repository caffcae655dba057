"""slurm_dev_cluster.wheelhouse's parts that need no pip: platform tags, pins, targets, image inputs (the
tests that run pip against a local find-links dir are in tests/slow/test_harness_wheelhouse.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dev_cluster import wheelhouse
from slurm_dev_cluster.stack import inputs_hash
from slurm_dev_cluster.wheelhouse import RELEASES, Target, WheelhouseError


@given(minor=st.integers(min_value=5, max_value=60), arch=st.sampled_from(["x86_64", "aarch64", "ppc64le"]))
def test_platforms_cover_every_older_manylinux_newest_first(minor, arch):
    tags = Target("x", "3.13", f"2.{minor}", arch).platforms()
    perennial = [t for t in tags if t.startswith("manylinux_")]
    assert perennial == [f"manylinux_2_{m}_{arch}" for m in range(minor, 4, -1)]
    assert ("manylinux2014_" + arch in tags) == (minor >= 17)  # manylinux2014 exists for every arch here
    assert (f"manylinux1_{arch}" in tags) == (arch == "x86_64")  # the oldest aliases are x86 only


@given(
    name=st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
    version=st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}", fullmatch=True),
)
def test_manifest_pins_name_and_version_of_each_wheel(name, version):
    assert wheelhouse._pin(f"{name}-{version}-py3-none-any.whl") == f"{name}=={version}"


def test_target_follows_the_release_and_names_unknown_ones():
    assert wheelhouse.target_for("bookworm", "amd64") == Target("bookworm", *RELEASES["bookworm"], "x86_64")
    assert wheelhouse.target_for("trixie", "arm64").abi == "cp313"
    with pytest.raises(WheelhouseError, match=r"unknown DEBIAN_RELEASE='sid'.*trixie, bookworm"):
        wheelhouse.target_for("sid")


def test_the_wheelhouse_is_not_an_image_input(tmp_path):
    repo = tmp_path / "repo"
    (repo / wheelhouse.WHEELHOUSE_DIR).mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "0"\ndependencies = ["tinydep>=1"]\n'
    )
    (repo / "compose.yaml").write_text("services: {}\n")
    before = inputs_hash(repo)
    (repo / wheelhouse.WHEELHOUSE_DIR / "trixie").mkdir()
    (repo / wheelhouse.WHEELHOUSE_DIR / "trixie" / "requirements.txt").write_text("# key: x\n")
    assert inputs_hash(repo) == before
    (repo / "images" / "site-ca").mkdir()
    (repo / "images" / "site-ca" / "site-001.crt").write_text("cert\n")
    assert inputs_hash(repo) != before
