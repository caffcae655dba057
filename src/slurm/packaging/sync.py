"""Mirror the project's source files into a directory on the cluster and put it on PYTHONPATH.

Only files whose content changed since the last sync travel: the cluster side keeps a manifest
(relative path -> sha256) that is diffed against the local tree, so re-syncing an unchanged project
costs one small read. Changed files go as one tar archive (one upload, one extract).

Dependencies (``[project].dependencies`` of the synced ``pyproject.toml``, or a requirements file) go into a
venv on the cluster, like ``wheel`` packaging's but without the project itself: editing the source never
rebuilds it, changing the dependencies or the interpreter does.
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any

from slurm.backends.base import Backend
from slurm.errors import ConfigError
from slurm.packaging.base import PackagingStrategy
from slurm.packaging.environment import ensure_environment, environment_spec, without_built
from slurm.packaging.requirements import project_dependencies, requirements_file, wheel_requirements
from slurm.packaging.tree import IGNORED_NAMES, glob_to_regex, scan_tree
from slurm.packaging.wheel import (
    DependencyOptions,
    check_child_env,
    default_cache_root,
    find_project_root,
    sdk_wheels,
)
from slurm.transports.base import Transport

__all__ = ["MANIFEST", "SyncPackaging", "glob_to_regex", "scan_tree"]

MANIFEST = ".slurm-sdk-manifest.json"
DEFAULT_INCLUDE = ("**/*.py", "pyproject.toml")


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


class SyncPackaging(PackagingStrategy, DependencyOptions):
    """Options: ``source_dir`` (default: the project around the cwd), ``remote_dir`` (default
    ``<cache_root>/src/<source dir name>-<hash of its absolute path>``), ``include`` (globs, default
    ``**/*.py`` and ``pyproject.toml``), ``exclude`` (file/directory name patterns, default VCS/venv/cache
    dirs), ``pythonpath`` (entries relative to the synced root, default ``src`` if present, and ``.``),
    ``python``, ``cache_root``, ``requirements`` (a requirements file instead of ``[project].dependencies``),
    ``include_sdk`` (install this SDK into the venv too), ``install_from``, ``resolver``,
    ``prepared`` and ``env`` (set by ``to_config()``: the tree and venv are already on the cluster).

    With no dependencies and ``include_sdk: false`` no venv is made: jobs run ``python`` itself."""

    type = "sync"

    def __init__(
        self,
        source_dir: str | None = None,
        remote_dir: str | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        pythonpath: list[str] | None = None,
        python: str = "python3",
        cache_root: str | None = None,
        requirements: str | None = None,
        include_sdk: bool = True,
        install_from: str = "auto",
        resolver: str = "auto",
        prepared: bool = False,
        env: str | None = None,
    ) -> None:
        DependencyOptions.__init__(self, install_from, resolver, requirements)
        self.source_dir = source_dir
        self.remote_dir = remote_dir
        self.include = list(include or DEFAULT_INCLUDE)
        self.exclude = list(exclude if exclude is not None else IGNORED_NAMES)
        self.pythonpath = pythonpath
        self.python = python
        self.cache_root = cache_root
        self.include_sdk = include_sdk
        self.prepared = prepared
        self.env = env

    def prepare(self, backend: Backend) -> None:
        transport = backend.transport
        if self.prepared:
            if self.remote_dir is None or not transport.exists(self.remote_dir):
                raise ConfigError(
                    f"synced source {self.remote_dir} is missing on the cluster; "
                    "prepare the packaging from the submitting host first"
                )
            if self.env is not None:
                check_child_env(transport, self.env, "sync")
            return
        source = find_project_root() if self.source_dir is None else Path(self.source_dir)
        if not source.is_dir():
            raise ConfigError(f"sync source_dir {source} is not a directory")
        source = source.resolve()
        if self.pythonpath is None:
            self.pythonpath = ["src", "."] if (source / "src").is_dir() else ["."]
        self._prepare_environment(transport, source)  # first: a bad dependency fails before any upload
        self.remote_dir = self._remote_dir(transport, source)
        self._sync(transport, source, self.remote_dir)
        self.prepared = True

    def _prepare_environment(self, transport: Transport, source: Path) -> None:
        extra = self.requirements_path(source)
        requirements = requirements_file(extra) if extra else project_dependencies(source)
        declared = str(extra) if extra else f"[project].dependencies of {source / 'pyproject.toml'}"
        with tempfile.TemporaryDirectory(prefix="slurm-sdk-sync-") as tmp:
            wheels = sdk_wheels(self.include_sdk, [], Path(tmp))
            if not requirements and not wheels:
                return  # nothing to install: jobs run the configured python as it is
            requirements += [r for wheel in wheels for r in wheel_requirements(wheel)]
            spec = environment_spec(
                transport,
                python=self.python,
                requirements=without_built(requirements, wheels),
                source=declared,
                wheels=wheels,
                resolver=self.resolver,
            )
            self.last_environment = ensure_environment(
                transport, spec, self.cache_root or default_cache_root(transport), self.install_from
            )
        self.env = self.last_environment.path

    def _remote_dir(self, transport: Transport, source: Path) -> str:
        if self.remote_dir is None:
            return f"{self.cache_root or default_cache_root(transport)}/src/{remote_dir_name(source)}"
        return transport.expand_home(self.remote_dir)

    def _sync(self, transport: Transport, source: Path, remote_dir: str) -> None:
        local = scan_tree(source, self.include, self.exclude)
        remote = _read_manifest(transport, f"{remote_dir}/{MANIFEST}")
        changed = sorted(rel for rel, digest in local.items() if remote.get(rel) != digest)
        removed = sorted(set(remote) - set(local))
        if changed:
            archive = f"{remote_dir}/.upload-{uuid.uuid4().hex[:12]}.tar.gz"
            transport.write_bytes(archive, _tar_gz(source, changed))
            transport.run(_extract_script(archive, remote_dir))
        for start in range(0, len(removed), 200):  # keeps each command line short
            transport.run(
                f"cd {shlex.quote(remote_dir)} && rm -f -- {shlex.join(removed[start : start + 200])}"
            )
        if changed or removed or not remote:
            transport.write_bytes(
                f"{remote_dir}/{MANIFEST}", json.dumps(local, indent=0, sort_keys=True).encode()
            )

    def _pythonpath_dirs(self) -> list[str]:
        if self.remote_dir is None or self.pythonpath is None:
            raise ConfigError("sync packaging is not prepared yet: call prepare() before rendering jobs")
        return [
            self.remote_dir if entry in (".", "") else f"{self.remote_dir}/{entry}"
            for entry in self.pythonpath
        ]

    def setup_lines(self) -> list[str]:
        joined = ":".join(shlex.quote(d) for d in self._pythonpath_dirs())
        return [f'export PYTHONPATH={joined}"${{PYTHONPATH:+:$PYTHONPATH}}"']

    def python_command(self) -> str:
        return shlex.quote(self.env + "/bin/python" if self.env else self.python)

    def to_config(self) -> dict[str, Any]:
        self._pythonpath_dirs()  # raises when not prepared
        return {
            "type": self.type,
            "remote_dir": self.remote_dir,
            "pythonpath": self.pythonpath,
            "python": self.python,
            "prepared": True,
            "env": self.env,
        }


def _extract_script(archive: str, remote_dir: str) -> str:
    """Unpack into a private directory, then rename each file into place: a concurrent sync of the same
    project (several submitters at once) or a running job never sees a half-written file, and tar never
    trips over a file another extraction just created."""
    q = shlex.quote
    return "\n".join(
        [
            "set -e",
            f"archive={q(archive)}",
            f"tmp=$(mktemp -d {q(remote_dir + '/.extract-XXXXXX')})",
            """trap 'rm -rf "$tmp" "$archive"' EXIT""",
            'tar -xzf "$archive" -C "$tmp" --no-same-permissions',  # the umask applies, even for root
            'cd "$tmp"',
            f"find . -mindepth 1 -type d -exec mkdir -p {q(remote_dir)}/{{}} \\;",
            f"find . ! -type d -exec mv -f {{}} {q(remote_dir)}/{{}} \\;",
        ]
    )


def remote_dir_name(source: Path) -> str:
    """``<dir name>-<8 hex of its absolute path>``: two projects both called ``app`` never share a tree."""
    return f"{source.name}-{hashlib.sha256(str(source).encode()).hexdigest()[:8]}"
