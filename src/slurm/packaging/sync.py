"""Mirror the project's source files into a directory on the cluster and put it on PYTHONPATH.

Only files whose content changed since the last sync travel: the cluster side keeps a manifest
(relative path -> sha256) that is diffed against the local tree, so re-syncing an unchanged project
costs one small read. Changed files go as one tar archive (one upload, one extract).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import re
import shlex
import tarfile
import uuid
from pathlib import Path
from typing import Any

from slurm.backends.base import Backend, Transport
from slurm.errors import ConfigError
from slurm.packaging.base import PackagingStrategy
from slurm.packaging.wheel import IGNORED_NAMES, default_cache_root, find_project_root

MANIFEST = ".slurm-sdk-manifest.json"
DEFAULT_INCLUDE = ("**/*.py", "pyproject.toml")


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """``**/`` spans any number of directories, ``*`` and ``?`` stay inside one path component."""
    parts = re.split(r"(\*\*/|\*\*|\*|\?)", pattern)
    tokens = {"**/": "(?:[^/]+/)*", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(tokens.get(part, re.escape(part)) for part in parts) + r"\Z")


def scan_tree(root: Path, include: list[str], exclude: list[str]) -> dict[str, str]:
    """Relative POSIX path -> sha256 of every file under ``root`` matching ``include``, skipping any
    file or directory whose name matches ``exclude``."""
    wanted = [glob_to_regex(p) for p in include]

    def excluded(name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in exclude)

    files: dict[str, str] = {}
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not excluded(d))  # prune: never walk into .venv & co.
        for name in filenames:
            path = Path(directory, name)
            rel = path.relative_to(root).as_posix()
            if not excluded(name) and any(r.match(rel) for r in wanted) and path.is_file():
                files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _read_manifest(transport: Transport, path: str) -> dict[str, str]:
    """The manifest of the last sync; a missing or unreadable one means "nothing is there yet"."""
    if not transport.exists(path):
        return {}
    try:
        manifest = json.loads(transport.read_bytes(path))
    except ValueError:
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _tar_gz(root: Path, relpaths: list[str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for rel in relpaths:
            archive.add(root / rel, arcname=rel, recursive=False)
    return buffer.getvalue()


class SyncPackaging(PackagingStrategy):
    """Options: ``source_dir`` (default: the project around the cwd), ``remote_dir`` (default
    ``<cache_root>/src/<source dir name>``), ``include`` (globs, default ``**/*.py`` and ``pyproject.toml``),
    ``exclude`` (file/directory name patterns, default VCS/venv/cache dirs), ``pythonpath`` (entries relative
    to the synced root, default ``src`` if present, and ``.``), ``python``, ``cache_root``,
    ``prepared`` (set by ``to_config()``: the tree is already on the cluster, children don't sync)."""

    type = "sync"

    def __init__(self, source_dir: str | None = None, remote_dir: str | None = None,
                 include: list[str] | None = None, exclude: list[str] | None = None,
                 pythonpath: list[str] | None = None, python: str = "python3", cache_root: str | None = None,
                 prepared: bool = False) -> None:
        self.source_dir = source_dir
        self.remote_dir = remote_dir
        self.include = list(include or DEFAULT_INCLUDE)
        self.exclude = list(exclude if exclude is not None else IGNORED_NAMES)
        self.pythonpath = pythonpath
        self.python = python
        self.cache_root = cache_root
        self.prepared = prepared
        #: Files uploaded / deleted by the last prepare() (for logs and tests).
        self.last_uploaded: list[str] = []
        self.last_deleted: list[str] = []

    def prepare(self, backend: Backend) -> None:
        transport = backend.transport
        if self.prepared:
            if self.remote_dir is None or not transport.exists(self.remote_dir):
                raise ConfigError(f"synced source {self.remote_dir} is missing on the cluster; "
                                  "prepare the packaging from the submitting host first")
            return
        source = find_project_root() if self.source_dir is None else Path(self.source_dir)
        if not source.is_dir():
            raise ConfigError(f"sync source_dir {source} is not a directory")
        if self.pythonpath is None:
            self.pythonpath = ["src", "."] if (source / "src").is_dir() else ["."]
        self.remote_dir = self._remote_dir(transport, source)
        self._sync(transport, source.resolve(), self.remote_dir)
        self.prepared = True

    def _remote_dir(self, transport: Transport, source: Path) -> str:
        if self.remote_dir is None:
            return f"{self.cache_root or default_cache_root(transport)}/src/{source.resolve().name}"
        if self.remote_dir == "~" or self.remote_dir.startswith("~/"):
            return transport.home().rstrip("/") + self.remote_dir[1:]
        return self.remote_dir

    def _sync(self, transport: Transport, source: Path, remote_dir: str) -> None:
        local = scan_tree(source, self.include, self.exclude)
        remote = _read_manifest(transport, f"{remote_dir}/{MANIFEST}")
        changed = sorted(rel for rel, digest in local.items() if remote.get(rel) != digest)
        removed = sorted(set(remote) - set(local))
        if changed:
            archive = f"{remote_dir}/.upload-{uuid.uuid4().hex[:12]}.tar.gz"
            transport.write_bytes(archive, _tar_gz(source, changed))
            q = shlex.quote
            transport.run(f"cd {q(remote_dir)} && tar -xzf {q(archive)}; status=$?; rm -f {q(archive)}; "
                          "exit $status")
        for start in range(0, len(removed), 200):  # keeps each command line short
            transport.run(f"cd {shlex.quote(remote_dir)} && rm -f -- {shlex.join(removed[start:start + 200])}")
        if changed or removed or not remote:
            transport.write_bytes(f"{remote_dir}/{MANIFEST}", json.dumps(local, indent=0, sort_keys=True).encode())
        self.last_uploaded, self.last_deleted = changed, removed

    def _pythonpath_dirs(self) -> list[str]:
        if self.remote_dir is None or self.pythonpath is None:
            raise ConfigError("sync packaging is not prepared yet: call prepare() before rendering jobs")
        return [self.remote_dir if entry in (".", "") else f"{self.remote_dir}/{entry}" for entry in self.pythonpath]

    def setup_lines(self) -> list[str]:
        joined = ":".join(shlex.quote(d) for d in self._pythonpath_dirs())
        return [f'export PYTHONPATH={joined}"${{PYTHONPATH:+:$PYTHONPATH}}"']

    def python_command(self) -> str:
        return shlex.quote(self.python)

    def to_config(self) -> dict[str, Any]:
        self._pythonpath_dirs()  # raises when not prepared
        return {"type": self.type, "remote_dir": self.remote_dir, "pythonpath": self.pythonpath,
                "python": self.python, "prepared": True}
