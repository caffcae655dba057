"""Wheels built on this host: the project's, and the SDK's own (from its source checkout, or rebuilt from
the installed distribution when the SDK was installed from a wheel).

Builds are cached by the digest of the source tree (and this Python's version), so submitting unchanged
code again costs a tree walk instead of a ``pip wheel`` run.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import importlib.metadata
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slurm.errors import ConfigError
from slurm.packaging import wheel_patch
from slurm.packaging.host_cache import host_cache_dir
from slurm.packaging.tree import IGNORED_NAMES, IGNORED_TOP, digest_of, source_files

SDK_DISTRIBUTION = "slurm-sdk"
#: What the SDK's own wheel is built from in its checkout (pyproject: metadata; README: its description).
SDK_SOURCE_PARTS = ("src", "pyproject.toml", "README.md")
#: dist-info files that describe one installation, not the distribution: never put back into a wheel.
_INSTALL_ONLY = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
#: Seconds one ``pip wheel`` run may take: the second attempt downloads build requirements, and an index
#: that stops answering would otherwise hold the submission forever.
BUILD_TIMEOUT = 600.0


def build_wheel(project_dir: Path, out_dir: Path) -> Path:
    """Build the project's wheel offline with this interpreter's pip, from a clean copy of the source."""
    source = out_dir / "source"
    ignore_anywhere = shutil.ignore_patterns(*IGNORED_NAMES)

    def ignore(directory: str, names: list[str]) -> set[str]:
        top = set(IGNORED_TOP) & set(names) if Path(directory) == project_dir else set()
        return set(ignore_anywhere(directory, names)) | top

    shutil.copytree(project_dir, source, ignore=ignore, symlinks=True)
    wheel_dir = out_dir / "wheels"
    built = _build_with_hooks(source, wheel_dir)
    if built is not None:
        return built
    pip_wheel = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "-w",
        str(wheel_dir),
        str(source),
    ]
    # Offline with this Python's build backend first; if it lacks one (or lacks bdist_wheel, as
    # setuptools < 70.1 without the wheel package does), let pip fetch the declared build requirements.
    attempts = [[*pip_wheel[:4], "--no-build-isolation", "--no-index", *pip_wheel[4:]], pip_wheel]
    failures = []
    for command in attempts:
        result = _run_bounded(command, project_dir)
        wheels = sorted(wheel_dir.glob("*.whl"))
        if result.returncode == 0 and len(wheels) == 1:
            return wheels[0]
        failures.append(f"$ {shlex.join(command)}\n{(result.stderr or result.stdout).strip()[-1500:]}")
    raise ConfigError(
        f"building the wheel of {project_dir} failed:\n"
        + "\n".join(failures)
        + "\ninstall its build backend (e.g. setuptools>=70.1) in this Python, or allow pip to "
        "download it"
    )


def _build_with_hooks(source: Path, wheel_dir: Path) -> Path | None:
    """The wheel from the project's own PEP 517 backend in this Python, called through ``pyproject_hooks``
    (PyPA's hook caller, there when ``build`` is installed): one process where ``pip wheel`` starts pip and
    then the backend, about a second less per edit. None when it cannot build here (no pyproject_hooks, the
    backend missing or failing): pip then tries, and its errors are the ones reported."""
    try:
        import pyproject_hooks
    except ImportError:
        return None
    import tomllib

    try:
        system = tomllib.loads((source / "pyproject.toml").read_text()).get("build-system", {})
        backend = system.get("build-backend", "setuptools.build_meta:__legacy__")  # PEP 517's default
        caller = pyproject_hooks.BuildBackendHookCaller(
            str(source), backend, system.get("backend-path"), runner=_quiet_bounded
        )
        wheel_dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():  # the backend's warnings, as pip -q keeps them to itself
            warnings.simplefilter("ignore", pyproject_hooks.BuildBackendWarning)
            return wheel_dir / caller.build_wheel(str(wheel_dir))
    except (
        OSError,
        ValueError,
        subprocess.SubprocessError,
        pyproject_hooks.BackendUnavailable,
        pyproject_hooks.HookMissing,
    ):
        shutil.rmtree(wheel_dir, ignore_errors=True)  # pip starts from an empty directory
        return None


def _quiet_bounded(
    cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None
) -> None:
    """pyproject_hooks' runner: the hook's output kept off the user's terminal, stopped after
    ``BUILD_TIMEOUT`` (the failure sends the build to pip, which has its own limit)."""
    env = {**os.environ, **(extra_environ or {})}
    subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=True, timeout=BUILD_TIMEOUT)


def _run_bounded(command: list[str], project_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run a wheel build, stopped after ``BUILD_TIMEOUT``: pip may wait on a package index that does not
    answer. Its own process group, so the build backend pip started goes down with it."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise ConfigError(
            f"building the wheel of {project_dir} took longer than {BUILD_TIMEOUT:g} s and was stopped: "
            f"$ {shlex.join(command)}\ncheck this host's access to the package index (pip may be waiting "
            "on it), or install the project's build backend in this Python so the offline build succeeds"
        ) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def cached_wheel(project_dir: Path, parts: tuple[str, ...] | None = None) -> Path:
    """The project's wheel, built once per source content (and host Python version); ``parts``: the only
    top-level files and directories its build reads, when known (see ``source_files``). An edit that only
    changed files the last wheel carries verbatim patches that wheel instead (``slurm.packaging.wheel_patch``)."""
    project_dir = project_dir.resolve()
    files = source_files(project_dir, parts)
    key = _digest_key([digest_of(files), sys.version])
    cache = host_cache_dir("builds")
    slot = cache / key
    found = sorted(slot.glob("*.whl"))
    if len(found) == 1:
        return found[0]
    pointer = cache / f"last-{_digest_key([str(project_dir), parts, sys.version])}"
    with tempfile.TemporaryDirectory(prefix="slurm-sdk-wheel-") as tmp:
        patched = _patched_from_last(project_dir, files, cache, pointer, Path(tmp) / "patched")
        if patched is None:
            wheel = build_wheel(project_dir, Path(tmp))
            record = wheel_patch.record_build(project_dir, files, wheel)
        else:  # the same files carried verbatim, now with the edit's bytes
            wheel, last = patched
            record = {**last, "files": files}
        staged = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
        shutil.move(str(wheel), staged / wheel.name)
        wheel_patch.save_record(staged, record)
    try:
        staged.rename(slot)  # atomic: a concurrent build of the same source either wins or finds ours
    except OSError:
        shutil.rmtree(staged, ignore_errors=True)
    wheel_patch.remember_last(pointer, slot)
    return sorted(slot.glob("*.whl"))[0]


def _digest_key(parts: list[object]) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _patched_from_last(
    project_dir: Path, files: dict[str, str], cache: Path, pointer: Path, out_dir: Path
) -> tuple[Path, dict[str, Any]] | None:
    """The last wheel of this project patched with the edit, and the last build's record, when the edit
    allows a patch (else None)."""
    try:
        last_slot = cache / pointer.read_text().strip()
    except OSError:
        return None
    last = wheel_patch.load_record(last_slot)
    wheels = sorted(last_slot.glob("*.whl"))
    if last is None or len(wheels) != 1:
        return None
    wheel = wheel_patch.patched_wheel(project_dir, files, wheels[0], last, out_dir)
    return None if wheel is None else (wheel, last)


def wheel_content_hash(*wheels: Path) -> str:
    """sha256 over the wheels' member names and bytes: unlike the zip file's hash it ignores timestamps,
    so rebuilding unchanged source lands on the same cached environment."""
    digest = hashlib.sha256()
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for name in sorted(archive.namelist()):
                digest.update(name.encode() + b"\0" + archive.read(name) + b"\0")
    return digest.hexdigest()


def contains_package(wheel: Path, package: str) -> bool:
    with zipfile.ZipFile(wheel) as archive:
        return f"{package}/__init__.py" in archive.namelist()


def sdk_source_root() -> Path | None:
    """Source checkout of this SDK (editable install or repo on sys.path), if there is one."""
    candidate = Path(__file__).resolve().parents[3]  # <root>/src/slurm/packaging/builds.py
    return (
        candidate if (candidate / "pyproject.toml").is_file() and (candidate / "src/slurm").is_dir() else None
    )


def sdk_wheel(out_dir: Path) -> Path:
    """A wheel of the SDK that is running here: built from its source checkout when there is one, otherwise
    re-packed from the installed distribution (its RECORD lists the files)."""
    root = sdk_source_root()
    if root is not None:  # its wheel is made of these only: tests, bench results, images never rebuild it
        return cached_wheel(root, SDK_SOURCE_PARTS)
    try:
        distribution = importlib.metadata.distribution(SDK_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(
            "the slurm SDK has neither a source checkout nor an installed distribution to ship; "
            "install slurm-sdk with pip on this host, or install it on the cluster's Python and "
            "set include_sdk: false"
        ) from exc
    return wheel_from_installed(distribution, out_dir)


def wheel_from_installed(distribution: importlib.metadata.Distribution, out_dir: Path) -> Path:
    """Re-pack an installed pure-Python distribution as a wheel: the files its RECORD names that live in
    site-packages (no bytecode, no scripts outside it), its metadata, and a fresh RECORD."""
    members: dict[str, bytes] = {}
    dist_info = None
    for path in distribution.files or []:
        name = path.as_posix()
        if name.startswith("../") or "__pycache__/" in name or name.endswith(".pyc"):
            continue
        top, _, leaf = name.partition("/")
        if top.endswith(".dist-info"):
            dist_info = top
            if leaf in _INSTALL_ONLY:
                continue
        members[name] = Path(str(distribution.locate_file(path))).read_bytes()
    if dist_info is None or f"{dist_info}/WHEEL" not in members:
        raise ConfigError(
            f"the installed {distribution.metadata['Name']} has no usable RECORD/WHEEL files; "
            "reinstall it with pip, or install it on the cluster and set include_sdk: false"
        )
    rows = [
        [
            name,
            "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode(),
            str(len(data)),
        ]
        for name, data in sorted(members.items())
    ]
    record = io.StringIO()
    csv.writer(record, lineterminator="\n").writerows([*rows, [f"{dist_info}/RECORD", "", ""]])
    members[f"{dist_info}/RECORD"] = record.getvalue().encode()
    wheel = out_dir / f"{dist_info.removesuffix('.dist-info')}-py3-none-any.whl"
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return wheel
