"""What every part of the stack reports through: its error type and its voice on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable

Say = Callable[[str], None]


class StackError(RuntimeError):
    """The stack could not be brought to a usable state; the message says why and what to do."""


def say_stderr(message: str) -> None:
    print(f"[harness] {message}", file=sys.stderr, flush=True)
