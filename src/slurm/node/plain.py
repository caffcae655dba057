"""Plain data: calls and results that travel with ``marshal``, so that a plain task's runner never imports pickle.

Importing the C pickler costs every array task about 3 ms on Python 3.13 (it imports functools and,
with it, collections), as much as the rest of the runner's start-up. A map of a function the nodes import
by name, called with plain data, does not need it: the payload then holds the function's module and
qualified name and each call as marshal data (``slurm.node.payload``), and a plain return value goes back
the same way (``slurm.node.outcome``). Anything else (a Job argument, a class instance, a numpy array, a
workflow, code sent by value) travels pickled, as before.

Plain means exactly these types, nested: None, bool, int, float, complex, str, bytes, and tuples, lists,
dicts, sets and frozensets of them. Exact types, because marshal would turn a bytearray or any other
buffer into bytes and a subclass is not the type it names. marshal's format version 4 is written
explicitly: every CPython since 3.4 reads it, so the submitting side and the nodes may run different
Python versions, as with functions pickled by reference.
"""

from __future__ import annotations

import marshal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: marshal's format version written (``marshal.version`` is 4 from Python 3.4 to 3.13, 5 from 3.14).
FORMAT = 4
_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
_CONTAINERS = frozenset({tuple, list, set, frozenset})
#: Objects looked at before giving up on the plain form: beyond this, pickle (C all the way) is as
#: quick as its import, and the check stays bounded whatever the value (a cycle, say).
MAX_OBJECTS = 10_000


def dumps(obj: Any) -> bytes | None:
    """``obj`` as marshal data when it is plain and at most ``MAX_OBJECTS`` objects, else None (pickle it)."""
    if not _is_plain(obj):
        return None
    try:
        return marshal.dumps(obj, FORMAT)
    except ValueError:  # nested deeper than marshal goes: pickle it
        return None


def loads(data: bytes | memoryview) -> Any:
    return marshal.loads(data)


def _is_plain(obj: object) -> bool:
    pending: list[Any] = [obj]
    budget = MAX_OBJECTS
    while pending:
        budget -= 1
        if budget < 0:
            return False
        item = pending.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind in _CONTAINERS:
            pending.extend(item)
        elif kind is dict:
            pending.extend(item.keys())
            pending.extend(item.values())
        else:
            return False
    return True


def dump_reference(module: str, qualname: str) -> bytes:
    """The task section of a plain payload: the function's module and qualified name."""
    return marshal.dumps((module, qualname), FORMAT)


def load_reference(data: bytes) -> Any:
    """What a plain payload's task section names: the function, or the ``@task`` wrapping it (calling
    either runs the function, as ``Task.run_on_node`` does for a task that is not a workflow)."""
    module, qualname = marshal.loads(data)
    __import__(module)  # not importlib: its import costs every array task a little more
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
