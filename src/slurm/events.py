"""Delivering callback events: each hook an object has is called, and what it raises is logged, never
propagated. The hooks themselves, and the order of events, are ``slurm.callbacks``.

Apart from ``slurm.callbacks`` so that ``Job`` and ``Cluster`` deliver events without importing the
``Callback`` class, whose hooks are typed with ``Job``: ``slurm.callbacks`` stays above them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

# The logger users know from the docs of ``slurm.callbacks``.
logger = logging.getLogger("slurm.callbacks")


def emit(callbacks: Iterable[Any], event: str, *args: Any) -> None:
    """Call ``event`` (``"on_submit"``, ...) of each callback that has it, with ``args``."""
    for callback in callbacks:
        hook = getattr(callback, event, None)
        if hook is None:
            continue
        try:
            hook(*args)
        except Exception:
            logger.exception("callback %r raised in %s; continuing", callback, event)
