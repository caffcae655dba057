"""The payload file: the task and the arguments of every call, of which an array task reads only its own.

Written on the submitting side (``slurm.serialization.dump_payload`` pickles, ``pack`` lays out), read
here on the node (O(1) bytes however long the map)::

    header   "SDK2" or "SDKP", task length, item count      (``_HEADER``: 4 + 8 + 8 bytes, big-endian)
    task     "SDK2": the pickled Task (by reference: module + name, a few hundred bytes);
             "SDKP": the function's module and qualified name as marshal data (``slurm.node.plain``)
    offsets  item count + 1 offsets into the items (8 bytes each): item i is items[offsets[i]:offsets[i+1]]
    items    one (args, kwargs) per call, back to back: pickled ("SDK2") or marshal data ("SDKP")
"""

from __future__ import annotations

import struct
import sys

from slurm.node.errors import SerializationError

# Not typing.TYPE_CHECKING: importing typing costs every array task a few ms, for names only checkers use.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Readable(Protocol):
        def read(self, size: int, /) -> bytes: ...
        def seek(self, offset: int, /) -> int: ...


#: This process's Python minor version ("3.13"): bytecode sent by value loads only on the same one.
LOCAL_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
_MAGIC = b"SDK2"
_PLAIN_MAGIC = b"SDKP"  # a plain payload (``slurm.node.plain``): the node reads it without pickle
_HEADER = struct.Struct(">4sQQ")
_OFFSET = struct.Struct(">Q")


def pack(task_data: bytes, items: list[bytes], *, plain: bool = False) -> bytes:
    """The payload file of a pickled task and its pickled calls, or (``plain``) of a function's reference
    and calls as marshal data (``slurm.node.plain``)."""
    offsets, end = [0], 0
    for item in items:
        end += len(item)
        offsets.append(end)
    table = b"".join(_OFFSET.pack(offset) for offset in offsets)
    magic = _PLAIN_MAGIC if plain else _MAGIC
    return b"".join([_HEADER.pack(magic, len(task_data), len(items)), task_data, table, *items])


def _read_header(handle: Readable) -> tuple[bool, int, int]:
    magic, task_length, count = _HEADER.unpack(_read_exactly(handle, _HEADER.size))
    if magic not in (_MAGIC, _PLAIN_MAGIC):
        raise SerializationError(
            f"the payload starts with {magic!r}, not {_MAGIC!r}: it was written by another version of the "
            "SDK than the one running this job; submit it again with the SDK installed on the nodes"
        )
    return magic == _PLAIN_MAGIC, task_length, count


def read_payload(handle: Readable, index: int) -> tuple[bool, bytes, bytes]:
    """Whether the payload in ``handle`` (seekable) is plain (``slurm.node.plain``), its task and its call
    ``index`` (pickled, or marshal data when plain): four small reads and the item itself, never another
    item's bytes."""
    plain, task_length, count = _read_header(handle)
    if not 0 <= index < count:
        raise SerializationError(f"the payload holds {count} call(s); there is no item {index}")
    task_data = _read_exactly(handle, task_length)
    table = _HEADER.size + task_length
    handle.seek(table + index * _OFFSET.size)
    start, end = struct.unpack(">QQ", _read_exactly(handle, 2 * _OFFSET.size))
    handle.seek(table + (count + 1) * _OFFSET.size + start)
    return plain, task_data, _read_exactly(handle, end - start)


def _read_exactly(handle: Readable, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise SerializationError(f"the payload is truncated: wanted {size} bytes, got {len(data)}")
    return data
