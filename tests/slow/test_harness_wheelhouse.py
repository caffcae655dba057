"""slurm_dev_cluster.wheelhouse without Docker or a network: pip runs for real against a local find-links dir
(which is why these live in the slow tier; the wheelhouse's units without pip are in tests/fast)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from slurm_dev_cluster import wheelhouse
from slurm_dev_cluster.wheelhouse import Target, WheelhouseError

pytestmark = pytest.mark.slow

TRIXIE = Target("trixie", "3.13", "2.41", "x86_64")


def make_wheel(directory: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel pip can resolve: METADATA (with Requires-Dist), WHEEL, RECORD."""
    dist_info = f"{name}-{version}.dist-info"
    path = directory / f"{name}-{version}-py3-none-any.whl"
    metadata = "".join(
        [
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
            *(f"Requires-Dist: {r}\n" for r in requires),
        ]
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}/__init__.py", "")
        archive.writestr(f"{dist_info}/METADATA", metadata)
        archive.writestr(
            f"{dist_info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{dist_info}/RECORD", "")
    return path


@pytest.fixture
def offline_pip(tmp_path, monkeypatch) -> Path:
    """pip sees only a local directory of wheels: no config files, no index."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    (root / wheelhouse.WHEELHOUSE_DIR).mkdir(parents=True)
    set_dependencies(root, ["tinydep>=1"])
    return root


def set_dependencies(root: Path, requirements: list[str]) -> None:
    listed = ", ".join(f'"{r}"' for r in requirements)
    (root / "pyproject.toml").write_text(f'[project]\nname = "x"\nversion = "0"\ndependencies = [{listed}]\n')


def test_ensure_downloads_dependencies_with_their_own_and_then_stays_put(repo, offline_pip):
    make_wheel(offline_pip, "tinydep", "1.2", requires=("leafdep",))
    make_wheel(offline_pip, "leafdep", "0.3")
    messages = []
    assert wheelhouse.ensure(repo, TRIXIE, messages.append) is True
    house = wheelhouse.directory(repo, "trixie")
    assert sorted(p.name for p in house.glob("*.whl")) == [
        "leafdep-0.3-py3-none-any.whl",
        "tinydep-1.2-py3-none-any.whl",
    ]
    assert (house / "requirements.txt").read_text().splitlines()[2:] == ["leafdep==0.3", "tinydep==1.2"]
    assert wheelhouse.is_current(repo, TRIXIE)
    # Current: no pip at all (the find-links dir may vanish), so a warm `harness up` costs nothing.
    for wheel in offline_pip.iterdir():
        wheel.unlink()
    assert wheelhouse.ensure(repo, TRIXIE, messages.append) is False
    assert not wheelhouse.is_current(repo, Target("trixie", "3.13", "2.41", "aarch64"))


def test_a_changed_dependency_list_makes_it_stale(repo, offline_pip):
    make_wheel(offline_pip, "tinydep", "1.2")
    wheelhouse.ensure(repo, TRIXIE, print)
    set_dependencies(repo, ["tinydep>=1", "otherdep"])
    assert not wheelhouse.is_current(repo, TRIXIE)


def test_an_unresolvable_dependency_names_package_target_and_fix_and_keeps_the_old_wheelhouse(
    repo, offline_pip
):
    make_wheel(offline_pip, "tinydep", "1.2")
    wheelhouse.ensure(repo, TRIXIE, print)
    set_dependencies(repo, ["tinydep>=1", "nosuchdep>=2"])
    with pytest.raises(WheelhouseError) as error:
        wheelhouse.ensure(repo, TRIXIE, print)
    text = str(error.value)
    assert "`nosuchdep>=2`" in text and "CPython 3.13 on Debian trixie (x86_64, glibc 2.41)" in text
    assert "fix:" in text and "slurm-dev-cluster wheelhouse" in text
    house = wheelhouse.directory(repo, "trixie")
    assert [p.name for p in house.glob("*.whl")] == ["tinydep-1.2-py3-none-any.whl"]
    assert not list(house.parent.glob(".*partial"))


def test_a_wheel_only_for_another_python_is_not_taken(repo, offline_pip):
    """Resolution is for the nodes' interpreter, not the host's: a cp311-only wheel does not do for 3.13."""
    wheel = make_wheel(offline_pip, "tinydep", "1.2")
    wheel.rename(offline_pip / "tinydep-1.2-cp311-cp311-manylinux_2_17_x86_64.whl")
    with pytest.raises(WheelhouseError, match="tinydep"):
        wheelhouse.ensure(repo, TRIXIE, print)
    assert wheelhouse.ensure(repo, Target("bookworm", "3.11", "2.36", "x86_64"), print) is True
