"""The caller's time limit, visible to every blocking call made on its behalf.

``with bounded(20): ...`` sets a deadline for this thread (nested limits keep the earliest); transports
ask ``operation_timeout(cap)`` for the timeout of each command, channel read or connect, so a frozen
login node cannot hold a ``result(timeout=20)`` longer than 20 s. Without a deadline each operation still
has its own cap, so nothing blocks forever.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("slurm_sdk_deadline", default=None)

#: Shortest timeout handed to an operation, so one started just before the deadline can still answer
#: (a wait may overrun its deadline by about this much per operation under way).
_FLOOR = 0.5


@contextlib.contextmanager
def bounded(timeout: float | None) -> Iterator[None]:
    """Run the body under a deadline ``timeout`` seconds from now (None: no new limit)."""
    if timeout is None:
        yield
        return
    new = time.monotonic() + max(0.0, timeout)
    current = _deadline.get()
    token = _deadline.set(new if current is None else min(current, new))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline (may be <= 0), or None when there is none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def operation_timeout(cap: float) -> float:
    """Timeout for one blocking operation: its own ``cap``, shortened to what the deadline leaves."""
    left = remaining()
    return cap if left is None else max(_FLOOR, min(cap, left))
