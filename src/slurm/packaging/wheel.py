"""Ship the project as a wheel installed into a venv on the cluster, one venv per wheel content.

The wheel is built here (where the source is), the venv is built once on the cluster's shared home and
reused by every job and every child task: ``to_config()`` names the venv, so children never rebuild it.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from slurm.backends.base import Backend, Transport
from slurm.errors import ConfigError
from slurm.packaging.base import PackagingStrategy

# Never copied into a build or synced: VCS data, environments, caches.
IGNORED_NAMES = (".git", ".hg", ".venv", "venv", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache",
                 ".ruff_cache", ".tox", "node_modules")
# Stale build output at the project top: setuptools would package modules left in build/lib even after
# they were deleted from the source.
IGNORED_TOP = ("build", "dist")


def find_project_root(start: str | Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding a ``pyproject.toml``."""
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "pyproject.toml").is_file():
            return directory
    raise ConfigError(f"no pyproject.toml in {here} or above; set the packaging option project_dir/source_dir")


def default_cache_root(transport: Transport) -> str:
    return transport.home().rstrip("/") + "/.slurm-sdk/cache"


def build_wheel(project_dir: Path, out_dir: Path) -> Path:
    """Build the project's wheel offline with this interpreter's pip, from a clean copy of the source."""
    source = out_dir / "source"
    ignore_anywhere = shutil.ignore_patterns(*IGNORED_NAMES)

    def ignore(directory: str, names: list[str]) -> set[str]:
        top = set(IGNORED_TOP) & set(names) if Path(directory) == project_dir else set()
        return set(ignore_anywhere(directory, names)) | top

    shutil.copytree(project_dir, source, ignore=ignore, symlinks=True)
    wheel_dir = out_dir / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                 "-w", str(wheel_dir), str(source)]
    # Offline with this Python's build backend first; if it lacks one (or lacks bdist_wheel, as
    # setuptools < 70.1 without the wheel package does), let pip fetch the declared build requirements.
    attempts = [pip_wheel[:4] + ["--no-build-isolation", "--no-index"] + pip_wheel[4:], pip_wheel]
    failures = []
    for command in attempts:
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(wheel_dir.glob("*.whl"))
        if result.returncode == 0 and len(wheels) == 1:
            return wheels[0]
        failures.append(f"$ {shlex.join(command)}\n{(result.stderr or result.stdout).strip()[-1500:]}")
    raise ConfigError(f"building the wheel of {project_dir} failed:\n" + "\n".join(failures) +
                      "\ninstall its build backend (e.g. setuptools>=70.1) in this Python, or allow pip to "
                      "download it")


def wheel_content_hash(*wheels: Path) -> str:
    """sha256 over the wheels' member names and bytes: unlike the zip file's hash it ignores timestamps,
    so rebuilding unchanged source lands on the same cached environment."""
    digest = hashlib.sha256()
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for name in sorted(archive.namelist()):
                digest.update(name.encode() + b"\0" + archive.read(name) + b"\0")
    return digest.hexdigest()


def _contains_package(wheel: Path, package: str) -> bool:
    with zipfile.ZipFile(wheel) as archive:
        return f"{package}/__init__.py" in archive.namelist()


def _sdk_source_root() -> Path | None:
    """Source checkout of this SDK (editable install or repo on sys.path), if there is one."""
    candidate = Path(__file__).resolve().parents[3]  # <root>/src/slurm/packaging/wheel.py
    return candidate if (candidate / "pyproject.toml").is_file() and (candidate / "src/slurm").is_dir() else None


def install_script(python: str, wheels: list[str], env: str) -> str:
    """Shell that builds the venv in a temp dir and renames it into place: concurrent prepares of the same
    wheel each build their own and the first rename wins, so nobody ever sees a half-built env."""
    q = shlex.quote
    return "\n".join([
        "set -e",
        f"mkdir -p {q(posixpath.dirname(env))}",
        f"tmp=$(mktemp -d {q(env)}.tmp-XXXXXX)",
        "trap 'rm -rf \"$tmp\"' EXIT",
        # --system-site-packages: cloudpickle/pyyaml installed on the nodes stay importable. The venv gets
        # no pip of its own (saves seconds): the base interpreter's pip installs into it.
        f'{q(python)} -m venv --without-pip --system-site-packages "$tmp"',
        f'{q(python)} -m pip --python "$tmp/bin/python" install --quiet --no-deps --no-index '
        '--disable-pip-version-check ' + " ".join(q(w) for w in wheels),
        'touch "$tmp/.ready"',
        f'mv -T "$tmp" {q(env)} 2>/dev/null || test -e {q(env + "/.ready")}',
    ])


class WheelPackaging(PackagingStrategy):
    """Options: ``project_dir`` (default: the project around the cwd), ``python`` (cluster interpreter
    the venv is made from), ``cache_root`` (default ``~/.slurm-sdk/cache`` on the cluster),
    ``include_sdk`` (also install this SDK when the project's wheel doesn't contain ``slurm``),
    ``env`` (an already prepared venv; set by ``to_config()`` for child tasks)."""

    type = "wheel"

    def __init__(self, project_dir: str | None = None, python: str = "python3", cache_root: str | None = None,
                 include_sdk: bool = True, env: str | None = None) -> None:
        self.project_dir = project_dir
        self.python = python
        self.cache_root = cache_root
        self.include_sdk = include_sdk
        self.env = env

    def prepare(self, backend: Backend) -> None:
        transport = backend.transport
        if self.env is not None:
            if not transport.exists(self.env + "/.ready"):
                raise ConfigError(f"wheel environment {self.env} is missing or incomplete on the cluster; "
                                  "prepare the packaging from the submitting host first")
            return
        cache_root = self.cache_root or default_cache_root(transport)
        with tempfile.TemporaryDirectory(prefix="slurm-sdk-wheel-") as tmp:
            wheels = self._build(Path(tmp))
            env = f"{cache_root}/envs/{wheel_content_hash(*wheels)[:16]}"
            if not transport.exists(env + "/.ready"):
                self._install(transport, wheels, env, f"{cache_root}/wheels/{Path(env).name}")
        self.env = env

    def _build(self, tmp: Path) -> list[Path]:
        project = find_project_root(self.project_dir) if self.project_dir is None else Path(self.project_dir)
        if not (project / "pyproject.toml").is_file() and not (project / "setup.py").is_file():
            raise ConfigError(f"project_dir {project} has no pyproject.toml or setup.py")
        wheels = [build_wheel(project.resolve(), tmp / "project")]
        if self.include_sdk and not _contains_package(wheels[0], "slurm"):
            sdk_root = _sdk_source_root()
            if sdk_root is None:
                raise ConfigError("the project's wheel does not contain the slurm SDK and no SDK source checkout "
                                  "was found to build it from; install slurm-sdk on the cluster's Python and "
                                  "set include_sdk: false")
            wheels.append(build_wheel(sdk_root, tmp / "sdk"))
        return wheels

    def _install(self, transport: Transport, wheels: list[Path], env: str, wheel_dir: str) -> None:
        remote = [f"{wheel_dir}/{w.name}" for w in wheels]
        for local, target in zip(wheels, remote):
            transport.put(str(local), target)
        transport.run(install_script(self.python, remote, env))

    def setup_lines(self) -> list[str]:
        return []

    def python_command(self) -> str:
        if self.env is None:
            raise ConfigError("wheel packaging has no environment yet: call prepare() before rendering jobs")
        return shlex.quote(self.env + "/bin/python")

    def to_config(self) -> dict[str, Any]:
        if self.env is None:
            raise ConfigError("wheel packaging has no environment yet: call prepare() before to_config()")
        return {"type": self.type, "env": self.env, "python": self.python}
