"""Tasks of the dataflow and async tests (importable, so they travel by reference), and a helper. The
integration tier uses them too: the repository is on the nodes' path."""

from __future__ import annotations

import collections
import time

from slurm import task

#: A named tuple the tests nest Jobs in (here, so the runner can unpickle it without importing a test module).
Pair = collections.namedtuple("Pair", "left right")


@task
def total(obj):
    """Sum of every number in a nested structure of lists, tuples and dict values."""
    if isinstance(obj, dict):
        return sum(total(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(total(value) for value in obj)
    return obj


@task
def echo(*args, **kwargs):
    """What the task received: its arguments, with parents' results in place of the jobs."""
    return args, kwargs


@task
def append_value(path, value):
    with open(path, "a") as handle:
        handle.write(str(value))
    return value


@task
def fail_after(seconds, message):
    time.sleep(seconds)
    raise ValueError(message)


@task
def slow_value(seconds, value):
    time.sleep(seconds)
    return value


def record_reads(transport, monkeypatch) -> list[str]:
    """Every path the client reads through ``transport`` from now on (one file or a batch of them)."""
    reads: list[str] = []
    for name in ("read_bytes", "read_existing"):
        original = getattr(transport, name)

        def recording(paths, *rest, _original=original):
            reads.extend([paths] if isinstance(paths, str) else paths)
            return _original(paths, *rest)

        monkeypatch.setattr(transport, name, recording)
    return reads
