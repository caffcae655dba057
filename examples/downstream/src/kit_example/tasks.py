"""Task functions live in a module without pytest imports, so the nodes can import them by reference."""

from __future__ import annotations

import os
import socket
from collections import Counter

from slurm import task


@task(time="00:02:00", mem="100M")
def word_counts(text: str) -> dict[str, int]:
    return dict(Counter(text.lower().split()))


@task(time="00:02:00")
def where_am_i() -> dict[str, object]:
    """Which node ran this and from where this module was imported (the project's mount on the nodes)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return {
        "host": socket.gethostname(),
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "module_dir": here,
        "writable": os.access(here, os.W_OK),
    }
