"""The dev-cluster image's wheelhouse: ``pyproject.toml``'s dependencies as wheels for the nodes.

The image installs the SDK editable *with* its dependencies, offline (``pip install --no-index
--find-links``), from ``images/wheelhouse/<release>/``: the build containers need no index and no
registry. This module fills that directory on the host, resolving for the nodes' interpreter and
platform (trixie: CPython 3.13, glibc 2.41; bookworm: 3.11, 2.36; forky: 3.14, 2.43), not the host's. Debian's packages
stay a fast path: a requirement that the image's system site packages already satisfy is not
reinstalled, and the wheelhouse only has to supply the rest.

``images/wheelhouse/<release>/requirements.txt`` records what was resolved, headed by a key over the
declared dependencies and the target; while the key matches, ``ensure`` does nothing (no network), so a
warm ``harness up`` pays nothing for it. The directory is git-ignored and not part of the image inputs
hash: ``pyproject.toml`` is, and the wheelhouse is a function of it and the release.
"""

from __future__ import annotations

import hashlib
import platform
import re
import shutil
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slurm_dev_cluster.processes import run_bounded

WHEELHOUSE_DIR = Path("images") / "wheelhouse"  # relative to the repo root; the Dockerfile's COPY source
MANIFEST = "requirements.txt"
KEY_PREFIX = "# key: "
#: The whole `pip download` of the nodes' wheels: minutes on a slow link, never an hour.
DOWNLOAD_SECONDS = 900
OLDEST_MANYLINUX_MINOR = 5  # manylinux1 = glibc 2.5
#: manylinux tags that predate PEP 600's manylinux_2_X form, still used in wheel file names.
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
LEGACY_ARCHES = {
    "manylinux2014": ("x86_64", "i686", "aarch64", "ppc64le", "s390x", "armv7l"),
    "manylinux2010": ("x86_64", "i686"),
    "manylinux1": ("x86_64", "i686"),
}
ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True)
class Target:
    """The nodes' interpreter and C library, which decide which wheels install there."""

    release: str
    python: str  # "3.13"
    glibc: str  # "2.41"
    arch: str  # "x86_64", "aarch64"

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def platforms(self) -> list[str]:
        """Every manylinux tag this glibc accepts, newest first (pip does not expand them itself)."""
        major, newest = (int(part) for part in self.glibc.split("."))
        tags = []
        for minor in range(newest, OLDEST_MANYLINUX_MINOR - 1, -1):
            tags.append(f"manylinux_{major}_{minor}_{self.arch}")
            legacy = LEGACY_MANYLINUX.get(minor)
            if legacy and self.arch in LEGACY_ARCHES[legacy]:
                tags.append(f"{legacy}_{self.arch}")
        return tags

    def describe(self) -> str:
        return f"CPython {self.python} on Debian {self.release} ({self.arch}, glibc {self.glibc})"


#: What each supported Debian release ships: python3 and libc6 versions (checked against the running
#: nodes by tests/integration/test_image_dependencies.py).
RELEASES = {"trixie": ("3.13", "2.41"), "bookworm": ("3.11", "2.36"), "forky": ("3.14", "2.43")}

Say = Callable[[str], None]


class WheelhouseError(RuntimeError):
    """The wheelhouse could not be built; the message names the requirement, the target and the fix."""


def target_for(release: str, arch: str | None = None) -> Target:
    if release not in RELEASES:
        raise WheelhouseError(
            f"unknown DEBIAN_RELEASE={release!r}: the wheelhouse knows "
            f"{', '.join(RELEASES)}; add its python3 and glibc versions to "
            "harness/src/slurm_dev_cluster/wheelhouse.py RELEASES"
        )
    machine = (arch or platform.machine()).lower()
    python, glibc = RELEASES[release]
    return Target(release, python, glibc, ARCH_ALIASES.get(machine, machine))


def declared_dependencies(repo_root: Path) -> list[str]:
    """``[project].dependencies`` of the repo's ``pyproject.toml``: the source of truth for the nodes."""
    with (repo_root / "pyproject.toml").open("rb") as handle:
        return list(tomllib.load(handle).get("project", {}).get("dependencies", []))


def directory(repo_root: Path, release: str) -> Path:
    return repo_root / WHEELHOUSE_DIR / release


def key(requirements: list[str], target: Target) -> str:
    text = "\n".join([*sorted(requirements), target.release, target.python, target.glibc, target.arch])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_current(repo_root: Path, target: Target) -> bool:
    manifest = directory(repo_root, target.release) / MANIFEST
    try:
        first = manifest.read_text().splitlines()[0]
    except (OSError, IndexError):
        return False
    return first == KEY_PREFIX + key(declared_dependencies(repo_root), target)


def ensure(repo_root: Path, target: Target, say: Say, *, force: bool = False) -> bool:
    """Bring ``images/wheelhouse/<release>/`` up to date with pyproject.toml; True if it was rebuilt."""
    if not force and is_current(repo_root, target):
        return False
    requirements = declared_dependencies(repo_root)
    destination = directory(repo_root, target.release)
    say(
        f"wheelhouse: resolving {len(requirements)} dependenc{'y' if len(requirements) == 1 else 'ies'} "
        f"of pyproject.toml for {target.describe()}"
    )
    started = time.monotonic()
    staging = destination.with_name(f".{target.release}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if requirements:
            _download(requirements, target, staging)
        wheels = sorted(p.name for p in staging.glob("*.whl"))
        (staging / MANIFEST).write_text(
            "\n".join(
                [
                    KEY_PREFIX + key(requirements, target),
                    f"# for {target.describe()}",
                    *(_pin(name) for name in wheels),
                ]
            )
            + "\n"
        )
        shutil.rmtree(destination, ignore_errors=True)
        staging.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"wheelhouse: {len(wheels)} wheel(s) in {destination} ({time.monotonic() - started:.1f} s)")
    return True


def _download(requirements: list[str], target: Target, destination: Path) -> None:
    """``pip download`` of wheels only, for the target's interpreter and platform, with dependencies."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--python-version",
        target.python,
        "--implementation",
        "cp",
        "--abi",
        target.abi,
        "--abi",
        "abi3",
        "--abi",
        "none",
        *(arg for tag in target.platforms() for arg in ("--platform", tag)),
        "--dest",
        str(destination),
        *requirements,
    ]
    run = run_bounded(
        command,
        DOWNLOAD_SECONDS,
        WheelhouseError,
        "check the network to the package index (pip config, a proxy), then retry",
    )
    if run.returncode != 0:
        raise WheelhouseError(_explain(run.stderr, requirements, target))


def _explain(stderr: str, requirements: list[str], target: Target) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("ERROR")] or stderr.splitlines()[-5:]
    missing = re.search(r"No matching distribution found for (\S+)", stderr)
    what = f"`{missing.group(1)}`" if missing else f"one of {', '.join(requirements)}"
    return (
        f"cannot download wheels of {what} for {target.describe()}:\n  "
        + "\n  ".join(lines)
        + "\nfix: make sure the host reaches the package index (pip config, proxy, CA), and that the "
        f"requirement in pyproject.toml has a wheel for CPython {target.python} on manylinux "
        f"glibc <= {target.glibc} {target.arch} (or is pure Python); then `slurm-dev-cluster wheelhouse`"
    )


def _pin(wheel_name: str) -> str:
    """``toolz-1.2.0-py3-none-any.whl`` -> ``toolz==1.2.0`` (wheel names escape '-' in both fields)."""
    name, version = wheel_name.split("-")[:2]
    return f"{name}=={version}"
