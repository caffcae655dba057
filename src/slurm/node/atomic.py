"""Atomic file writes, kept free of heavy imports: every job's runner uses this on the node."""

from __future__ import annotations

import os


def write_atomic(path: str, data: bytes, mode: int | None = None) -> None:
    """Write via a temp file in the same directory and rename, so readers never see half a file. The file
    is ``mode``, else 0600."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.urandom(16).hex()}")
    try:
        # Created owner-only (0600) and only then given ``mode``: never readable by others on the way.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
