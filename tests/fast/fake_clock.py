"""A clock for the waiting engine (``slurm.waiting.Clock``) that moves only when told to or slept on:
hours of waiting run in milliseconds, and every pause a wait takes is on record."""

from __future__ import annotations


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.start = self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def sleep_until(self, moment: float) -> None:
        self.sleeps.append(moment - self._now)
        self._now = max(self._now, moment)

    def advance(self, seconds: float) -> None:
        self._now += seconds

    @property
    def elapsed(self) -> float:
        return self._now - self.start
