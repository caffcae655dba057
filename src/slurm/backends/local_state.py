"""The local backend's state directory: one record per job, one state file per job or array task, the
pids of running scripts and the requeue marks, under one lock shared by every process using the directory
(the submitting process, each job's launcher, a workflow's children)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Iterator

from slurm.backends.job_states import JobState, array_state
from slurm.node.atomic import write_atomic

TYPE_CHECKING = False  # not from typing: the local backend's launcher imports this for every local job
if TYPE_CHECKING:
    from typing import Any


class LocalStateDir:
    """The jobs under ``state_dir`` (see ``LocalCommandBackend``, and ``LocalLauncher`` that runs them)."""

    def __init__(self, state_dir: str | None = None) -> None:
        self.state_dir = os.path.abspath(os.path.expanduser(state_dir or "~/.slurm-sdk/local"))

    def request_requeue(self, element: str) -> None:
        """Run this job again once its current run ends (the local ``scontrol requeue``)."""
        os.makedirs(self._path("requeue"), exist_ok=True)
        write_atomic(self._path("requeue", element), b"")

    def _take_requeue(self, element: str) -> bool:
        try:
            os.unlink(self._path("requeue", element))
            return True
        except FileNotFoundError:
            return False

    def job_ids(self) -> list[str]:
        """Every job submitted to this state dir, oldest first."""
        if not os.path.isdir(self._path("jobs")):
            return []
        names = os.listdir(self._path("jobs"))
        return sorted((name[:-5] for name in names if name.endswith(".json")), key=int)

    def _path(self, *parts: str) -> str:
        return os.path.join(self.state_dir, *parts)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One lock for id allocation and state transitions, shared by all processes on this state dir."""
        with open(self._path("lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _allocate_id(self) -> str:
        counter = self._path("next_id")
        job_id = int(open(counter).read()) if os.path.exists(counter) else 1
        write_atomic(counter, str(job_id + 1).encode())
        return str(job_id)

    def _record(self, job_id: str) -> dict[str, Any] | None:
        path = self._path("jobs", f"{job_id}.json")
        if not os.path.exists(path):
            return None
        import json

        with open(path) as handle:
            record: dict[str, Any] = json.load(handle)
        return record

    def _read_state(self, element: str) -> JobState:
        try:
            with open(self._path("states", element)) as handle:
                return JobState(handle.read().strip())
        except FileNotFoundError:
            return JobState.UNKNOWN

    def _write_state(self, element: str, state: JobState) -> None:
        write_atomic(self._path("states", element), state.value.encode())

    def _read_pid(self, element: str) -> int | None:
        try:
            with open(self._path("pids", element)) as handle:
                return int(handle.read())
        except FileNotFoundError:
            return None

    def _state_of(self, job_id: str) -> JobState:
        """State of a job, an array task ("12_3"), or a whole array (summarised like Slurm's dependencies)."""
        record = None if "_" in job_id else self._record(job_id)
        if record is None or record["array"] is None:
            return self._read_state(job_id)
        return array_state([self._read_state(element) for element in elements(record)])


def requeue(state_dir: str, job_id: str) -> None:
    """Entry point of the local ``scontrol requeue``: the job runs again when this run ends."""
    LocalStateDir(state_dir).request_requeue(job_id)


def elements(record: dict[str, Any]) -> list[str]:
    """State-file names of a job: its id, or one "<id>_<index>" per array task."""
    if record["array"] is None:
        return [record["id"]]
    return [f"{record['id']}_{index}" for index in record["array"]]


def kill_group(pid: int | None) -> None:
    """SIGTERM to a job's process group (the script and all it started), if it still runs."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)


#: Seconds the processes of an ended run have to go before SIGKILL (the dev cluster's KillWait), and the
#: bound after it (an orphan nobody reaps must not hold the job for ever).
KILL_WAIT = 2.0
_REAP_BOUND = 5.0


def wait_group_gone(pgid: int) -> None:
    """Return once no process of the group ``pgid`` (a job's script and all it started) is left, as Slurm
    starts a requeued job's next run only after the last process of the one before has ended. The script's
    own end is not enough: a multi-rank task's ranks write their outcome after their SIGTERM, and one still
    writing when the next run started overwrote that run's file (seen on a loaded host). SIGKILL after
    ``KILL_WAIT`` s; at most ``_REAP_BOUND`` s more."""
    deadline = time.monotonic() + KILL_WAIT
    killed = False
    pause = 0.001
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            if killed:
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            killed, deadline = True, time.monotonic() + _REAP_BOUND
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _group_alive(pgid: int) -> bool:
    """Some process of the group has not exited yet. A zombie has: an orphan's is reaped by whatever adopted
    it, which here (a sandbox's PID 1) took a second. Where there is no /proc, the group's existence says."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp
        except OSError:
            continue  # ended meanwhile
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False
