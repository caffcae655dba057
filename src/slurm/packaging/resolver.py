"""Resolve requirements on this host for the cluster's interpreter, with uv or pip.

The result is a complete list of pinned wheels (name, version, file, URL, sha256) for the node's Python
version and platform: the environment's cache key, the pins the node installs from an index, and the
files a wheelhouse is downloaded from. Only wheels count (``--no-build`` / ``--only-binary=:all:``): the
nodes must not need a compiler. A resolution is cached on this host for ``RESOLUTION_MAX_AGE`` seconds,
so a warm submission does not ask the index again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from slurm.errors import ConfigError, DependencyError
from slurm.packaging.host_cache import host_cache_dir
from slurm.packaging.interpreter import NodeInterpreter
from slurm.packaging.requirements import normalize_name, requirement_name

RESOLVERS = ("auto", "uv", "pip")
#: Seconds a cached resolution is reused before the index is asked again (new releases get picked up).
RESOLUTION_MAX_AGE = 24 * 3600
#: Newest manylinux glibc minor uv's ``--python-platform`` knows; newer nodes still load those wheels.
UV_NEWEST_MANYLINUX_MINOR = 40
UV_MACHINES = ("x86_64", "aarch64")
_TIMEOUT = 600


@dataclass(frozen=True)
class Pin:
    """One resolved wheel."""

    name: str
    version: str
    filename: str
    url: str
    sha256: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


def resolve(
    requirements: list[str],
    node: NodeInterpreter,
    resolver: str = "auto",
    *,
    source: str = "the requirements",
) -> list[Pin]:
    """Pins for ``requirements`` on ``node``, sorted by name. ``source`` names where they were declared
    (for the error). Raises ``DependencyError`` naming the package, the node's Python and the fix."""
    if not requirements:
        return []
    tool = pick_resolver(resolver, node)
    cache = host_cache_dir("resolutions") / (_fingerprint(requirements, node, tool) + ".json")
    if cache.is_file() and time.time() - cache.stat().st_mtime < RESOLUTION_MAX_AGE:
        return [Pin(**pin) for pin in json.loads(cache.read_text())]
    pins = sorted(_RUNNERS[tool](requirements, node, source), key=lambda pin: pin.name)
    tmp = cache.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps([asdict(pin) for pin in pins]))
    tmp.replace(cache)
    return pins


def pick_resolver(resolver: str, node: NodeInterpreter) -> str:
    """``auto``: uv when it is installed and can target the node (CPython on x86_64/aarch64), else pip."""
    if resolver not in RESOLVERS:
        raise ConfigError(f"unknown resolver {resolver!r}; valid: {', '.join(RESOLVERS)}", key="resolver")
    uv_fits = node.implementation == "cpython" and node.machine in UV_MACHINES
    if resolver == "uv":
        if _uv_binary() is None:
            raise ConfigError(
                "resolver 'uv' needs the uv package on this host: pip install 'slurm-sdk[uv]' "
                "(or set resolver: pip)",
                key="resolver",
            )
        if not uv_fits:
            raise ConfigError(f"uv cannot resolve for {node.describe()}; set resolver: pip", key="resolver")
        return "uv"
    if resolver == "auto":
        return "uv" if uv_fits and _uv_binary() is not None else "pip"
    return "pip"


def _fingerprint(requirements: list[str], node: NodeInterpreter, tool: str) -> str:
    target = [node.version, node.implementation, node.abiflags, node.machine, node.libc, node.libc_version]
    return hashlib.sha256(json.dumps([sorted(requirements), target, tool]).encode()).hexdigest()[:32]


def _uv_binary() -> str | None:
    try:
        from uv import find_uv_bin
    except ImportError:
        return None
    try:
        return find_uv_bin()
    except FileNotFoundError:
        return None


def _resolve_with_uv(requirements: list[str], node: NodeInterpreter, source: str) -> list[Pin]:
    platform = f"{node.machine}-manylinux_2_{min(node.glibc_minor, UV_NEWEST_MANYLINUX_MINOR)}"
    # --python: this interpreter only builds nothing (--no-build) but stops uv from searching for, or
    # downloading, a Python of the node's version; UV_PYTHON_DOWNLOADS=never makes sure of the latter.
    command = [
        _uv_binary() or "uv",
        "pip",
        "compile",
        "-",
        "--format",
        "pylock.toml",
        "--quiet",
        "--no-build",
        "--python",
        sys.executable,
        "--python-version",
        node.version,
        "--python-platform",
        platform,
    ]
    result = _run(command, "\n".join(requirements), {"UV_PYTHON_DOWNLOADS": "never"})
    if result.returncode != 0:
        raise _unresolvable(requirements, node, source, "uv", result.stderr)
    pins = []
    for package in tomllib.loads(result.stdout).get("packages", []):
        wheels = package.get("wheels") or []
        if not wheels:
            raise _unresolvable(requirements, node, source, "uv", f"{package['name']} has no wheel")
        url = wheels[0]["url"]
        pins.append(
            Pin(
                normalize_name(package["name"]),
                package["version"],
                _filename(url),
                url,
                wheels[0]["hashes"]["sha256"],
            )
        )
    return pins


def _resolve_with_pip(requirements: list[str], node: NodeInterpreter, source: str) -> list[Pin]:
    implementation = {"cpython": "cp", "pypy": "pp"}.get(node.implementation, node.implementation)
    with tempfile.TemporaryDirectory(prefix="slurm-sdk-resolve-") as tmp:
        requirements_path = Path(tmp, "requirements.txt")
        requirements_path.write_text("\n".join(requirements) + "\n")
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--disable-pip-version-check",
            "--report",
            "-",
            "--target",
            str(Path(tmp, "target")),
            "--only-binary=:all:",
            "--python-version",
            node.version,
            "--implementation",
            implementation,
            *(["--abi", node.abi] if implementation == "cp" else []),
            *[arg for tag in node.manylinux_platforms() for arg in ("--platform", tag)],
            "-r",
            str(requirements_path),
        ]
        result = _run(command, None, {})
    if result.returncode != 0:
        raise _unresolvable(requirements, node, source, "pip", result.stderr)
    pins = []
    for item in json.loads(result.stdout)["install"]:
        info = item["download_info"]
        archive = info.get("archive_info", {})
        sha256 = archive.get("hashes", {}).get("sha256") or archive.get("hash", "sha256=").partition("=")[2]
        pins.append(
            Pin(
                normalize_name(item["metadata"]["name"]),
                item["metadata"]["version"],
                _filename(info["url"]),
                info["url"],
                sha256,
            )
        )
    return pins


_RUNNERS = {"uv": _resolve_with_uv, "pip": _resolve_with_pip}


def _run(command: list[str], stdin: str | None, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT, env={**os.environ, **env}
        )
    except subprocess.TimeoutExpired as exc:
        raise DependencyError(
            f"resolving dependencies took longer than {_TIMEOUT} s: {' '.join(command)}; "
            "check this host's access to the package index"
        ) from exc


def _filename(url: str) -> str:
    return unquote(Path(urlsplit(url).path).name)


def _unresolvable(
    requirements: list[str], node: NodeInterpreter, source: str, tool: str, output: str
) -> DependencyError:
    names = [requirement_name(r) for r in requirements]
    blamed = culprits(names, output) or names
    platform = f"manylinux_2_{node.glibc_minor}_{node.machine}" if node.libc == "glibc" else node.machine
    detail = "\n".join(line for line in output.strip().splitlines()[-12:] if line.strip())
    return DependencyError(
        f"cannot install {', '.join(blamed)} (from {source}) for the cluster's Python: {node.describe()}, "
        f"wheel tags {node.abi}/{platform}.\n{tool} said:\n{detail}\n"
        f"Fix: correct or remove the requirement, or pin a version of {blamed[0]} that publishes a wheel for "
        f"Python {node.minor_version} on {platform} (nodes install wheels only, nothing is compiled there); "
        "or set the packaging option python to a cluster interpreter the package supports. Nothing was submitted."
    )


#: A requirement name as pip and uv print it (any case, any ``-_.`` spelling), then its extras and version.
_REQUIREMENT = r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?:\[[^\]\s]*\])?"
_VERSION = r"(?:\s*(?:[<>=!~]=?=?|\s)[0-9*][^\s,;()]*)?"
#: The places pip and uv put a requirement's name in their messages, and nowhere else: words of the
#: message ("No matching distribution") are never names. pip: "satisfies the requirement foo==1",
#: "No matching distribution found for foo", "The user requested foo", "foo 1.0 depends on bar";
#: uv: "Because [only | there is no version of | all versions of] foo ...", "you require foo",
#: "foo was not found", "foo==1 has no wheels", "only foo<2 is available".
_NAMED_AFTER = re.compile(
    r"(?:satisfies the requirement|distribution found for|the user requested|depends? on|you require"
    r"|because(?: only| there (?:is|are) no versions? of| all versions of| no versions of)?)\s+"
    + _REQUIREMENT,
    re.IGNORECASE,
)
_NAMED_BEFORE = re.compile(
    r"(?<![A-Za-z0-9._-])"
    + _REQUIREMENT
    + _VERSION
    + r"\s+(?:depends on|was not found|has no |is available)",
    re.IGNORECASE,
)
#: pip's "Cannot install foo==1.0, bar and baz==2 because ...": a list of requirements.
_CANNOT_INSTALL = re.compile(r"cannot install (.+?) because", re.IGNORECASE)


def culprits(names: list[str], output: str) -> list[str]:
    """The requirement names a resolver's message blames: whole names (any ``-_.`` spelling or case),
    where pip or uv put a requirement's name, never a word of the message that happens to be a name."""
    mentioned = {
        match.group(1) for pattern in (_NAMED_AFTER, _NAMED_BEFORE) for match in pattern.finditer(output)
    }
    for listed in _CANNOT_INSTALL.finditer(output):
        for part in re.split(r",\s*|\s+and\s+", listed.group(1)):
            match = re.match(r"\s*" + _REQUIREMENT, part)
            if match:
                mentioned.add(match.group(1))
    blamed = {normalize_name(name) for name in mentioned}
    return [name for name in names if normalize_name(name) in blamed]
