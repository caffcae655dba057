"""Packaging strategies, built by type name from a config dict: ``{"type": "none" | "wheel" | "sync", ...}``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from slurm.errors import ConfigError
from slurm.options import construct
from slurm.packaging.base import PackagingStrategy

__all__ = ["PACKAGING_TYPES", "PackagingStrategy", "make_packaging"]

#: Type name -> module holding the strategy class (imported only when used).
PACKAGING_TYPES = {
    "none": "slurm.packaging.none",
    "wheel": "slurm.packaging.wheel",
    "sync": "slurm.packaging.sync",
}


def make_packaging(config: Mapping[str, Any], *, check: bool = True) -> PackagingStrategy:
    """Build a strategy; unknown types or options raise ``ConfigError`` listing the valid ones."""
    options = dict(config)
    kind = options.pop("type", None)
    if kind not in PACKAGING_TYPES:
        raise ConfigError(
            f"unknown packaging type {kind!r}; valid types: {', '.join(PACKAGING_TYPES)}", key="type"
        )
    try:
        module = importlib.import_module(PACKAGING_TYPES[kind])
    except ImportError as exc:
        raise ConfigError(f"packaging type {kind!r} could not be loaded: {exc}", key="type") from exc
    strategy: type[PackagingStrategy] = next(
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, PackagingStrategy) and getattr(obj, "type", None) == kind
    )
    return construct(strategy, options, f"packaging {kind!r}", check=check)
