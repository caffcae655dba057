"""This host's cache of packaging work (built wheels, resolutions, downloaded wheels): ``$XDG_CACHE_HOME/slurm-sdk``
(default ``~/.cache/slurm-sdk``). Deleting it only costs time."""

from __future__ import annotations

import os
from pathlib import Path


def host_cache_dir(kind: str) -> Path:
    """``<cache>/<kind>``, created on first use."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slurm-sdk" / kind
    root.mkdir(parents=True, exist_ok=True)
    return root
