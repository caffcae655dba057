"""Which projects and edits may patch the last wheel instead of running the build backend
(``slurm.packaging.wheel_patch``), on hand-made wheels. That the patch equals the backend's own build is shown
against setuptools in tests/slow/test_packaging_wheel_builds.py."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from slurm.packaging import wheel_patch
from slurm.packaging.tree import source_files

STATIC = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tinypkg"
version = "0.1"
"""


def make_project(root: Path, pyproject: str = STATIC) -> Path:
    (root / "src/tinypkg").mkdir(parents=True)
    (root / "pyproject.toml").write_text(pyproject)
    (root / "src/tinypkg/__init__.py").write_text("VALUE = 1\n")
    (root / "src/tinypkg/util.py").write_text("def f():\n    return 1\n")
    return root


def make_wheel(
    project: Path, out: Path, name: str = "tinypkg-0.1-py3-none-any.whl", pure: bool = True
) -> Path:
    """A wheel as a verbatim-copying backend writes it: the package's files, WHEEL, METADATA and RECORD."""
    members = {
        "tinypkg/__init__.py": (project / "src/tinypkg/__init__.py").read_bytes(),
        "tinypkg/util.py": (project / "src/tinypkg/util.py").read_bytes(),
        "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: {str(pure).lower()}\n".encode(),
    }
    rows = [[n, wheel_patch._record_hash(d), str(len(d))] for n, d in members.items()]
    record = io.StringIO()
    csv.writer(record, lineterminator="\n").writerows([*rows, ["tinypkg-0.1.dist-info/RECORD", "", ""]])
    members["tinypkg-0.1.dist-info/RECORD"] = record.getvalue().encode()
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / name
    with zipfile.ZipFile(wheel, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return wheel


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            lambda p: (p / "setup.py").write_text("from setuptools import setup\nsetup()\n"),
            "setup.py runs code",
        ),
        (lambda p: (p / "setup.cfg").write_text("[metadata]\nversion = attr: tinypkg.VALUE\n"), "setup.cfg"),
        (
            lambda p: (p / "pyproject.toml").write_text(
                STATIC.replace('version = "0.1"', 'dynamic = ["version"]')
            ),
            "dynamic metadata",
        ),
        (
            lambda p: (p / "pyproject.toml").write_text(STATIC.replace("setuptools.build_meta", "mybackend")),
            "a backend not known to copy files verbatim",
        ),
        (
            lambda p: (p / "pyproject.toml").write_text(
                STATIC + '\n[tool.hatch.build.hooks.custom]\npath = "h.py"\n'
            ),
            "hatch build hooks",
        ),
        (
            lambda p: (p / "pyproject.toml").write_text(
                STATIC.replace("[build-system]", '[build-system]\nbackend-path = ["."]')
            ),
            "an in-tree backend",
        ),
        (lambda p: (p / "pyproject.toml").write_text("not toml ["), "an unreadable pyproject.toml"),
    ],
)
def test_projects_whose_wheel_another_file_can_change_are_never_patched(tmp_path, change, why):
    project = make_project(tmp_path / "proj")
    assert wheel_patch.static_project(project)
    change(project)
    assert not wheel_patch.static_project(project), why


def test_an_edit_of_a_verbatim_file_replaces_its_bytes_and_its_record_line(tmp_path):
    project = make_project(tmp_path / "proj")
    wheel = make_wheel(project, tmp_path / "last")
    record = wheel_patch.record_build(project, source_files(project), wheel)
    assert record is not None
    assert record["verbatim"] == {
        "src/tinypkg/__init__.py": "tinypkg/__init__.py",
        "src/tinypkg/util.py": "tinypkg/util.py",
    }

    (project / "src/tinypkg/util.py").write_text("def f():\n    return 2\n")
    patched = wheel_patch.patched_wheel(project, source_files(project), wheel, record, tmp_path / "new")
    assert patched is not None and patched.name == wheel.name
    with zipfile.ZipFile(patched) as archive, zipfile.ZipFile(wheel) as old:
        assert archive.namelist() == old.namelist()  # same members, same order
        assert archive.read("tinypkg/util.py") == b"def f():\n    return 2\n"
        assert archive.read("tinypkg/__init__.py") == old.read("tinypkg/__init__.py")
        rows = list(csv.reader(io.StringIO(archive.read("tinypkg-0.1.dist-info/RECORD").decode())))
        for name, hashed, size in rows:  # every RECORD line true of the patched wheel
            if hashed:
                data = archive.read(name)
                assert hashed == wheel_patch._record_hash(data) and size == str(len(data))
                assert hashed.removeprefix("sha256=") != hashlib.sha256(data).hexdigest()  # base64, not hex


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (
            lambda p: (p / "src/tinypkg/new.py").write_text("X = 1\n"),
            "a new file: the backend decides if it ships",
        ),
        (lambda p: (p / "src/tinypkg/util.py").unlink(), "a removed file"),
        (lambda p: (p / "README.md").write_text("changed\n"), "a file the wheel does not carry verbatim"),
        (lambda p: (p / "pyproject.toml").write_text(STATIC.replace("0.1", "0.2")), "the metadata"),
    ],
)
def test_edits_a_patch_cannot_express_go_to_the_backend(tmp_path, edit, why):
    project = make_project(tmp_path / "proj")
    (project / "README.md").write_text("readme\n")
    wheel = make_wheel(project, tmp_path / "last")
    record = wheel_patch.record_build(project, source_files(project), wheel)
    assert record is not None
    edit(project)
    assert (
        wheel_patch.patched_wheel(project, source_files(project), wheel, record, tmp_path / "new") is None
    ), why


def test_a_file_whose_bytes_another_source_shares_is_not_taken_as_the_wheels_copy(tmp_path):
    project = make_project(tmp_path / "proj")
    (project / "vendored").mkdir()
    (project / "vendored/util.py").write_text(
        "def f():\n    return 1\n"
    )  # the same bytes as src/tinypkg/util.py
    wheel = make_wheel(project, tmp_path / "last")
    record = wheel_patch.record_build(project, source_files(project), wheel)
    assert record is not None and "src/tinypkg/util.py" not in record["verbatim"]
    assert "src/tinypkg/__init__.py" in record["verbatim"]


def test_a_wheel_with_compiled_parts_is_never_patched(tmp_path):
    project = make_project(tmp_path / "proj")
    platform = make_wheel(project, tmp_path / "a", name="tinypkg-0.1-cp313-cp313-linux_x86_64.whl")
    not_purelib = make_wheel(project, tmp_path / "b", pure=False)
    assert wheel_patch.record_build(project, source_files(project), platform) is None
    assert wheel_patch.record_build(project, source_files(project), not_purelib) is None
