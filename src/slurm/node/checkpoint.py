"""Checkpoint and requeue: a long task saves its state in the job directory and picks it up when it runs again.

    from slurm import checkpoint, task

    @task(time="01:00:00", checkpoint=True)       # or checkpoint=Checkpointing(signal_before=300, max_requeues=5)
    def train(steps):
        state = checkpoint.load({"step": 0})      # the last saved state on a rerun, else the default
        while state["step"] < steps:
            state["step"] += 1                    # ... one unit of work ...
            checkpoint.save(state)                # cheap: call it at every consistent point
        return state

The job script asks Slurm for SIGUSR2 ``signal_before`` seconds before the time limit. The runner only notes
the signal; the task's next ``save`` writes the state and then stops the run, and the runner requeues the job
(``scontrol requeue`` as the job's owner), so state is only ever saved where the task says it is consistent.
Time-limit requeues are counted in the job directory and stop after ``max_requeues`` (the job then ends
TIMEOUT). On SIGTERM (preemption, ``scontrol requeue`` by an admin, ``scancel``) the next ``save`` stops the
run the same way without requeueing: Slurm itself requeues a preempted job, with no limit. A site that gives
preempted jobs a ``GraceTime`` with ``PreemptParameters=send_user_signal`` sends SIGUSR2 instead of SIGTERM at
preemption; the runner asks slurmctld (the job's ``PreemptTime``) and treats that USR2 as the preemption it is.
Slurm before 24.05 requeues a preempted job only when its GraceTime runs out (one that ends sooner stays ended),
so there the run saves and then waits for Slurm's kill.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slurm.node.atomic import write_atomic
from slurm.node.errors import ResourceError
from slurm.node.layout import checkpoint_path, requeue_count_path
from slurm.node.slurm_commands import (
    DEFAULT_JOB_QUERY_COMMAND,
    DEFAULT_REQUEUE_COMMAND,
    DEFAULT_VERSION_COMMAND,
    JOB_QUERY_COMMAND_ENV,
    REQUEUE_COMMAND_ENV,
    VERSION_COMMAND_ENV,
)

#: The signal Slurm sends before the time limit (``--signal=B:USR2@N``; B: the batch shell, which is the
#: runner itself, since the script execs it).
TIME_LIMIT_SIGNAL = "USR2"
#: The runner's option that turns checkpointing on, with the number of time-limit requeues allowed.
MAX_REQUEUES_OPTION = "--max-requeues"
_PREEMPT_TIME = r"\bPreemptTime=(\S+)"
#: From this release on, a job that ends in its GraceTime after the preemption signal is requeued as
#: preempted; before it (22.05, 23.02, 23.11) it simply ends, and only Slurm's own kill at the end of the
#: GraceTime requeues it.
_REQUEUES_A_JOB_ENDING_IN_GRACE_TIME = (24, 5)
_SLURM_SIGNAL_MAX = 65535  # sbatch's limit for sig_time
_REQUEUE_TIMEOUT = 60.0  # s for scontrol requeue; a controller that long silent will not requeue in time


@dataclass(frozen=True)
class Checkpointing:
    """How a task checkpoints: SIGUSR2 ``signal_before`` seconds before its time limit (Slurm may send it up
    to 60 s earlier), and at most ``max_requeues`` requeues for the time limit (preemptions are unlimited)."""

    signal_before: int = 60
    max_requeues: int = 3

    def __post_init__(self) -> None:
        for name, low, high in (("signal_before", 1, _SLURM_SIGNAL_MAX), ("max_requeues", 0, None)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < low
                or (high and value > high)
            ):
                bound = f"between {low} and {high}" if high else f">= {low}"
                raise ResourceError(f"checkpoint {name} must be an int {bound}, got {value!r}")

    @classmethod
    def of(cls, value: Any) -> Checkpointing | bool | None:
        """``checkpoint=`` as given to ``@task``: True (the defaults), a Checkpointing, False (off, also over
        a cluster default) or None (unset: the cluster default, else off)."""
        if value is None or value is False:
            return value
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping) and set(value) <= {"signal_before", "max_requeues"}:
            return cls(**value)  # from a config file: {signal_before: 300, max_requeues: 5}
        raise ResourceError(
            f"checkpoint must be True, False, Checkpointing(signal_before=..., max_requeues=...) "
            f"or a dict of those two keys, got {value!r}"
        )

    def sbatch_signal(self) -> str:
        return f"B:{TIME_LIMIT_SIGNAL}@{self.signal_before}"


class Stopped(BaseException):
    """Raised out of ``save`` to end this run of the task after its state was saved (it runs again).
    A BaseException, so a task's ``except Exception`` does not swallow it."""


class _Run:
    """This run of a checkpointing task: where its state lives and which stop signal arrived."""

    def __init__(self, job_dir: str | None, index: int, max_requeues: int) -> None:
        self.job_dir, self.index, self.max_requeues = job_dir, index, max_requeues
        self.signalled: int | None = None
        self.memory: Any = _NOTHING  # outside a job (a task called directly) the state stays in memory

    def load(self, default: Any) -> Any:
        if self.job_dir is None or not os.path.exists(checkpoint_path(self.job_dir, self.index)):
            return default if self.memory is _NOTHING else self.memory
        import pickle  # here and below, imports on use: every Cluster() and task runner imports this module

        with open(checkpoint_path(self.job_dir, self.index), "rb") as handle:
            return pickle.load(handle)

    def save(self, state: Any) -> None:
        if self.job_dir is None:
            self.memory = state
            return
        import pickle

        write_atomic(checkpoint_path(self.job_dir, self.index), pickle.dumps(state), 0o600)
        received, self.signalled = self.signalled, None
        if received is not None:
            self._stop(self.job_dir, received)

    def _stop(self, job_dir: str, received: int) -> None:
        if received != signal.SIGUSR2:
            raise Stopped(
                f"stopped by {signal.Signals(received).name} after saving the checkpoint "
                "(preempted, requeued or cancelled: Slurm decides whether it runs again)"
            )
        if _being_preempted():
            if _requeues_only_after_grace_time():
                _say(
                    "preempted: checkpoint saved; this Slurm requeues a preempted job only once its GraceTime "
                    "is over (a job that ends sooner stays ended), so this run waits for Slurm to stop it"
                )
                _wait_to_be_stopped()
            raise Stopped(
                "stopped by SIGUSR2 at preemption after saving the checkpoint "
                "(the site sends the job's signal in its grace time: Slurm requeues it)"
            )
        done = self._time_limit_requeues(job_dir)
        if done >= self.max_requeues:
            _say(
                f"time limit near, but not requeued: max_requeues={self.max_requeues} reached; "
                "the job ends at its time limit"
            )
            return
        import shlex
        import subprocess

        command = [*shlex.split(os.environ.get(REQUEUE_COMMAND_ENV, DEFAULT_REQUEUE_COMMAND)), _own_job_id()]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=_REQUEUE_TIMEOUT)
            error = result.stderr.strip() if result.returncode else None
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        if error is not None:
            _say(
                f"time limit near, requeue failed ({shlex.join(command)}: {error}); the job ends at its time limit"
            )
            return
        # Counted once the requeue took: SIGTERM from it is only noted, so this write is not cut short.
        write_atomic(requeue_count_path(job_dir, self.index), str(done + 1).encode(), 0o600)
        raise Stopped(
            f"time limit near: checkpoint saved, job requeued ({done + 1} of max {self.max_requeues})"
        )

    def _time_limit_requeues(self, job_dir: str) -> int:
        try:
            with open(requeue_count_path(job_dir, self.index)) as handle:
                return int(handle.read())
        except FileNotFoundError:
            return 0


_NOTHING = object()
_run = _Run(None, 0, 0)


def load(default: Any = None) -> Any:
    """The state this task last saved (in an earlier run of the same job), else ``default``."""
    return _run.load(default)


def save(state: Any) -> None:
    """Save ``state`` (pickled into the job directory, atomically). After the time-limit signal or SIGTERM it
    then ends this run (raises ``Stopped``), and the job is requeued."""
    _run.save(state)


def begin(job_dir: str, index: int, max_requeues: int) -> None:
    """Called by the runner before a checkpointing task runs: bind ``load``/``save`` to this job and note
    the stop signals instead of dying on them."""
    global _run
    _run = _Run(job_dir, index, max_requeues)
    for signum in (signal.SIGUSR2, signal.SIGTERM):
        signal.signal(signum, _note_signal)


def _note_signal(signum: int, _frame: Any) -> None:
    # Only note it: saving here, between two arbitrary bytecodes, could capture a half-updated state.
    # os.write, not print: the task may be inside a write to stderr, and buffered streams are not reentrant.
    _run.signalled = signum
    os.write(
        2,
        f"[slurm-sdk] checkpoint: received {signal.Signals(signum).name}: the next "
        "checkpoint.save() ends this run\n".encode(),
    )


def _being_preempted() -> bool:
    """Whether slurmctld has started preempting this job. Only asked on SIGUSR2, which is then either the
    time-limit signal or, at a site with ``PreemptParameters=send_user_signal``, the preemption itself; a
    preempted job must not requeue itself (it would count as a time-limit requeue, and Slurm requeues it
    anyway). No answer (no scontrol, a silent controller) keeps the time-limit path, as without the query."""
    import re  # on use, like every import here: only a USR2 pays for these
    import shlex
    import subprocess

    command = [*shlex.split(os.environ.get(JOB_QUERY_COMMAND_ENV, DEFAULT_JOB_QUERY_COMMAND)), _own_job_id()]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=_REQUEUE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return False
    found = re.search(_PREEMPT_TIME, result.stdout)
    return found is not None and found.group(1) not in ("None", "Unknown", "N/A")


def _requeues_only_after_grace_time() -> bool:
    """Whether this cluster's Slurm is older than 24.05. No answer keeps the newer behaviour (stop at once)."""
    import re
    import shlex
    import subprocess

    command = shlex.split(os.environ.get(VERSION_COMMAND_ENV, DEFAULT_VERSION_COMMAND))
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=_REQUEUE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return False
    found = re.search(r"(\d+)\.(\d+)", result.stdout)
    return found is not None and (int(found[1]), int(found[2])) < _REQUEUES_A_JOB_ENDING_IN_GRACE_TIME


def _wait_to_be_stopped() -> None:
    """Sleep until Slurm kills this run at the end of the GraceTime (its SIGTERM is only noted)."""
    import time

    while True:
        time.sleep(60)


def _own_job_id() -> str:
    array_id, task_id = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array_id}_{task_id}" if array_id and task_id else os.environ["SLURM_JOB_ID"]


def _say(message: str) -> None:
    print(f"[slurm-sdk] checkpoint: {message}", file=sys.stderr, flush=True)
