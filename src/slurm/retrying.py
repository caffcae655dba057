"""Retrying transient scheduler and SSH errors (tenacity), always inside the caller's time limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from slurm.deadline import remaining
from slurm.errors import BackendError, SubmitError

T = TypeVar("T")

_BACKOFF = wait_exponential(multiplier=0.5, max=10) + wait_random(0, 0.5)


def is_transient(error: BaseException) -> bool:
    return isinstance(error, (BackendError, SubmitError)) and error.transient


def with_retries(operation: Callable[[], T], *, limit: float) -> T:
    """``operation()``, retried with exponential backoff (0.5 s doubling to 10 s, jittered) while it
    raises a transient ``BackendError``; for as long as the current deadline allows, or ``limit`` seconds
    when the caller set none. The last error is re-raised when time runs out."""
    left = remaining()
    budget = limit if left is None else max(0.0, left)

    def wait(state: RetryCallState) -> float:
        # Never sleep past the budget: the last attempt happens just before it ends.
        return max(0.0, min(_BACKOFF(state), budget - (state.seconds_since_start or 0.0) - 0.05))

    retrying = Retrying(
        stop=stop_after_delay(budget), wait=wait, retry=retry_if_exception(is_transient), reraise=True
    )
    return retrying(operation)
