"""How functions, arguments, results and exceptions travel between this process and the job: the
submitting side's half (the node's half, reading the payload and writing the outcome, is
``slurm.node.payload`` and ``slurm.node.outcome``).

Functions travel *by reference* (module + qualified name, see ``Task.__reduce__``) whenever they are
importable; anything else cloudpickle has to ship *by value*, as bytecode, which only loads on the same
Python minor version. ``dump_payload`` detects by-value bytecode and checks the node's version before
anything reaches the cluster.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Sequence
from typing import Any

from slurm.errors import JobFailedError, RemoteTraceback, SerializationError
from slurm.node import plain
from slurm.node.outcome import OutcomeFile
from slurm.node.payload import LOCAL_PYTHON, pack

Call = tuple[tuple[Any, ...], dict[str, Any]]


def _dump(obj: Any) -> tuple[bytes, list[str]]:
    """cloudpickle ``obj``; also returns the qualified names of the code it had to pickle by value."""
    buffer = io.BytesIO()
    pickler = _tracking_pickler()(buffer)
    pickler.dump(obj)
    return buffer.getvalue(), pickler.code_by_value


_TRACKING_PICKLER: Any = None


def _tracking_pickler() -> Any:
    """cloudpickle's Pickler, recording the code objects it pickles by value (built on first use: importing
    ``slurm`` does not load cloudpickle)."""
    global _TRACKING_PICKLER
    if _TRACKING_PICKLER is None:
        import types

        import cloudpickle

        class BytecodeTrackingPickler(cloudpickle.Pickler):  # type: ignore[misc]
            def __init__(self, file: Any) -> None:
                super().__init__(file)
                self.code_by_value: list[str] = []

            def reducer_override(self, obj: Any) -> Any:
                if isinstance(obj, types.CodeType):
                    self.code_by_value.append(obj.co_qualname)
                return super().reducer_override(obj)

        _TRACKING_PICKLER = BytecodeTrackingPickler
    return _TRACKING_PICKLER


def dump_payload(task: Any, calls: Sequence[Call], node_python: Callable[[], str]) -> bytes:
    """Pickle the task and its calls for the runner (layout: ``slurm.node.payload``). ``node_python``
    ("3.13") is only asked for when something must travel by value. Raises ``SerializationError`` naming
    the object at fault. A task the nodes import by name with plain calls makes a plain payload
    (``slurm.node.plain``), which the node reads without pickle."""
    plain_payload = _dump_plain(task, calls)
    if plain_payload is not None:
        return plain_payload
    try:
        task_data, code_by_value = _dump(task)
        items = []
        for call in calls:
            item, by_value = _dump(call)
            items.append(item)
            code_by_value += by_value
    except Exception as exc:  # cloudpickle raises many types (PicklingError, TypeError, ...)
        raise SerializationError(_describe_unpicklable(task, calls, exc)) from exc
    if code_by_value:
        node = node_python()
        if node != LOCAL_PYTHON:
            raise SerializationError(
                f"cannot send {_task_name(task)} to the nodes: {', '.join(sorted(set(code_by_value)))} must travel "
                f"by value (as bytecode) because it is not importable (defined in __main__, inside another "
                f"function, or a lambda), but bytecode only loads on the same Python minor version, and this "
                f"process runs Python {LOCAL_PYTHON} while the nodes run Python {node}. Move the code into a "
                f"module the nodes can import (packaging 'pythonpath', 'wheel' or 'sync')."
            )
    return pack(task_data, items)


def _dump_plain(task: Any, calls: Sequence[Call]) -> bytes | None:
    """The plain payload of ``task`` and ``calls``, or None when the task or a call is not plain."""
    by_name = getattr(task, "_by_name", None)
    reference = by_name() if by_name is not None else None
    if reference is None:
        return None
    items = []
    for call in calls:
        item = plain.dumps(call)
        if item is None:
            return None
        items.append(item)
    return pack(plain.dump_reference(*reference), items, plain=True)


def _task_name(task: Any) -> str:
    return getattr(task, "__qualname__", repr(task))


def _describe_unpicklable(task: Any, calls: Sequence[Call], exc: Exception) -> str:
    """Find which object broke pickling so the message can name it."""
    suspects: list[tuple[str, Any]] = [(f"function {_task_name(task)}", task)]
    for index, (args, kwargs) in enumerate(calls):
        where = f" of item {index}" if len(calls) > 1 else ""
        suspects += [(f"argument {position}{where}", value) for position, value in enumerate(args)]
        suspects += [(f"argument {name!r}{where}", value) for name, value in kwargs.items()]
    for label, obj in suspects:
        try:
            _dump(obj)
        except Exception as culprit_exc:
            return (
                f"cannot submit {_task_name(task)}: {label} ({type(obj).__name__} {_short_repr(obj)}) "
                f"cannot be pickled: {culprit_exc}"
            )
    return f"cannot submit {_task_name(task)}: its function and arguments cannot be pickled: {exc}"


def _short_repr(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


class Outcome(OutcomeFile):
    """What the runner left in the job directory, read back here. A value is unpickled when asked for,
    straight from the file's bytes: peak memory is the file plus the value, about 2x its size."""

    def value(self, job_id: str) -> Any:
        try:
            if self.plain and self._value_data is not None:
                return plain.loads(self._value_data)
            if self._value_data is not None:
                return pickle.loads(self._value_data)
            return pickle.loads(self.fields["value"])  # written by an SDK before value_follows
        except Exception as exc:
            raise SerializationError(
                f"the result of job {job_id} cannot be unpickled here (Python {LOCAL_PYTHON}): {exc}"
            ) from exc

    def values_by_rank(self, job_id: str) -> list[Any]:
        """Every rank's value, in rank order (a one-process task: its value, alone)."""
        if "ranks" not in self.fields:
            return [self.value(job_id)]
        return [Outcome(True, {"value": value}).value(job_id) for value in self.fields["ranks"]]

    def _where(self, job_id: str) -> str:
        """ "job 12", or "job 12 rank 3 (of 4, on c2)" for the failing rank of a multi-rank task."""
        if self.fields.get("rank") is None:
            return f"job {job_id}"
        node = f", on {self.fields['node']}" if self.fields.get("node") else ""
        return f"job {job_id} rank {self.fields['rank']} (of {self.fields['world_size']}{node})"

    def exception(self, job_id: str) -> BaseException:
        """The remote exception (its original type when it unpickles here), with the remote traceback
        as ``__cause__`` so it prints as part of the local traceback."""
        if self.fields.get("type") is None:  # a rank that left no result: nothing was raised
            return JobFailedError(
                f"{self._where(job_id)}: {self.fields['message']}", job_id=job_id, state="FAILED"
            )
        remote = RemoteTraceback(self.fields["traceback"])
        try:
            error = pickle.loads(self.fields["exception"]) if self.fields["exception"] else None
        except Exception:
            error = None
        if isinstance(error, BaseException) and not isinstance(error, Exception):
            # SystemExit / KeyboardInterrupt re-raised as themselves would end (or look like a Ctrl-C
            # in) the submitting process: a task that exits is a failed job, with its code kept.
            error = self._exit_error(job_id, error)
        elif not isinstance(error, BaseException):
            error = JobFailedError(
                f"{self._where(job_id)} raised {self.fields['type']}: {self.fields['message']}",
                job_id=job_id,
                state="FAILED",
            )
        else:
            error.add_note(f"(raised in {self._where(job_id)}; the remote traceback is shown above)")
        error.__cause__ = remote
        return error

    def _exit_error(self, job_id: str, error: BaseException) -> JobFailedError:
        code = self.fields.get("exit_code")
        how = (
            f"called sys.exit({code!r})"
            if isinstance(error, SystemExit)
            else f"raised {type(error).__name__}"
        )
        return JobFailedError(
            f"{self._where(job_id)}: the task {how}, so it ended without a result",
            job_id=job_id,
            state="FAILED",
            exit_code=code,
        )
