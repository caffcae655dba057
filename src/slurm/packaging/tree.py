"""Which files of a project count: the walk shared by ``sync`` (what to upload) and the wheel build cache
(what a build depends on)."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from pathlib import Path

# Never copied into a build or synced: VCS data, environments, caches.
IGNORED_NAMES = (
    ".git",
    ".hg",
    ".venv",
    "venv",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    "node_modules",
)
# Stale build output at the project top: setuptools would package modules left in build/lib even after
# they were deleted from the source.
IGNORED_TOP = ("build", "dist")


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """``**/`` spans any number of directories, ``*`` and ``?`` stay inside one path component."""
    parts = re.split(r"(\*\*/|\*\*|\*|\?)", pattern)
    tokens = {"**/": "(?:[^/]+/)*", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(tokens.get(part, re.escape(part)) for part in parts) + r"\Z")


def scan_tree(root: Path, include: list[str], exclude: list[str] | tuple[str, ...]) -> dict[str, str]:
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


def source_files(root: Path, parts: tuple[str, ...] | None = None) -> dict[str, str]:
    """Relative path -> sha256 of every file a wheel build of ``root`` can see (the build copies the same
    set), or only of those under the top-level ``parts`` (files or directories) when the build is known to
    read nothing else."""
    return {
        rel: digest
        for rel, digest in scan_tree(root, ["**"], IGNORED_NAMES).items()
        if rel.split("/", 1)[0] not in IGNORED_TOP and (parts is None or rel.split("/", 1)[0] in parts)
    }


def digest_of(files: dict[str, str]) -> str:
    """One sha256 for a ``source_files`` map: the wheel build cache's key."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
