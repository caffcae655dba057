"""Samples, summaries and interleaved A/B timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Series:
    """Repeated measurements of one quantity (seconds, MB, or a dimensionless ratio)."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "n": len(self.samples),
            "samples": self.samples,
        }


def timed(action: Callable[[], Any]) -> float:
    """Wall time of ``action()`` in seconds."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


#: Whether ``interleave`` runs an untimed warm-up round (``--quick`` turns it off to save time).
DEFAULT_WARMUP = True


def interleave(
    repeats: int,
    runs: dict[str, Callable[[], float]],
    *,
    warmup: bool | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Series]:
    """Run every entry of ``runs`` in turn (A, B, A, B, ...) ``repeats`` times. Each callable returns the
    seconds it measured itself, so set-up outside the measured span is excluded. One untimed warm-up
    round first (connections, imports and node caches settle) unless ``warmup`` is False."""
    if DEFAULT_WARMUP if warmup is None else warmup:
        for name, run in runs.items():
            say(f"  warm-up {name}")
            run()
    result = {name: Series() for name in runs}
    for round_ in range(repeats):
        for name, run in runs.items():
            seconds = run()
            result[name].samples.append(seconds)
            say(f"  [{round_ + 1}/{repeats}] {name}: {seconds:.3f} s")
    return result


def ratio(numerator: Series, denominator: Series) -> Series:
    """Per-round ratios of two interleaved series (round i of A over round i of B)."""
    return Series([a / b for a, b in zip(numerator.samples, denominator.samples, strict=True)])
