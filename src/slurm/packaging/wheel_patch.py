"""A new wheel for an edit, without running the build backend again, when the edit only changed files the last
wheel carries byte for byte.

A one-line edit of a module otherwise costs a whole backend run (about two seconds of setuptools here) for a
wheel that differs from the last one in that module's bytes and its RECORD line. So each full build leaves a
record: the source files it saw and which of them it copied verbatim into the wheel. The next build of the
same project compares: when the same files exist and only verbatim ones changed, the new wheel is the last
one with those members replaced and their RECORD lines rewritten; the same bytes the backend would write.

That holds only where nothing else in the wheel depends on the edited bytes, so patching is refused (and the
backend builds) unless every one of these is true:
- the backend is one that copies package files unchanged (setuptools, hatchling without build hooks,
  flit-core, uv's), named in ``pyproject.toml`` without an in-tree ``backend-path``;
- the metadata is static: a ``[project]`` table with no ``dynamic`` fields, and no ``setup.py`` or
  ``setup.cfg`` (either can compute anything from any file);
- the last wheel is pure (``py3-none-any``-style tags, ``Root-Is-Purelib: true``): nothing was compiled
  from the sources;
- the set of files is unchanged (an added or removed file can change what the backend packages), and every
  changed file was found in the last wheel verbatim, at its own path, and nowhere else in the tree.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import tomllib
import zipfile
from pathlib import Path
from typing import Any

#: Build backends known to copy a package's files into the wheel unchanged.
VERBATIM_BACKENDS = frozenset({"setuptools.build_meta", "hatchling.build", "flit_core.buildapi", "uv_build"})
RECORD_NAME = "build-record.json"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_hash(data: bytes) -> str:
    """A RECORD line's hash (PEP 376/427: urlsafe base64 of the sha256, unpadded)."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def static_project(project_dir: Path) -> bool:
    """True when the project's wheel is made from its files by a verbatim-copying backend with metadata that
    no file other than ``pyproject.toml`` can change."""
    if (project_dir / "setup.py").exists() or (project_dir / "setup.cfg").exists():
        return False
    try:
        pyproject = tomllib.loads((project_dir / "pyproject.toml").read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    system = pyproject.get("build-system", {})
    project = pyproject.get("project")
    if system.get("build-backend") not in VERBATIM_BACKENDS or "backend-path" in system:
        return False
    if not isinstance(project, dict) or project.get("dynamic"):
        return False
    return not _mentions_key(pyproject.get("tool", {}).get("hatch", {}), "hooks")


def _mentions_key(table: Any, key: str) -> bool:
    if isinstance(table, dict):
        return key in table or any(_mentions_key(value, key) for value in table.values())
    return False


def _pure(archive: zipfile.ZipFile, wheel: Path) -> bool:
    if not wheel.name.endswith("-none-any.whl"):
        return False
    wheel_files = [n for n in archive.namelist() if n.endswith(".dist-info/WHEEL") and n.count("/") == 1]
    if len(wheel_files) != 1:
        return False
    return "Root-Is-Purelib: true" in archive.read(wheel_files[0]).decode(errors="replace")


def record_build(project_dir: Path, files: dict[str, str], wheel: Path) -> dict[str, Any] | None:
    """What a full build of ``files`` (relative path -> sha256) into ``wheel`` allows the next edit to patch,
    or None when nothing may be patched."""
    if not static_project(project_dir):
        return None
    by_digest: dict[str, list[str]] = {}
    for rel, digest in files.items():
        by_digest.setdefault(digest, []).append(rel)
    verbatim: dict[str, str] = {}
    with zipfile.ZipFile(wheel) as archive:
        if not _pure(archive, wheel):
            return None
        for name in archive.namelist():
            top = name.split("/", 1)[0]
            if name.endswith("/") or top.endswith((".dist-info", ".data")):
                continue
            same = by_digest.get(_digest(archive.read(name)), [])
            sources = [rel for rel in same if rel == name or rel.endswith("/" + name)]
            if (
                len(sources) == 1 and len(same) == 1
            ):  # one source, whose bytes nothing else in the tree shares
                verbatim[sources[0]] = name
    return {"files": files, "verbatim": verbatim}


def patched_wheel(
    project_dir: Path, files: dict[str, str], last_wheel: Path, last: dict[str, Any], out_dir: Path
) -> Path | None:
    """The last wheel with the edited files replaced, written to ``out_dir``; None when the edit is not one a
    patch can express (the caller then runs the backend)."""
    old: dict[str, str] = last.get("files", {})
    verbatim: dict[str, str] = last.get("verbatim", {})
    if set(old) != set(files) or not static_project(project_dir):
        return None
    changed = {rel for rel, digest in files.items() if old[rel] != digest}
    if not changed or not changed <= set(verbatim):
        return None
    replacements: dict[str, bytes] = {}
    for rel in changed:
        data = (project_dir / rel).read_bytes()
        if _digest(data) != files[rel]:  # edited again since the scan: let the backend see the final state
            return None
        replacements[verbatim[rel]] = data
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / last_wheel.name
    with zipfile.ZipFile(last_wheel) as source, zipfile.ZipFile(target, "w") as archive:
        for info in source.infolist():
            if info.filename in replacements:
                data = replacements[info.filename]
            elif info.filename.endswith(".dist-info/RECORD"):
                data = _rewritten_record(source.read(info), replacements)
            else:
                data = source.read(info)
            archive.writestr(info, data, compress_type=info.compress_type)
    return target


def _rewritten_record(record: bytes, replacements: dict[str, bytes]) -> bytes:
    rows = list(csv.reader(io.StringIO(record.decode())))
    for row in rows:
        if row and row[0] in replacements:
            data = replacements[row[0]]
            row[1:] = [_record_hash(data), str(len(data))]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def save_record(slot: Path, record: dict[str, Any] | None) -> None:
    if record is not None:
        (slot / RECORD_NAME).write_text(json.dumps(record, sort_keys=True))


def load_record(slot: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads((slot / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def remember_last(pointer: Path, slot: Path) -> None:
    """Point ``pointer`` (one per project, parts and Python) at the slot of its newest wheel, atomically."""
    staged = pointer.with_name(f".{pointer.name}.{os.getpid()}")
    staged.write_text(slot.name)
    os.replace(staged, pointer)
