"""The cluster-side interpreter that environments are built from: probed once, in one command.

Dependencies are resolved for *this* interpreter (its version, implementation, CPU and glibc), not for the
host's, because compiled wheels must match the node. Its path is part of an environment's identity: a venv
links to the interpreter it was made from, and stops working when that path goes away.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass

from slurm.errors import CommandError, ConfigError
from slurm.transports.base import Transport

#: Oldest glibc any manylinux wheel targets (manylinux1 = glibc 2.5).
OLDEST_MANYLINUX_MINOR = 5
#: Legacy manylinux names and the glibc minor they stand for (PEP 600 aliases).
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}

_PROBE = """\
import importlib.util, json, os, platform, sys
base = getattr(sys, "_base_executable", None) or sys.executable
libc, libc_version = platform.libc_ver()
pip = importlib.util.find_spec("pip") is not None
print(json.dumps({"executable": sys.executable, "base_executable": base, "realpath": os.path.realpath(base),
    "version": "%d.%d.%d" % sys.version_info[:3], "implementation": sys.implementation.name,
    "abiflags": getattr(sys, "abiflags", ""), "machine": platform.machine(), "libc": libc,
    "libc_version": libc_version, "has_pip": pip}))
"""


@dataclass(frozen=True)
class NodeInterpreter:
    """What a job's interpreter is on the cluster side. ``base_executable`` is what a venv made from it
    links to; ``realpath`` is the binary behind any symlinks."""

    executable: str
    base_executable: str
    realpath: str
    version: str  # "3.13.5"
    implementation: str  # "cpython"
    abiflags: str  # "" or "t" (free-threaded)
    machine: str  # "x86_64"
    libc: str  # "glibc" ("" on musl)
    libc_version: str  # "2.41"
    has_pip: bool

    @property
    def minor_version(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def abi(self) -> str:
        """The CPython ABI tag of compiled wheels it loads: ``cp313`` (``cp313t`` free-threaded)."""
        return "cp" + self.minor_version.replace(".", "") + self.abiflags

    @property
    def glibc_minor(self) -> int:
        if self.libc != "glibc":
            raise ConfigError(
                f"the cluster's Python ({self.executable}) runs on {self.libc or 'a non-glibc libc'}; "
                "only glibc (manylinux) nodes are supported for dependency resolution: set "
                "dependencies: [] and install them on the nodes yourself"
            )
        major, _, minor = self.libc_version.partition(".")
        if major != "2" or not minor.split(".")[0].isdigit():
            raise ConfigError(f"unexpected glibc version {self.libc_version!r} on the cluster's Python")
        return int(minor.split(".")[0])

    def manylinux_platforms(self) -> list[str]:
        """Every manylinux platform tag the node accepts, newest first (pip needs them all spelled out)."""
        tags = []
        for minor in range(self.glibc_minor, OLDEST_MANYLINUX_MINOR - 1, -1):
            tags.append(f"manylinux_2_{minor}_{self.machine}")
            if minor in LEGACY_MANYLINUX:
                tags.append(f"{LEGACY_MANYLINUX[minor]}_{self.machine}")
        return tags

    def describe(self) -> str:
        """Human wording for error messages: 'CPython 3.13.5 on x86_64, glibc 2.41 (/usr/bin/python3.13)'."""
        name = {"cpython": "CPython", "pypy": "PyPy"}.get(self.implementation, self.implementation)
        libc = f"{self.libc} {self.libc_version}" if self.libc else "unknown libc"
        return f"{name} {self.version} on {self.machine}, {libc} ({self.executable})"

    def identity(self) -> dict[str, str]:
        """The facts an environment built from this interpreter depends on (part of the cache key)."""
        facts = asdict(self)
        facts.pop("has_pip")
        facts.pop("executable")  # a wrapper script may change while the base stays: the base is what counts
        return facts


def probe_interpreter(transport: Transport, python: str) -> NodeInterpreter:
    """Run ``python`` on the cluster side once and describe it. A missing interpreter is a ``ConfigError``."""
    command = f"{shlex.quote(python)} -c {shlex.quote(_PROBE)}"
    try:
        output = transport.run(command, timeout=60).stdout
    except CommandError as exc:
        raise ConfigError(
            f"the packaging's python {python!r} does not run on the cluster: "
            f"{(exc.stderr or exc.stdout).strip()[-300:]}; set the packaging option python to an "
            "interpreter that exists on the login and compute nodes",
            key="python",
        ) from exc
    try:
        facts = json.loads(output.strip().splitlines()[-1])
        return NodeInterpreter(**facts)
    except (ValueError, IndexError, TypeError) as exc:
        raise ConfigError(
            f"could not read what {python!r} reported on the cluster: {output[-300:]!r}", key="python"
        ) from exc
