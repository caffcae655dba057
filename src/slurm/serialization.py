"""How functions, arguments, results and exceptions travel between this process and the job.

Functions travel *by reference* (module + qualified name, see ``Task.__reduce__``) whenever they are
importable; anything else cloudpickle has to ship *by value*, as bytecode, which only loads on the same
Python minor version. ``dump_payload`` detects by-value bytecode and checks the node's version before
anything reaches the cluster.

The payload is one file an array task reads only its own part of (O(1) bytes however long the map)::

    header   "SDK2", task length, item count      (``_HEADER``: 4 + 8 + 8 bytes, big-endian)
    task     the pickled Task (by reference: module + name, a few hundred bytes)
    offsets  item count + 1 offsets into the items (8 bytes each): item i is items[offsets[i]:offsets[i+1]]
    items    one pickled (args, kwargs) per call, back to back

The runner imports this module for every task: heavy imports (cloudpickle, typing) stay off that path.
"""

from __future__ import annotations

# The C pickler itself: the `pickle` module around it imports re and enum, ~4 ms for every array task.
import _pickle as pickle
import struct
import sys

from slurm.errors import JobFailedError, RemoteTraceback, SerializationError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs every array task ~5 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, Protocol

    Call = tuple[tuple[Any, ...], dict[str, Any]]

    class Readable(Protocol):
        def read(self, size: int, /) -> bytes: ...
        def seek(self, offset: int, /) -> int: ...


LOCAL_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
_MAGIC = b"SDK2"
_HEADER = struct.Struct(">4sQQ")
_OFFSET = struct.Struct(">Q")
#: A result file holding a value starts with this (an exception's is a plain pickle: b"\x80...").
_RESULT_MAGIC = b"SDKR"


def _dump(obj: Any) -> tuple[bytes, list[str]]:
    """cloudpickle ``obj``; also returns the qualified names of the code it had to pickle by value."""
    import io

    buffer = io.BytesIO()
    pickler = _tracking_pickler()(buffer)
    pickler.dump(obj)
    return buffer.getvalue(), pickler.code_by_value


_TRACKING_PICKLER: Any = None


def _tracking_pickler() -> Any:
    """cloudpickle's Pickler, recording the code objects it pickles by value (built on first use)."""
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
    """Pickle the task and its calls for the runner (layout in the module docstring). ``node_python``
    ("3.13") is only asked for when something must travel by value. Raises ``SerializationError`` naming
    the object at fault."""
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
    return _pack(task_data, items)


def _pack(task_data: bytes, items: list[bytes]) -> bytes:
    offsets, end = [0], 0
    for item in items:
        end += len(item)
        offsets.append(end)
    table = b"".join(_OFFSET.pack(offset) for offset in offsets)
    return b"".join([_HEADER.pack(_MAGIC, len(task_data), len(items)), task_data, table, *items])


def _read_header(handle: Readable) -> tuple[int, int]:
    magic, task_length, count = _HEADER.unpack(_read_exactly(handle, _HEADER.size))
    if magic != _MAGIC:
        raise SerializationError(
            f"the payload starts with {magic!r}, not {_MAGIC!r}: it was written by another version of the "
            "SDK than the one running this job; submit it again with the SDK installed on the nodes"
        )
    return task_length, count


def read_payload(handle: Readable, index: int) -> tuple[bytes, bytes]:
    """The pickled task and the pickled call ``index`` from the payload in ``handle`` (seekable): four
    small reads and the item itself, never another item's bytes."""
    task_length, count = _read_header(handle)
    if not 0 <= index < count:
        raise SerializationError(f"the payload holds {count} call(s); there is no item {index}")
    task_data = _read_exactly(handle, task_length)
    table = _HEADER.size + task_length
    handle.seek(table + index * _OFFSET.size)
    start, end = struct.unpack(">QQ", _read_exactly(handle, 2 * _OFFSET.size))
    handle.seek(table + (count + 1) * _OFFSET.size + start)
    return task_data, _read_exactly(handle, end - start)


def _read_exactly(handle: Readable, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise SerializationError(f"the payload is truncated: wanted {size} bytes, got {len(data)}")
    return data


def load_payload(data: bytes, index: int = 0) -> tuple[Any, Call]:
    """The task and call ``index`` of a whole payload held in memory (tests, tools)."""
    import io

    task_data, call = read_payload(io.BytesIO(data), index)
    return pickle.loads(task_data), pickle.loads(call)


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


def dump_result(value: Any, *, restarts: int = 0, facts: dict[str, float] | None = None) -> bytes:
    """Outcome file for a returned value: ``_RESULT_MAGIC``, the length of a small header pickle, the
    header, then the value's own pickle (not nested: the reader unpickles the value straight from the
    bytes it fetched, without a copy).
    ``restarts``: how often the job was requeued before this run; ``facts``: what the runner measured
    (``payload_bytes_read``, ``started_at``, ``finished_at``), for benchmarks and checks."""
    header: dict[str, Any] = {**(facts or {}), "ok": True, "restarts": restarts, "value_follows": True}
    try:
        value_data = pickle.dumps(value, protocol=5)
    except Exception:  # lambdas, local classes, ...: cloudpickle handles what pickle cannot
        import cloudpickle

        try:
            value_data = cloudpickle.dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"the task returned a {type(value).__name__} that cannot be pickled: {exc}"
            ) from exc
    header_data = pickle.dumps(header)
    return b"".join([_RESULT_MAGIC, _OFFSET.pack(len(header_data)), header_data, value_data])


def dump_exception(exc: BaseException, traceback_text: str, *, restarts: int = 0) -> bytes:
    """Outcome file for a raised exception; the exception object itself is kept only if it pickles."""
    import cloudpickle

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


class Outcome:
    """What the runner left in the job directory, read back here. A value is unpickled when asked for,
    straight from the file's bytes: peak memory is the file plus the value, about 2x its size."""

    def __init__(self, ok: bool, fields: dict[str, Any], value_data: memoryview | None = None) -> None:
        self.ok, self.fields, self._value_data = ok, fields, value_data

    @property
    def restarts(self) -> int:
        """Requeues before the run that wrote this (the node's SLURM_RESTART_COUNT)."""
        return int(self.fields.get("restarts", 0))

    @classmethod
    def load(cls, data: bytes | bytearray) -> Outcome:
        view = memoryview(data)  # slices of it share ``data``'s buffer: no copy
        start = len(_RESULT_MAGIC) + _OFFSET.size
        if view[: len(_RESULT_MAGIC)] == _RESULT_MAGIC:
            (length,) = _OFFSET.unpack(view[len(_RESULT_MAGIC) : start])
            fields = pickle.loads(view[start : start + length])
            return cls(fields["ok"], fields, view[start + length :])
        fields = pickle.loads(data)  # an exception, or a value nested by an earlier SDK
        return cls(fields["ok"], fields)

    def value(self, job_id: str) -> Any:
        try:
            if self._value_data is not None:
                return pickle.loads(self._value_data)
            return pickle.loads(self.fields["value"])  # written by an SDK before value_follows
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
