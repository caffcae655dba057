"""Checking option dicts (a config file's sections, ``backend:`` and ``packaging:`` options) with pydantic.

``construct`` validates options against the factory's own signature (names, required options, annotated
types, in pydantic's strict mode: no "3" for an int, no string for a list), so a typo in a config is
reported as such, with the valid names, instead of as a TypeError or a silently wrong value. The
``ConfigError`` carries the offending key, so ``slurm.config`` can point at its line.

Backends and packaging use this module; ``slurm.config`` uses them, never the other way round. pydantic
is imported on first use: a plain task's runner never loads it.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from slurm.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic_core import ErrorDetails

T = TypeVar("T")

#: pydantic's error types, most useful first: a misspelt name explains the rest.
_ORDER = {"extra_forbidden": 0, "missing": 1}


def construct(
    factory: Callable[..., T], options: Mapping[str, Any], what: str, *fixed: Any, check: bool = True
) -> T:
    """``factory(*fixed, **options)`` once ``options`` fit the parameters after ``fixed``. ``check=False``
    for options the SDK wrote itself (a workflow's child config): no pydantic import on the node."""
    if not check or _plainly_valid(factory, len(fixed), options):
        return factory(*fixed, **options)
    model = _model_of(factory, len(fixed))
    problem = first_problem(model, options)
    if problem is not None:
        raise ConfigError(f"{what}: {describe(problem, model)}", key=_key(problem))
    return factory(*fixed, **options)


def first_problem(model: type[BaseModel], data: Mapping[str, Any]) -> ErrorDetails | None:
    """The most telling validation error of ``data`` against ``model``, or None when it is valid."""
    from pydantic import ValidationError

    try:
        model.model_validate(dict(data))
    except ValidationError as error:
        return min(error.errors(), key=lambda problem: _ORDER.get(problem["type"], 2))
    return None


def describe(problem: ErrorDetails, model: type[BaseModel], *, noun: str = "option") -> str:
    """One sentence: what is wrong with which key, the valid names or the expected type, and the fix."""
    key, kind, value = _key(problem), problem["type"], problem["input"]
    if kind == "extra_forbidden":
        return f"unknown {noun} {key!r} (valid: {', '.join(model.model_fields) or 'none'})"
    if kind == "missing":
        return f"missing required {noun} {key!r}"
    field = model.model_fields.get(key or "")
    expected = (field.description or _hint_name(field.annotation)) if field else "valid"
    message = f"{noun} {key!r} must be {expected}, got {type(value).__name__} {value!r}"
    if kind == "sequence_str":  # a YAML string where a list belongs: never split it into characters
        return f"{message}: write a list, e.g. {key}: [{value}]"
    return f"{message} ({problem['msg']})"


def _key(problem: ErrorDetails) -> str | None:
    return str(problem["loc"][0]) if problem["loc"] else None


def _plainly_valid(factory: Callable[..., Any], skip: int, options: Mapping[str, Any]) -> bool:
    """True when ``options`` pass the strict model without asking pydantic (~0.15 CPU-seconds to import, in
    every process that builds a Cluster from a dict): known names, the required ones given, each value
    exactly of its plain annotated type (str, int, float, bool, a list of those, None where allowed, anything
    where no type is known). Whatever else goes to pydantic, which also says what is wrong."""
    fields, open_ended = _fields_of(factory, skip)
    if any(default is ... and name not in options for name, (_, default) in fields.items()):
        return False
    return all(
        _plainly_fits(value, fields[key][0]) if key in fields else open_ended
        for key, value in options.items()
    )


def _plainly_fits(value: Any, hint: Any) -> bool:
    """``value`` passes pydantic's strict check of ``hint`` for plain reasons; False when unsure."""
    if hint is Any:
        return True
    if hint in (str, int, float, bool):
        return type(value) is hint  # strict: no bool for an int, no int for a float here
    if hint is type(None):
        return value is None
    origin, arms = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_plainly_fits(value, arm) for arm in arms)
    if origin is list and len(arms) == 1:
        return type(value) is list and all(_plainly_fits(item, arms[0]) for item in value)
    return False


@functools.cache
def _fields_of(factory: Callable[..., Any], skip: int) -> tuple[dict[str, tuple[Any, Any]], bool]:
    """``factory``'s keyword parameters after the first ``skip`` (name -> annotation, default or ``...`` when
    required), and whether it takes any other keyword (``**options``)."""
    parameters = list(_signature(factory).parameters.values())[skip:]
    fields: dict[str, tuple[Any, Any]] = {
        p.name: (_annotation(p), ... if p.default is p.empty else p.default)
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return fields, any(p.kind is p.VAR_KEYWORD for p in parameters)


@functools.cache
def _model_of(factory: Callable[..., Any], skip: int) -> type[BaseModel]:
    """A strict pydantic model of ``factory``'s keyword parameters (after the first ``skip``)."""
    from pydantic import ConfigDict, create_model

    parameters, open_ended = _fields_of(factory, skip)
    fields: dict[str, Any] = dict(parameters)
    config = ConfigDict(strict=True, extra="allow" if open_ended else "forbid", arbitrary_types_allowed=True)
    name = getattr(factory, "__name__", "Options")
    model: type[BaseModel] = create_model(name, __config__=config, **fields)
    return model


def _signature(factory: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(factory, eval_str=True)
    except NameError:  # an annotation only importable for type checkers: check names, not that type
        return inspect.signature(factory)


def _annotation(parameter: inspect.Parameter) -> Any:
    unresolved = parameter.annotation is parameter.empty or isinstance(parameter.annotation, str)
    return Any if unresolved else parameter.annotation


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "").replace("collections.abc.", "")
