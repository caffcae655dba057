"""Host commands with a time limit: a download or a lock wait that hangs ends, and says so."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path


def run_bounded(
    command: Sequence[str],
    seconds: float,
    error: type[Exception],
    fix: str,
    cwd: Path | str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` (output captured as text) that must end within ``seconds``; past that the
    command is killed and ``error`` raised naming the command, the limit and ``fix``."""
    try:
        return subprocess.run(list(command), capture_output=True, text=True, timeout=seconds, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise error(
            f"`{shlex.join(command)}` did not end within {seconds:g} s (stopped); fix: {fix}"
        ) from None
