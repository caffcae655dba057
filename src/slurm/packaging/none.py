"""Packaging "none": the code is already importable on the nodes (installed, or on a shared path)."""

from __future__ import annotations

import shlex
from typing import Any

from slurm.backends.base import Backend
from slurm.packaging.base import PackagingStrategy


class NonePackaging(PackagingStrategy):
    """Ship nothing. ``pythonpath``: absolute directories (on the cluster) prepended to PYTHONPATH in the
    job; ``python``: the interpreter to run the job with."""

    type = "none"

    def __init__(self, pythonpath: list[str] | None = None, python: str = "python3") -> None:
        self.pythonpath = list(pythonpath or [])
        self.python = python

    def prepare(self, backend: Backend) -> None:
        pass

    def setup_lines(self) -> list[str]:
        if not self.pythonpath:
            return []
        return [f'export PYTHONPATH={shlex.quote(":".join(self.pythonpath))}"${{PYTHONPATH:+:$PYTHONPATH}}"']

    def python_command(self) -> str:
        return shlex.quote(self.python)

    def to_config(self) -> dict[str, Any]:
        return {"type": self.type, "pythonpath": self.pythonpath, "python": self.python}
