"""The local backend's state directory: one record per job, one state file per job or array task, the
pids of running scripts and the requeue marks, under one lock shared by every process using the directory
(the submitting process, each job's launcher, a workflow's children)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
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
