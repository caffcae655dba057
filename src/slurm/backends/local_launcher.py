"""The local backend's launcher: a detached process per submission (``launch``, started by
``LocalCommandBackend.submit``) that waits for the job's dependencies, runs its script (array tasks in
parallel, each under its ``--time`` limit) and records the final state."""

from __future__ import annotations

import contextlib
import os
import signal

from slurm.backends.job_states import JobState
from slurm.backends.local_dependencies import wait_for_dependencies
from slurm.backends.local_job_env import job_env, log_paths
from slurm.backends.local_state import LocalStateDir, elements, kill_group, wait_group_gone
from slurm.node.atomic import write_atomic

TYPE_CHECKING = False  # not from typing: the local backend's launcher imports this for every local job
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping
    from typing import Any


class LocalLauncher(LocalStateDir):
    """Runs one submission of the state directory, in the launcher process."""

    def __init__(self, state_dir: str | None = None) -> None:
        super().__init__(state_dir)
        self._pgids: dict[str, int] = {}  # each job or array task's process group: its script's pid

    def run_job(self, job_id: str) -> None:
        """The launcher's work: wait for dependencies, then run the script (array tasks in parallel)."""
        record = self._record(job_id)
        if record is None:
            from slurm.errors import BackendError

            raise BackendError(f"no record for job {job_id} in {self.state_dir}")
        try:
            if not wait_for_dependencies(self, record):
                return
            workers = min(record["throttle"] or record["parallelism"], record["parallelism"])
            _run_all(lambda element: self._run_element(record, element), elements(record), max(1, workers))
        except BaseException:
            import traceback  # the failure path only

            traceback.print_exc()  # into launchers/<id>.log
            with self._locked():
                for element in elements(record):
                    if not self._read_state(element).is_terminal:
                        self._write_state(element, JobState.FAILED)
            raise

    def _run_element(self, record: dict[str, Any], element: str) -> None:
        """Run one job or array task; again after a requeue (restart count in SLURM_RESTART_COUNT)."""
        restarts = 0
        while True:
            final = self._run_once(record, element, restarts)
            if final is None or not self._take_requeue(element):
                break
            wait_group_gone(self._pgids[element])
            restarts += 1
            self._write_state(element, JobState.REQUEUED)
        if final is not None:
            with self._locked():
                if not self._read_state(element).is_terminal:  # a cancel wins over the exit code it caused
                    self._write_state(element, final)

    def _run_once(self, record: dict[str, Any], element: str, restarts: int) -> JobState | None:
        """One run of the script; its end state, or None if it was cancelled before it started."""
        import subprocess

        output, error = log_paths(record, element)
        env = job_env(self, record, element)
        if restarts:
            env["SLURM_RESTART_COUNT"] = str(restarts)
        with self._locked():
            if self._read_state(element).is_terminal:
                return None  # cancelled before it started
            for path in {output, error}:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            # RUNNING before the script can print anything, as Slurm marks a job running before its script
            # starts: readers take the state without the lock, and the script's first lines could
            # otherwise be read while the state still says PENDING (seen on a loaded host).
            self._write_state(element, JobState.RUNNING)
            with open(output, "ab") as out, open(error, "ab") as err:
                proc = subprocess.Popen(
                    ["bash", record["script"]],
                    cwd=record["submit_dir"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err if error != output else subprocess.STDOUT,
                    start_new_session=True,
                )
            write_atomic(self._path("pids", element), str(proc.pid).encode())
            self._pgids[element] = proc.pid  # its own session: the group of everything the script starts
        try:
            return JobState.COMPLETED if _wait_with_limit(proc, record["sbatch"]) == 0 else JobState.FAILED
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            proc.wait()
            return JobState.TIMEOUT


def _run_all(run: Callable[[str], None], items: list[str], workers: int) -> None:
    """``run`` on every item, ``workers`` at a time, in threads; the first error is raised once all have ended.
    (Not concurrent.futures: it imports logging, and this runs in every local job's launcher; a job that is
    no array runs in this thread.)"""
    if len(items) == 1:
        run(items[0])
        return
    import threading

    pending, lock, errors = iter(items), threading.Lock(), []

    def work() -> None:
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            try:
                run(item)
            except BaseException as error:  # as pool.map would: the others still run, then this is raised
                errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(min(workers, len(items)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _wait_with_limit(proc: subprocess.Popen[bytes], sbatch: Mapping[str, str]) -> int:
    """Wait for the script under its --time limit, sending --signal=[B:]SIG@N N seconds before it, as Slurm
    does (to the batch shell, which is the runner here: the script execs it). TimeoutExpired at the limit."""
    import subprocess

    from slurm.durations import parse_time_seconds

    limit = parse_time_seconds(sbatch["time"]) if sbatch.get("time") else None
    name, _, before = sbatch.get("signal", "").removeprefix("B:").partition("@")
    if limit is None or not name:
        return _wait_at_most(proc, limit)
    early = max(0, limit - int(before or 60))
    try:
        return _wait_at_most(proc, early)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.Signals[f"SIG{name}"])
    return _wait_at_most(proc, limit - early)


def _wait_at_most(proc: subprocess.Popen[bytes], seconds: float | None) -> int:
    """``proc.wait(seconds)``, returning the moment the script ends. Popen.wait with a timeout polls, with
    sleeps growing to 50 ms: a job under a --time limit ended up to 50 ms before its launcher knew (its state,
    its dependants and the next task of its array waited that long). A thread blocked in ``wait()`` ends with
    the script, and joining it ends then or at the timeout; once timed out it is left to reap the script."""
    if seconds is None:
        return proc.wait()
    import subprocess
    import threading  # imported by subprocess already

    waiter = threading.Thread(target=proc.wait, daemon=True)
    waiter.start()
    waiter.join(seconds)
    if proc.returncode is None:
        raise subprocess.TimeoutExpired(proc.args, seconds)
    return proc.returncode


def launch(state_dir: str, job_id: str) -> None:
    """Entry point of the detached launcher process started by ``submit``."""
    LocalLauncher(state_dir).run_job(job_id)
