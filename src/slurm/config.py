"""Cluster configuration: a YAML file plus environment overrides.

Schema (only ``backend`` is required)::

    backend:
      type: ssh                # local | slurm | ssh
      host: login.example.org  # ssh: host, port, user, key_filename, known_host_key, connect_timeout
                               # local: state_dir, max_array_size, parallelism; slurm: SlurmBackend options
                               # slurm, ssh: slurm_cluster: two (one cluster of several on a slurmdbd, -M)
    packaging:                 # default {type: none}
      type: none               # none | wheel | sync, plus that strategy's options
      pythonpath: [/shared/code]
    defaults:                  # resources every task gets unless it sets its own
      partition: debug
      time: "00:05:00"
    job_root: /home/me/.slurm-sdk/jobs  # job directories on the cluster (default ~/.slurm-sdk/jobs)
    poll_interval_seconds: 30          # longest pause between two scheduler queries, in seconds
    result_poll_interval_seconds: 1.0  # longest pause between two result-file checks, in seconds
    outage_limit_seconds: 600          # seconds transient errors are retried when a wait has no timeout

The file is ``path`` or ``$SLURM_SDK_CONFIG``. ``SLURM_SDK__<SECTION>__<KEY>=value`` overrides one key
(the value is parsed as YAML, so ``SLURM_SDK__BACKEND__PORT=2222`` is an int); ``overrides={...}``
(a nested dict) wins over both.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slurm.backends import make_backend
from slurm.errors import ConfigError, ResourceError
from slurm.options import describe, first_problem
from slurm.packaging import make_packaging
from slurm.resources import Resources

if TYPE_CHECKING:
    import yaml
    from pydantic import BaseModel

ENV_PATH = "SLURM_SDK_CONFIG"
ENV_PREFIX = "SLURM_SDK__"


@dataclass(frozen=True)
class ConfigSource:
    """Where a config came from, with the line of every key, so errors can point at it."""

    path: str
    lines: dict[str, int]

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else self.path


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], ConfigSource]:
    """Read, merge and check a config; raises ``ConfigError`` with path and line."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(ENV_PATH)
    data, lines = _read_yaml(str(path)) if path else ({}, {})
    for keys, value in _env_overrides(environ):
        _set_nested(data, keys, value)
    _merge(data, overrides or {})
    if not data:
        raise ConfigError(
            f"no configuration: pass a path, set {ENV_PATH}=<file>, or set variables like "
            f"{ENV_PREFIX}BACKEND__TYPE=local"
        )
    source = ConfigSource(str(path or "<environment>"), lines)
    _check_sections(data, source)
    return data, source


def backend_settings_when_changed(
    path: str, overrides: Mapping[str, Any] | None = None
) -> Callable[[], Mapping[str, Any] | None]:
    """A check for a long-lived client's transport (``SSHTransport.reload_settings``): the ``backend``
    section of the config file ``path`` when the file changed since the last look (its modification time
    or size), else None; so a client survives the file being rewritten, e.g. `slurm-dev-cluster config`
    run again after the dev cluster was started anew."""
    seen = _stamp(path)

    def changed() -> Mapping[str, Any] | None:
        nonlocal seen
        stamp = _stamp(path)
        if stamp == seen:
            return None
        data, _ = load_config(path, overrides=overrides)
        seen = stamp
        backend = data.get("backend")
        return backend if isinstance(backend, Mapping) else None

    return changed


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


def cluster_options(data: Mapping[str, Any], source: ConfigSource) -> dict[str, Any]:
    """Keyword arguments for ``Cluster`` from a loaded config (builds backend and packaging)."""
    if "backend" not in data:
        raise ConfigError(
            f"{source.path}: missing section 'backend' (e.g. backend: {{type: ssh, host: login}})"
        )
    options = {
        key: data[key]
        for key in (
            "job_root",
            "poll_interval_seconds",
            "result_poll_interval_seconds",
            "outage_limit_seconds",
        )
        if key in data
    }
    options["defaults"] = _defaults(source, data.get("defaults", {}))
    options["packaging"] = _build_section(
        source, "packaging", make_packaging, data.get("packaging", {"type": "none"})
    )
    options["backend"] = _build_section(source, "backend", make_backend, data["backend"])  # last: may connect
    return options


def _read_yaml(path: str) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        with open(path) as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    import yaml  # here, not at the top: `Cluster()` without a config file never pays for it

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the config must be a mapping of sections (backend:, packaging:, ...), "
            f"got {type(data).__name__}"
        )
    return data, _key_lines(node)


def _key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Dotted key -> 1-based line, for every key in the YAML document."""
    import yaml

    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key + "."))
    return lines


def _env_overrides(environ: Mapping[str, str]) -> Iterator[tuple[list[str], Any]]:
    for name, raw in sorted(environ.items()):
        if name.startswith(ENV_PREFIX):
            import yaml

            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ConfigError(f"environment variable {name}: invalid YAML value {raw!r}: {exc}") from None
            yield name[len(ENV_PREFIX) :].lower().split("__"), value


def _set_nested(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ConfigError(f"cannot override {'.'.join(keys)}: {key} is not a section")
    data[keys[-1]] = value


def _merge(data: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(data.get(key), dict):
            _merge(data[key], value)
        else:
            data[key] = dict(value) if isinstance(value, Mapping) else value


def _check_sections(data: Mapping[str, Any], source: ConfigSource) -> None:
    problem = first_problem(_sections_model(), data)
    if problem is not None:
        key = str(problem["loc"][0])
        raise ConfigError(f"{source.where(key)}: {describe(problem, _sections_model(), noun='key')}", key=key)


@functools.cache
def _sections_model() -> type[BaseModel]:
    """The top level of a config file as a strict pydantic model (only the keys present are checked)."""
    from pydantic import ConfigDict, Field, create_model

    section = (dict[str, Any], Field(None, description="a mapping of options"))
    seconds = (float, Field(None, gt=0, description="a positive number of seconds"))
    model: type[BaseModel] = create_model(
        "ClusterConfig",
        __config__=ConfigDict(strict=True, extra="forbid"),
        backend=section,
        packaging=section,
        defaults=section,
        job_root=(str, Field(None, description="a path")),
        poll_interval_seconds=seconds,
        result_poll_interval_seconds=seconds,
        outage_limit_seconds=seconds,
    )
    return model


def _build_section(source: ConfigSource, name: str, build: Callable[[Any], Any], config: Any) -> Any:
    try:
        return build(config)
    except ConfigError as exc:
        where = source.where(f"{name}.{exc.key}" if exc.key else name)
        raise ConfigError(f"{where}: {exc}", key=exc.key) from None


def _defaults(source: ConfigSource, values: Mapping[str, Any]) -> Resources:
    for key, value in values.items():  # one at a time, to point at the bad key's line
        try:
            Resources.from_dict({key: value})
        except ResourceError as exc:
            raise ConfigError(f"{source.where('defaults.' + key)}: defaults: {exc}", key=key) from None
    return Resources.from_dict(values)
