"""How the submitted code reaches the compute nodes. One small class per strategy."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from slurm.backends.base import Backend


class PackagingStrategy(ABC):
    #: The ``type`` key in the packaging config: "none", "wheel" or "sync".
    type: ClassVar[str]

    @abstractmethod
    def prepare(self, backend: Backend) -> None:
        """Put the code on the cluster. Called once per Cluster before its first submit.

        Must be cheap when the work is already done (content-hash caches), so children that
        rebuild a strategy from ``to_config()`` never build or upload again.
        """

    @abstractmethod
    def setup_lines(self) -> list[str]:
        """Shell lines the job script runs before the runner (export PYTHONPATH, pick an env)."""

    def python_command(self) -> str:
        """Interpreter the job script runs the runner with."""
        return "python3"

    @abstractmethod
    def to_config(self) -> dict[str, Any]:
        """Config dict (including ``type``) from which a child task rebuilds this strategy
        inside an allocation, pointing at what ``prepare`` already put on the cluster."""
