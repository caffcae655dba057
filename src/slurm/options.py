"""Building objects from option dicts (a config file's ``backend:`` or ``packaging:`` section).

``construct`` checks option names, required options and simple annotated types against the factory's
signature, so a typo in a config is reported as such (with the valid names) instead of as a TypeError.
Backends and packaging use it; ``slurm.config`` uses them, never the other way round.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from slurm.errors import ConfigError

T = TypeVar("T")


def construct(factory: Callable[..., T], options: Mapping[str, Any], what: str, *fixed: Any) -> T:
    """``factory(*fixed, **options)``, after checking option names (and simple types, when annotated)
    against its signature, so a typo in a config is reported as such instead of as a TypeError."""
    parameters = list(inspect.signature(factory).parameters.values())[len(fixed) :]
    named = {p.name: p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters)
    for key in options:
        if key not in named and not open_ended:
            raise ConfigError(
                f"{what}: unknown option {key!r} (valid: {', '.join(named) or 'none'})", key=key
            )
    for name, parameter in named.items():
        if parameter.default is parameter.empty and name not in options:
            raise ConfigError(f"{what}: missing required option {name!r}", key=name)
    hints = _type_hints(factory)
    for key, value in options.items():
        if key in hints and not _matches(value, hints[key]):
            raise ConfigError(
                f"{what}: option {key!r} must be {_hint_name(hints[key])}, "
                f"got {type(value).__name__} {value!r}",
                key=key,
            )
    return factory(*fixed, **options)


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    try:
        parameters = inspect.signature(factory, eval_str=True).parameters.values()
    except Exception:  # unresolvable annotations: leave the checking to the factory itself
        return {}
    return {p.name: p.annotation for p in parameters if p.annotation is not p.empty}


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and (not args or all(_matches(item, args[0]) for item in value))
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # Any, protocols, ...: the factory judges


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
