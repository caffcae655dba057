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
    """Every path the client reads through ``transport`` from now on: each file read, and each file a
    batch fetch sent back (a result check asks for files that may not exist yet; it reads only those that do)."""
    reads: list[str] = []
    read_bytes, read_existing = transport.read_bytes, transport.read_existing

    def read_one(path, *rest):
        reads.append(path)
        return read_bytes(path, *rest)

    def read_many(paths, *rest):
        found = read_existing(paths, *rest)
        reads.extend(found)
        return found

    monkeypatch.setattr(transport, "read_bytes", read_one)
    monkeypatch.setattr(transport, "read_existing", read_many)
    return reads
