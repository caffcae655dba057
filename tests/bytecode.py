"""Bytecode for the processes a test run starts, when the environment says not to write it.

With ``PYTHONDONTWRITEBYTECODE`` set (some dev containers set it to keep ``__pycache__`` out of the tree),
every process compiles each module it imports from source. The fast tier starts hundreds of Python
processes (a launcher and a runner per local job, the kit's CLI, pytest workers) importing the same SDK and
test modules: compiling them again in each cost 15-25 % of the tier's CPU. ``share_bytecode`` keeps the tree
clean all the same: bytecode goes to a private directory outside it (``PYTHONPYCACHEPREFIX``), written once
and read by every later process and run (Python checks each file against its source, so an edit is seen).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path


def private_cache_dir(base: Path) -> Path | None:
    """``base``/slurm-sdk/pycache, made 0700 if missing; None unless it is a directory of this user's that
    nobody else can write to (bytecode from a directory someone else controls would run as their code)."""
    path = base / "slurm-sdk" / "pycache"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    return path


def share_bytecode(environ: os._Environ[str] | dict[str, str] = os.environ) -> Path | None:
    """If ``PYTHONDONTWRITEBYTECODE`` is set: bytecode from now on goes to a private cache directory, for
    this process and the ones it starts (their environment). Returns that directory, or None when nothing
    changed (bytecode is written as usual, or no private directory could be made)."""
    if not environ.get("PYTHONDONTWRITEBYTECODE"):
        return None
    if environ.get("PYTHONPYCACHEPREFIX"):
        prefix: Path | None = Path(environ["PYTHONPYCACHEPREFIX"])
    else:
        prefix = private_cache_dir(Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"))
    if prefix is None:
        return None
    del environ["PYTHONDONTWRITEBYTECODE"]
    environ["PYTHONPYCACHEPREFIX"] = str(prefix)
    if environ is os.environ:
        sys.pycache_prefix, sys.dont_write_bytecode = str(prefix), False
    return prefix
