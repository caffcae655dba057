"""Where a project's dependencies are declared: ``pyproject.toml``, a requirements file, or a built wheel."""

from __future__ import annotations

import re
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

from slurm.errors import ConfigError

#: A requirement's distribution name (PEP 508): what the error messages and the node-side pins use.
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_EXTRA_MARKER = re.compile(r"\bextra\s*==")


def normalize_name(name: str) -> str:
    """PEP 503 normal form: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if not match:
        raise ConfigError(f"{requirement!r} is not a requirement (expected e.g. 'numpy>=2' or 'humanize')")
    return normalize_name(match.group(1))


def project_dependencies(project_dir: Path) -> list[str]:
    """``[project].dependencies`` of ``project_dir/pyproject.toml`` (none when there is no such file)."""
    pyproject = project_dir / "pyproject.toml"
    if not pyproject.is_file():
        return []
    try:
        data = tomllib.loads(pyproject.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pyproject} is not valid TOML: {exc}") from exc
    project = data.get("project", {})
    if "dependencies" in project.get("dynamic", []):
        raise ConfigError(
            f"{pyproject} declares its dependencies as dynamic, so they cannot be read without "
            "building it; list them in [project].dependencies, or set the packaging option "
            "requirements to a requirements file",
            key="requirements",
        )
    dependencies = project.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise ConfigError(f"{pyproject}: [project].dependencies must be a list of strings")
    for requirement in dependencies:
        requirement_name(requirement)
    return list(dependencies)


def requirements_file(path: Path) -> list[str]:
    """Requirements listed one per line; comments and blank lines are skipped. pip options (``-r``, ``-e``,
    ``--index-url``) are refused: indexes are the resolver's configuration, not the project's."""
    if not path.is_file():
        raise ConfigError(f"requirements file {path} does not exist", key="requirements")
    requirements = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise ConfigError(
                f"{path}:{number}: pip option {line.split()[0]!r} is not supported in a packaging "
                "requirements file; list plain requirements (name, version specifier, markers) "
                "and configure indexes in pip.conf or uv.toml",
                key="requirements",
            )
        requirement_name(line)
        requirements.append(line)
    return requirements


def wheel_requirements(wheel: Path) -> list[str]:
    """``Requires-Dist`` of a built wheel, without those that only apply to an extra."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(
            (n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None
        )
        if metadata is None:
            raise ConfigError(f"{wheel.name} has no .dist-info/METADATA: not a wheel")
        message = Parser().parsestr(archive.read(metadata).decode())
    return [r for r in message.get_all("Requires-Dist", []) if not _EXTRA_MARKER.search(r.partition(";")[2])]
