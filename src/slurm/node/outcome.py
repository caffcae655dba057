"""The result file: what the runner leaves in the job directory for the submitting side to read.

A returned value: ``_RESULT_MAGIC``, the length of a small header pickle, the header, then the value's
own pickle (not nested: the reader unpickles the value straight from the bytes it fetched, without a
copy). A plain value (``slurm.node.plain``): ``_PLAIN_RESULT_MAGIC``, then the same with marshal data for
header and value, so a plain task's runner never imports pickle. A raised exception: one plain pickle of
its fields (b"\\x80..."). ``slurm.serialization.Outcome`` turns a file back into a value or an exception
on the submitting side.

The C pickler ``_pickle`` is imported where it is needed, not above: a plain task's runner never needs it
(and the ``pickle`` module around it imports re and enum besides).
"""

from __future__ import annotations

import struct

from slurm.node import plain
from slurm.node.errors import SerializationError

# Not typing.TYPE_CHECKING: importing typing costs every array task a few ms, for names only checkers use.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Self

#: A result file holding a value starts with this (an exception's is a plain pickle: b"\x80...").
_RESULT_MAGIC = b"SDKR"
_PLAIN_RESULT_MAGIC = b"SDKM"
_LENGTH = struct.Struct(">Q")


def _cloudpickle_dumps(obj: object) -> bytes:
    # cloudpickle: the one package beyond the standard library the node needs (it also loads functions
    # sent by value). Loaded only for what plain pickle refuses, which costs a plain task nothing.
    import cloudpickle

    data: bytes = cloudpickle.dumps(obj)
    return data


def dump_result(value: Any, *, restarts: int = 0, facts: dict[str, float] | None = None) -> bytes:
    """Outcome file for a returned value (layout in the module docstring).
    ``restarts``: how often the job was requeued before this run; ``facts``: what the runner measured
    (``payload_bytes_read``, ``started_at``, ``finished_at``), for benchmarks and checks."""
    header: dict[str, Any] = {**(facts or {}), "ok": True, "restarts": restarts, "value_follows": True}
    value_data = plain.dumps(value)
    if value_data is not None and (header_data := plain.dumps(header)) is not None:
        return b"".join([_PLAIN_RESULT_MAGIC, _LENGTH.pack(len(header_data)), header_data, value_data])
    import _pickle as pickle

    try:
        value_data = pickle.dumps(value, protocol=5)
    except Exception:  # lambdas, local classes, ...: cloudpickle handles what pickle cannot
        try:
            value_data = _cloudpickle_dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"the task returned a {type(value).__name__} that cannot be pickled: {exc}"
            ) from exc
    header_data = pickle.dumps(header)
    return b"".join([_RESULT_MAGIC, _LENGTH.pack(len(header_data)), header_data, value_data])


def dump_ranks(values: Sequence[bytes], nodes: Sequence[str], *, restarts: int) -> bytes:
    """Outcome file of a multi-rank task whose ranks all returned: rank 0's value as the value (what
    ``result()`` reads), every rank's pickled value in the header (``values_by_rank``)."""
    import _pickle as pickle

    header = {
        "ok": True,
        "restarts": restarts,
        "value_follows": True,
        "ranks": list(values),
        "nodes": list(nodes),
    }
    header_data = pickle.dumps(header, protocol=5)
    return b"".join([_RESULT_MAGIC, _LENGTH.pack(len(header_data)), header_data, values[0]])


def dump_exception(exc: BaseException, traceback_text: str, *, restarts: int = 0) -> bytes:
    """Outcome file for a raised exception; the exception object itself is kept only if it pickles."""
    import _pickle as pickle

    try:
        exception: bytes | None = _cloudpickle_dumps(exc)
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


class OutcomeFile:
    """A result file read back: whether the task returned, the header fields, and the value's pickle
    (a view into the file's bytes, unpickled only when asked for: ``slurm.serialization.Outcome``)."""

    def __init__(
        self, ok: bool, fields: dict[str, Any], value_data: memoryview | None = None, *, plain: bool = False
    ) -> None:
        self.ok, self.fields, self._value_data = ok, fields, value_data
        #: Whether the value is marshal data (``slurm.node.plain``) rather than a pickle.
        self.plain = plain

    @property
    def restarts(self) -> int:
        """Requeues before the run that wrote this (the node's SLURM_RESTART_COUNT)."""
        return int(self.fields.get("restarts", 0))

    @classmethod
    def load(cls, data: bytes | bytearray) -> Self:
        view = memoryview(data)  # slices of it share ``data``'s buffer: no copy
        start = len(_RESULT_MAGIC) + _LENGTH.size
        if view[: len(_PLAIN_RESULT_MAGIC)] == _PLAIN_RESULT_MAGIC:
            (length,) = _LENGTH.unpack(view[len(_PLAIN_RESULT_MAGIC) : start])
            fields = plain.loads(view[start : start + length])
            return cls(fields["ok"], fields, view[start + length :], plain=True)
        import _pickle as pickle

        if view[: len(_RESULT_MAGIC)] == _RESULT_MAGIC:
            (length,) = _LENGTH.unpack(view[len(_RESULT_MAGIC) : start])
            fields = pickle.loads(view[start : start + length])
            return cls(fields["ok"], fields, view[start + length :])
        fields = pickle.loads(data)  # an exception, or a value nested by an earlier SDK
        return cls(fields["ok"], fields)

    def value_bytes(self) -> bytes:
        """The value's own pickle (for combining ranks: ``slurm.node.gather``): as the runner wrote it, or
        made from its marshal data."""
        if self.plain and self._value_data is not None:
            import _pickle as pickle

            return bytes(pickle.dumps(plain.loads(self._value_data), protocol=5))
        return bytes(self._value_data) if self._value_data is not None else bytes(self.fields["value"])
