"""Backends, built by type name from a config dict: ``{"type": "local" | "slurm" | "ssh", ...}``.

"local" is ``LocalCommandBackend`` (no Slurm); "slurm" runs Slurm commands on this machine
(``SlurmBackend(HostTransport())``); "ssh" runs them on a login node (``SlurmBackend(SSHTransport(...))``,
built by ``SSHBackend``); "rest" talks to slurmrestd and keeps files over SSH (``RestBackend``, built by
``rest_backend_from_config``). Where commands run is the transport's business: ``slurm.transports``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not from typing: the local backend's launcher imports this package (see below)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from slurm.backends.base import Backend, JobState
    from slurm.transports.base import CommandResult, Transport

__all__ = ["BACKEND_TYPES", "Backend", "CommandResult", "JobState", "Transport", "make_backend"]

BACKEND_TYPES = ("local", "slurm", "ssh", "rest")

# The interface's names are imported on first use: every local job starts a launcher process
# (slurm.backends.local_launcher) whose start-up should not pay for the backend interface's imports.
_EXPORTS = {
    "Backend": "slurm.backends.base",
    "JobState": "slurm.backends.job_states",
    "CommandResult": "slurm.transports.base",
    "Transport": "slurm.transports.base",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'slurm.backends' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def make_backend(config: Mapping[str, Any], *, check: bool = True) -> Backend:
    """Build a backend (imported lazily); unknown types or options raise ``ConfigError``."""
    from slurm.errors import ConfigError
    from slurm.options import construct

    options = dict(config)
    kind = options.pop("type", None)
    if kind == "local":
        from slurm.backends.local import LocalCommandBackend

        return construct(LocalCommandBackend, options, "backend 'local'", check=check)
    if kind == "slurm":
        from slurm.backends.slurm import SlurmBackend
        from slurm.transports.host import HostTransport

        return construct(SlurmBackend, options, "backend 'slurm'", HostTransport(), check=check)
    if kind == "ssh":
        from slurm.backends.slurm import SSHBackend

        return construct(SSHBackend, options, "backend 'ssh'", check=check)
    if kind == "rest":
        from slurm.backends.rest import rest_backend_from_config

        return construct(rest_backend_from_config, options, "backend 'rest'", check=check)
    raise ConfigError(f"unknown backend type {kind!r}; valid types: {', '.join(BACKEND_TYPES)}", key="type")
