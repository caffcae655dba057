"""A clock for the waiting engine (``slurm.waiting.Clock``) that moves only when told to or slept on:
hours of waiting run in milliseconds, and every pause a wait takes is on record. The asyncio driver
(``slurm.awaiting``) sleeps on it too."""

from __future__ import annotations

import asyncio


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.start = self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def sleep_until(self, moment: float) -> None:
        self.sleeps.append(moment - self._now)
        self._now = max(self._now, moment)

    async def sleep_until_async(self, moment: float) -> None:
        """The asyncio driver's pause: time jumps at once (the driver is all that sleeps on this clock),
        then the event loop runs what that made ready."""
        self.sleep_until(moment)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self._now += seconds

    @property
    def elapsed(self) -> float:
        return self._now - self.start
