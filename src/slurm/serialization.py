"""How functions, arguments, results and exceptions travel between this process and the job.

Functions travel *by reference* (module + qualified name, see ``Task.__reduce__``) whenever they are
importable; anything else cloudpickle has to ship *by value*, as bytecode, which only loads on the same
Python minor version. ``dump_payload`` detects by-value bytecode and checks the node's version before
anything reaches the cluster.
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle

from slurm.errors import JobFailedError, RemoteTraceback, SerializationError

Call = tuple[tuple[Any, ...], dict[str, Any]]

LOCAL_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


class _BytecodeTrackingPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle is untyped
    """cloudpickle that records the code objects it pickles by value."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.code_by_value: list[str] = []

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.CodeType):
            self.code_by_value.append(obj.co_qualname)
        return super().reducer_override(obj)


def _dump(obj: Any) -> tuple[bytes, list[str]]:
    buffer = io.BytesIO()
    pickler = _BytecodeTrackingPickler(buffer)
    pickler.dump(obj)
    return buffer.getvalue(), pickler.code_by_value


def dump_payload(task: Any, calls: Sequence[Call], node_python: Callable[[], str]) -> bytes:
    """Pickle the task and its calls for the runner. ``node_python`` ("3.13") is only asked for when
    something must travel by value. Raises ``SerializationError`` naming the object at fault."""
    try:
        data, code_by_value = _dump({"task": task, "calls": list(calls)})
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
    return data


def load_payload(data: bytes) -> tuple[Any, list[Call]]:
    payload = pickle.loads(data)
    return payload["task"], payload["calls"]


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


# --- results ---------------------------------------------------------------------------------------


def dump_result(value: Any, *, restarts: int = 0) -> bytes:
    """Outcome file for a returned value; ``restarts``: how often the job was requeued before this run."""
    try:
        return pickle.dumps({"ok": True, "value": cloudpickle.dumps(value), "restarts": restarts})
    except Exception as exc:
        raise SerializationError(
            f"the task returned a {type(value).__name__} that cannot be pickled: {exc}"
        ) from exc


def dump_exception(exc: BaseException, traceback_text: str, *, restarts: int = 0) -> bytes:
    """Outcome file for a raised exception; the exception object itself is kept only if it pickles."""
    try:
        exception: bytes | None = cloudpickle.dumps(exc)
    except Exception:
        exception = None
    kind = type(exc)
    return pickle.dumps(
        {
            "ok": False,
            "exception": exception,
            "type": f"{kind.__module__}.{kind.__qualname__}",
            "message": str(exc),
            "traceback": traceback_text,
            "exit_code": exit_code_of(exc),
            "restarts": restarts,
        }
    )


def exit_code_of(exc: BaseException) -> int | str | None:
    """The code a task passed to ``sys.exit`` (0 for a bare ``sys.exit()``); None for other exceptions."""
    if not isinstance(exc, SystemExit):
        return None
    return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else str(exc.code)


@dataclass(frozen=True)
class Outcome:
    """What the runner left in the job directory, read back here."""

    ok: bool
    fields: dict[str, Any]

    @property
    def restarts(self) -> int:
        """Requeues before the run that wrote this (the node's SLURM_RESTART_COUNT)."""
        restarts: int = self.fields.get("restarts", 0)
        return restarts

    @classmethod
    def load(cls, data: bytes) -> Outcome:
        fields = pickle.loads(data)
        return cls(fields["ok"], fields)

    def value(self, job_id: str) -> Any:
        try:
            return pickle.loads(self.fields["value"])
        except Exception as exc:
            raise SerializationError(
                f"the result of job {job_id} cannot be unpickled here (Python {LOCAL_PYTHON}): {exc}"
            ) from exc

    def exception(self, job_id: str) -> BaseException:
        """The remote exception (its original type when it unpickles here), with the remote traceback
        as ``__cause__`` so it prints as part of the local traceback."""
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
                f"job {job_id} raised {self.fields['type']}: {self.fields['message']}",
                job_id=job_id,
                state="FAILED",
            )
        else:
            error.add_note(f"(raised in job {job_id}; the remote traceback is shown above)")
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
            f"job {job_id}: the task {how}, so it ended without a result",
            job_id=job_id,
            state="FAILED",
            exit_code=code,
        )
