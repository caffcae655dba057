"""Hooks into the life of each job, called in this (the submitting) process.

Order per job: ``on_submit`` -> ``on_state_change`` for every state change this process observes, in the
order observed (``on_requeue`` just before a change to REQUEUED) -> exactly one of ``on_complete`` or
``on_failure``. Each event fires once, however often
the job is polled or waited on. States are observed when you poll (``job.query_state()``, ``wait``, ``result``),
so a short job may go straight from PENDING to COMPLETED. An exception raised by a callback is logged
(logger "slurm.callbacks") and does not interrupt the job handling or other callbacks.

Events are delivered by ``slurm.events.emit``, which ``Job`` and ``Cluster`` import instead of this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slurm.backends.base import JobState
    from slurm.job import Job


class Callback:
    """Base class; override any subset. Objects that merely have some of these methods work too."""

    def on_submit(self, job: Job) -> None:
        """The job was accepted by the scheduler."""

    def on_state_change(self, job: Job, old: JobState, new: JobState) -> None:
        """The job's observed state changed (the first observation compares against PENDING)."""

    def on_requeue(self, job: Job, count: int) -> None:
        """The scheduler requeued the job (node failure, preemption): it will run again. ``count`` is
        its restart count as now observed; fired once per observed count, before the state change."""

    def on_complete(self, job: Job, result: Any) -> None:
        """The job completed; ``result`` is the task's return value."""

    def on_failure(self, job: Job, error: BaseException) -> None:
        """The job failed, was cancelled, timed out or its task raised; ``error`` is what
        ``job.result()`` raises."""
