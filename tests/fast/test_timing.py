"""slurm.timing: phases entered inside one another do not count the same time twice (on a fake clock)."""

import time
from types import SimpleNamespace

import pytest

from slurm import timing


@pytest.fixture
def clock(monkeypatch):
    """A clock that moves only when told to: ``clock.advance(seconds)``."""
    now = [0.0]
    fake = SimpleNamespace(perf_counter=lambda: now[0], time=time.time)
    monkeypatch.setattr(timing, "time", fake)
    fake.advance = lambda seconds: now.__setitem__(0, now[0] + seconds)
    return fake


def test_a_phase_leaves_out_the_phases_entered_inside_it(clock):
    with timing.recording() as phases:
        with timing.phase("wait"):
            clock.advance(2)
            with timing.phase("fetch"):
                clock.advance(5)
                with timing.phase("unpickle"):
                    clock.advance(3)
            clock.advance(1)
    assert [(phase.name, phase.seconds) for phase in phases] == [("unpickle", 3), ("fetch", 5), ("wait", 3)]
    assert sum(timing.totals(phases).values()) == 11  # the time that passed, counted once


def test_the_same_phase_inside_itself_is_counted_once(clock):
    with timing.recording() as phases:
        with timing.phase("unpickle"):
            clock.advance(1)
            with timing.phase("unpickle"):
                clock.advance(4)
    assert timing.totals(phases) == {"unpickle": 5}


def test_phases_one_after_another_are_each_their_own(clock):
    with timing.recording() as phases:
        with timing.phase("serialize"):
            clock.advance(1)
        with timing.phase("submit"):
            clock.advance(2)
    assert timing.totals(phases) == {"serialize": 1, "submit": 2}


def test_without_a_recording_nothing_is_kept(clock):
    with timing.phase("wait"):
        clock.advance(1)
    with timing.recording() as phases:
        pass
    assert phases == []
