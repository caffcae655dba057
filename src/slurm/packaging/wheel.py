"""Ship the project as a wheel, with all its dependencies, to the cluster.

The wheel is built here (where the source is; cached by source content). Its dependencies (``Requires-Dist``,
i.e. ``[project].dependencies``) are resolved here for the cluster's interpreter and installed into a venv
(with the SDK's wheel); the project's wheel is unpacked into a layer beside that venv and put on
PYTHONPATH, so an edit of the project rebuilds the layer (seconds) and never the venv. Both are built once
on the cluster's shared home and reused by every job and every child task: ``to_config()`` names them, so
children never rebuild anything. See ``slurm.packaging.environment`` for the caches and their keys.
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any

from slurm.backends.base import Backend
from slurm.errors import ConfigError
from slurm.packaging.base import PackagingStrategy
from slurm.packaging.builds import cached_wheel, contains_package, sdk_wheel
from slurm.packaging.environment import (
    INSTALL_SOURCES,
    Environment,
    build_project_layer,
    ensure_environment,
    ensure_project_layer,
    env_and_layer_ready,
    environment_spec,
    is_healthy,
    project_layer_path,
    ready_test,
    without_built,
)
from slurm.packaging.requirements import requirements_file, wheel_requirements
from slurm.packaging.resolver import RESOLVERS
from slurm.transports.base import Transport


def find_project_root(start: str | Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding a ``pyproject.toml``."""
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "pyproject.toml").is_file():
            return directory
    raise ConfigError(
        f"no pyproject.toml in {here} or above; set the packaging option project_dir/source_dir"
    )


def default_cache_root(transport: Transport) -> str:
    return transport.expand_home("~/.slurm-sdk/cache")


def sdk_wheels(include_sdk: bool, shipped: list[Path], tmp: Path) -> list[Path]:
    """The SDK's wheel when asked for and not already shipped inside one of ``shipped``."""
    if not include_sdk or any(contains_package(wheel, "slurm") for wheel in shipped):
        return []
    return [sdk_wheel(tmp / "sdk")]


class DependencyOptions:
    """Options shared by the strategies that build a venv: ``install_from`` (``auto``: the nodes' index if
    they reach one within a few seconds, else a wheelhouse downloaded here; ``index``; ``wheelhouse``),
    ``resolver`` (``auto``: uv when installed, else pip; ``uv``; ``pip``), ``requirements`` (a requirements
    file on this host, relative to the project)."""

    def __init__(
        self, install_from: str = "auto", resolver: str = "auto", requirements: str | None = None
    ) -> None:
        for key, value, valid in (
            ("install_from", install_from, INSTALL_SOURCES),
            ("resolver", resolver, RESOLVERS),
        ):
            if value not in valid:
                raise ConfigError(f"unknown {key} {value!r}; valid: {', '.join(valid)}", key=key)
        self.install_from = install_from
        self.resolver = resolver
        self.requirements = requirements
        #: What the last prepare() did to the venv (for logs, tests and benchmarks): built it, or found it.
        self.last_environment: Environment | None = None

    def requirements_path(self, project: Path) -> Path | None:
        if self.requirements is None:
            return None
        path = Path(self.requirements)
        return path if path.is_absolute() else project / path


def check_child_env(transport: Transport, env: str, kind: str, layer: str | None = None) -> None:
    """A child's prepare: the parent's venv (and project layer) must still be there and whole."""
    if not is_healthy(transport, env, also=ready_test(layer) if layer else "true"):
        raise ConfigError(
            f"{kind} environment {env} is missing or incomplete on the cluster; "
            "prepare the packaging from the submitting host first"
        )


class WheelPackaging(PackagingStrategy, DependencyOptions):
    """Options: ``project_dir`` (default: the project around the cwd), ``python`` (cluster interpreter
    the venv is made from), ``cache_root`` (default ``~/.slurm-sdk/cache`` on the cluster),
    ``include_sdk`` (also install this SDK when the project's wheel doesn't contain ``slurm``),
    ``install_from``, ``resolver``, ``requirements`` (extra requirements file; the wheel's own dependencies
    always count), ``env`` and ``layer`` (an already prepared venv and project layer; set by
    ``to_config()`` for child tasks)."""

    type = "wheel"

    def __init__(
        self,
        project_dir: str | None = None,
        python: str = "python3",
        cache_root: str | None = None,
        include_sdk: bool = True,
        env: str | None = None,
        layer: str | None = None,
        install_from: str = "auto",
        resolver: str = "auto",
        requirements: str | None = None,
    ) -> None:
        DependencyOptions.__init__(self, install_from, resolver, requirements)
        self.project_dir = project_dir
        self.python = python
        self.cache_root = cache_root
        self.include_sdk = include_sdk
        self.env = env
        self.layer = layer

    def prepare(self, backend: Backend) -> None:
        transport = backend.transport
        if self.env is not None:
            check_child_env(transport, self.env, "wheel", self.layer)
            return
        project = self._project()
        cache_root = self.cache_root or default_cache_root(transport)
        with tempfile.TemporaryDirectory(prefix="slurm-sdk-wheel-") as tmp:
            wheel = cached_wheel(project)
            sdk = sdk_wheels(self.include_sdk, [wheel], Path(tmp))
            requirements = [r for w in (wheel, *sdk) for r in wheel_requirements(w)]
            extra = self.requirements_path(project)
            if extra is not None:
                requirements += requirements_file(extra)
            spec = environment_spec(
                transport,
                python=self.python,
                source=f"the dependencies of {project}" + (f" and {extra}" if extra else ""),
                requirements=without_built(requirements, [wheel, *sdk]),
                wheels=sdk,
                resolver=self.resolver,
            )
            env = f"{cache_root}/envs/{spec.key()}"
            layer = project_layer_path(cache_root, env, wheel)
            env_ready, layer_ready = env_and_layer_ready(transport, env, layer)  # warm: one command
            if env_ready and layer_ready:
                self.last_environment = Environment(env, built=False, install_from=None)
            elif env_ready:  # an edit: the venv stays, only the project's layer is new
                self.last_environment = Environment(env, built=False, install_from=None)
                build_project_layer(transport, spec, env, wheel, cache_root)
            else:
                self.last_environment = ensure_environment(transport, spec, cache_root, self.install_from)
                ensure_project_layer(transport, spec, env, wheel, cache_root)
        self.env, self.layer = env, layer

    def _project(self) -> Path:
        project = find_project_root() if self.project_dir is None else Path(self.project_dir)
        if not (project / "pyproject.toml").is_file() and not (project / "setup.py").is_file():
            raise ConfigError(f"project_dir {project} has no pyproject.toml or setup.py")
        return project.resolve()

    def setup_lines(self) -> list[str]:
        if self.layer is None:
            return []
        return [f'export PYTHONPATH={shlex.quote(self.layer)}"${{PYTHONPATH:+:$PYTHONPATH}}"']

    def python_command(self) -> str:
        if self.env is None:
            raise ConfigError("wheel packaging has no environment yet: call prepare() before rendering jobs")
        return shlex.quote(self.env + "/bin/python")

    def to_config(self) -> dict[str, Any]:
        if self.env is None:
            raise ConfigError("wheel packaging has no environment yet: call prepare() before to_config()")
        return {"type": self.type, "env": self.env, "layer": self.layer, "python": self.python}
