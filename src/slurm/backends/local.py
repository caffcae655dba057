"""Slurm without Slurm: run job scripts as local subprocesses, for tests and laptops.

There is no daemon. Every job's state lives in files under ``state_dir``, so any process using a
``LocalCommandBackend`` on the same directory sees the same jobs; this is how a workflow, itself running
as a local job, submits children that the test process then polls. Each submission starts a detached
launcher process (``launch`` below) that waits for dependencies, runs the script with ``bash`` under
Slurm-like environment variables, honours ``#SBATCH --output/--error/--time`` and records the final state.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import signal
import sys
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from slurm.backends.base import DEPENDENCY_TYPES, NEVER_SATISFIED, Backend, JobState, JobStatus, array_state
from slurm.durations import parse_time_seconds
from slurm.errors import BackendError, SubmitError
from slurm.inherited_env import scrub_slurm_env
from slurm.node.atomic import write_atomic
from slurm.node.checkpoint import REQUEUE_COMMAND_ENV
from slurm.transports.host import HostTransport

if TYPE_CHECKING:
    import subprocess

# json, subprocess and the script parsers are imported where used: building a Cluster makes this backend,
# and ``import slurm; Cluster()`` is paid by every script before its first submission.

_POLL = 0.05  # launcher's dependency polling; local jobs should feel instant
_LAUNCH = "import sys; from slurm.backends.local import launch; launch(sys.argv[1], sys.argv[2])"
# What `scontrol requeue <id>` is for a local job (the runner of a checkpointing task calls it).
_REQUEUE = "import sys; from slurm.backends.local import requeue; requeue(sys.argv[1], sys.argv[2])"


def parse_array_spec(spec: str) -> tuple[list[int], int | None]:
    """``"0-9%2"`` -> ([0..9], 2); ``"1,3,5-7"`` -> ([1, 3, 5, 6, 7], None)."""
    ranges, _, throttle = spec.partition("%")
    indexes: list[int] = []
    try:
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            indexes += range(int(first), int(last or first) + 1)
        limit = int(throttle) if throttle else None
    except ValueError:
        raise SubmitError(
            f"malformed array spec {spec!r} (expected e.g. '0-9', '1,3,5-7' or '0-9%2')"
        ) from None
    if not indexes or min(indexes) < 0 or (limit is not None and limit < 1):
        raise SubmitError(f"malformed array spec {spec!r}: indexes must be >= 0 and the % limit >= 1")
    return sorted(set(indexes)), limit


def parse_sbatch_header(script: str) -> dict[str, str]:
    """The ``#SBATCH`` options of a script (flags map to ""); sbatch stops reading at the first command."""
    options: dict[str, str] = {}
    from slurm.directives import read_directives

    for arguments in read_directives(script):
        for argument in arguments:
            name, _, value = argument.lstrip("-").partition("=")
            options[name] = value
    return options


class LocalCommandBackend(Backend):
    """Runs rendered job scripts as local subprocesses with Slurm-like environment variables.

    ``state_dir`` holds job records and states (share it to share jobs between processes);
    ``max_array_size`` mimics Slurm's MaxArraySize; ``parallelism`` is how many array tasks run at once.
    """

    type_name = "local"

    def __init__(
        self, state_dir: str | None = None, *, max_array_size: int = 1001, parallelism: int = 2
    ) -> None:
        self.state_dir = os.path.abspath(os.path.expanduser(state_dir or "~/.slurm-sdk/local"))
        self.transport = HostTransport()
        self._max_array_size, self.parallelism = max_array_size, parallelism
        self._launchers: list[subprocess.Popen[bytes]] = []

    def to_config(self) -> dict[str, Any]:
        """Options a workflow's child cluster rebuilds this backend from."""
        return {
            "state_dir": self.state_dir,
            "max_array_size": self._max_array_size,
            "parallelism": self.parallelism,
        }

    def max_array_size(self) -> int:
        return self._max_array_size

    # --- Backend interface -------------------------------------------------------------------------

    def submit(
        self,
        script_path: str,
        *,
        array: str | None = None,
        dependencies: Sequence[str] = (),
        dependency_type: str = "afterok",
    ) -> str:
        indexes, throttle = self._check_submission(array, dependencies, dependency_type)
        with open(script_path) as handle:
            header = parse_sbatch_header(handle.read())
        for sub in ("jobs", "states", "pids", "launchers"):
            os.makedirs(self._path(sub), exist_ok=True)
        with self._locked():
            job_id = self._allocate_id()
            record = {
                "id": job_id,
                "script": os.path.abspath(script_path),
                "array": indexes,
                "throttle": throttle,
                "dependencies": list(dependencies),
                "dependency_type": dependency_type,
                "submit_dir": os.getcwd(),
                "parallelism": self.parallelism,
                "sbatch": header,
            }
            import json

            write_atomic(self._path("jobs", f"{job_id}.json"), json.dumps(record).encode())
            for element in _elements(record):
                self._write_state(element, JobState.PENDING)
        self._start_launcher(job_id)
        return job_id

    def find_submitted(self, script_path: str) -> str | None:
        """The job submitted from ``script_path``, from the jobs this state directory knows (a local
        submission's answer is never lost; ``cleanup()`` asks before removing a directory without record)."""
        wanted = os.path.abspath(script_path)
        for entry in os.scandir(self._path("jobs")) if os.path.isdir(self._path("jobs")) else ():
            if entry.name.endswith(".json"):
                record = self._record(entry.name[: -len(".json")])
                if record is not None and record.get("script") == wanted:
                    return str(record["id"])
        return None

    def _check_submission(
        self, array: str | None, dependencies: Sequence[str], dependency_type: str
    ) -> tuple[list[int] | None, int | None]:
        """Reject what sbatch would reject; returns the array indexes and the % throttle."""
        if dependency_type not in DEPENDENCY_TYPES:
            raise SubmitError(
                f"unsupported dependency type {dependency_type!r} (valid: {', '.join(DEPENDENCY_TYPES)})"
            )
        for dependency in dependencies:
            if self._record(dependency.partition("_")[0]) is None:
                raise SubmitError(f"cannot depend on unknown job {dependency} (not in {self.state_dir})")
        if array is None:
            return None, None
        indexes, throttle = parse_array_spec(array)
        if max(indexes) >= self._max_array_size:
            raise SubmitError(f"array index {max(indexes)} exceeds MaxArraySize={self._max_array_size}")
        return indexes, throttle

    def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        self._launchers = [proc for proc in self._launchers if proc.poll() is None]  # reap finished launchers
        return {job_id: self._state_of(job_id) for job_id in job_ids}

    def statuses(
        self, job_ids: Sequence[str], *, reasons_for: Collection[str] = (), background: bool = False
    ) -> dict[str, JobStatus]:
        """Like Slurm with ``kill_invalid_depend``: a job whose dependency can never be met ends CANCELLED
        with the reason ``DependencyNeverSatisfied``."""
        return {
            job_id: JobStatus(state, NEVER_SATISFIED if self._never_satisfied(job_id, state) else "")
            for job_id, state in self.states(job_ids).items()
        }

    def _never_satisfied(self, job_id: str, state: JobState) -> bool:
        return state is JobState.CANCELLED and os.path.exists(self._path("never_satisfied", job_id))

    def cancel(self, job_id: str) -> None:
        base, _, index = job_id.partition("_")
        record = self._record(base)
        if record is None:
            raise BackendError(f"cannot cancel unknown job {job_id} (not in {self.state_dir})")
        targets = [job_id] if index else _elements(record)
        with self._locked():
            cancelled = [element for element in targets if not self._read_state(element).is_terminal]
            for element in cancelled:
                self._write_state(element, JobState.CANCELLED)
        for element in cancelled:
            _kill_group(self._read_pid(element))

    def preempt(self, job_id: str) -> None:
        """What a preemption with PreemptMode=REQUEUE does: SIGTERM to the running job, then it runs again
        (without a time-limit requeue count; ``job_id`` is one job or one array task "12_3")."""
        self.request_requeue(job_id)
        _kill_group(self._read_pid(job_id))

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

    # --- state files -------------------------------------------------------------------------------

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
        return array_state([self._read_state(element) for element in _elements(record)])

    # --- launching ---------------------------------------------------------------------------------

    def _start_launcher(self, job_id: str) -> None:
        import subprocess

        # The launcher must import this same SDK, whatever PYTHONPATH says: the directory holding `slurm/`.
        sdk_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = scrub_slurm_env(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [sdk_root, env.get("PYTHONPATH")]))
        with open(self._path("launchers", f"{job_id}.log"), "ab") as log:
            self._launchers.append(
                subprocess.Popen(
                    [sys.executable, "-c", _LAUNCH, self.state_dir, job_id],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )

    def run_job(self, job_id: str) -> None:
        """The launcher's work: wait for dependencies, then run the script (array tasks in parallel)."""
        # Imported here, in the launcher process: building a Cluster (this backend) should not pay for them.
        import traceback
        from concurrent.futures import ThreadPoolExecutor

        record = self._record(job_id)
        if record is None:
            raise BackendError(f"no record for job {job_id} in {self.state_dir}")
        try:
            if not self._wait_for_dependencies(record):
                return
            workers = min(record["throttle"] or record["parallelism"], record["parallelism"])
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                list(pool.map(lambda element: self._run_element(record, element), _elements(record)))
        except BaseException:
            traceback.print_exc()  # into launchers/<id>.log
            with self._locked():
                for element in _elements(record):
                    if not self._read_state(element).is_terminal:
                        self._write_state(element, JobState.FAILED)
            raise

    def _wait_for_dependencies(self, record: dict[str, Any]) -> bool:
        """Block until the dependencies allow the job to start; False if they never will (job cancelled)."""
        while True:
            if all(self._read_state(element).is_terminal for element in _elements(record)):
                return False  # cancelled while waiting
            states = {dep: self._state_of(dep) for dep in record["dependencies"]}
            # A dependency without a state file (removed, or an array task that does not exist) would
            # never end: like Slurm's invalid dependency, it can never be satisfied.
            missing = [dep for dep, state in states.items() if state is JobState.UNKNOWN]
            verdict = (
                False if missing else _dependency_verdict(record["dependency_type"], list(states.values()))
            )
            if verdict is None:
                time.sleep(_POLL)
                continue
            if not verdict:
                reason = ", ".join(
                    f"{dep} has no state in {self._path('states')}"
                    if dep in missing
                    else f"{dep} {state.value}"
                    for dep, state in states.items()
                )
                os.makedirs(self._path("never_satisfied"), exist_ok=True)
                for element in _elements(record):  # before the state, so no poll sees CANCELLED without why
                    write_atomic(self._path("never_satisfied", element), reason.encode())
                self._cancel_unstarted(
                    record, f"DependencyNeverSatisfied ({record['dependency_type']}: {reason})"
                )
            return verdict

    def _cancel_unstarted(self, record: dict[str, Any], reason: str) -> None:
        with self._locked():
            for element in _elements(record):
                if not self._read_state(element).is_terminal:
                    self._write_state(element, JobState.CANCELLED)
                    _, error = self._log_paths(record, element)
                    write_atomic(error, f"slurm-sdk local backend: job cancelled: {reason}\n".encode())

    def _log_paths(self, record: dict[str, Any], element: str) -> tuple[str, str]:
        base, _, index = element.partition("_")
        sbatch = record["sbatch"]
        output = sbatch.get("output") or ("slurm-%A_%a.out" if index else "slurm-%j.out")
        error = sbatch.get("error") or output

        from slurm.rendering import expand_log_pattern

        def expand(pattern: str) -> str:
            return os.path.join(
                record["submit_dir"],
                expand_log_pattern(
                    pattern,
                    job_id=base,
                    array_job_id=base,
                    array_task_id=index,
                    job_name=sbatch.get("job-name", ""),
                ),
            )

        return expand(output), expand(error)

    def _job_env(self, record: dict[str, Any], element: str) -> dict[str, str]:
        base, _, index = element.partition("_")
        import socket  # in the launcher only (see run_job)

        host = socket.gethostname()
        sbatch = record["sbatch"]
        nodes, per_node = int(sbatch.get("nodes", "1")), int(sbatch.get("ntasks-per-node", "1"))
        # Emulated nodes all live on this host; the first one is where the batch step runs, as in Slurm.
        names = ",".join([host] if nodes == 1 else [f"{host}-{i}" for i in range(nodes)])
        env = scrub_slurm_env(os.environ)
        env.update(
            SLURM_JOB_ID=base,
            SLURM_JOBID=base,
            SLURM_JOB_NAME=sbatch.get("job-name", ""),
            SLURM_SUBMIT_DIR=record["submit_dir"],
            SLURM_CPUS_PER_TASK=sbatch.get("cpus-per-task", "1"),
            SLURM_NTASKS=str(nodes * per_node),
            SLURM_NTASKS_PER_NODE=str(per_node),
            SLURM_JOB_NUM_NODES=str(nodes),
            SLURM_NODELIST=names,
            SLURM_JOB_NODELIST=names,
            SLURMD_NODENAME=names.split(",")[0],
            SLURM_CLUSTER_NAME="local",
            PATH=os.pathsep.join([self._srun_dir(), env.get("PATH", os.defpath)]),
            **{REQUEUE_COMMAND_ENV: shlex.join([sys.executable, "-c", _REQUEUE, self.state_dir])},
        )
        if index:
            indexes = record["array"]
            env.update(
                SLURM_ARRAY_JOB_ID=base,
                SLURM_ARRAY_TASK_ID=index,
                SLURM_ARRAY_TASK_COUNT=str(len(indexes)),
                SLURM_ARRAY_TASK_MIN=str(min(indexes)),
                SLURM_ARRAY_TASK_MAX=str(max(indexes)),
            )
        return env

    def _srun_dir(self) -> str:
        """A directory with this backend's ``srun`` (``slurm.backends.local_srun``), for the job's PATH."""
        directory = self._path("bin")
        script = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m slurm.backends.local_srun "$@"\n'
        path = os.path.join(directory, "srun")
        if not os.path.exists(path) or _read_text(path) != script:
            write_atomic(path, script.encode(), 0o755)
        return directory

    def _run_element(self, record: dict[str, Any], element: str) -> None:
        """Run one job or array task; again after a requeue (restart count in SLURM_RESTART_COUNT)."""
        restarts = 0
        while True:
            final = self._run_once(record, element, restarts)
            if final is None or not self._take_requeue(element):
                break
            restarts += 1
            self._write_state(element, JobState.REQUEUED)
        if final is not None:
            with self._locked():
                if not self._read_state(element).is_terminal:  # a cancel wins over the exit code it caused
                    self._write_state(element, final)

    def _run_once(self, record: dict[str, Any], element: str, restarts: int) -> JobState | None:
        """One run of the script; its end state, or None if it was cancelled before it started."""
        import subprocess

        output, error = self._log_paths(record, element)
        env = self._job_env(record, element)
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
        try:
            return JobState.COMPLETED if _wait_with_limit(proc, record["sbatch"]) == 0 else JobState.FAILED
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            return JobState.TIMEOUT


def _read_text(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _wait_with_limit(proc: subprocess.Popen[bytes], sbatch: Mapping[str, str]) -> int:
    """Wait for the script under its --time limit, sending --signal=[B:]SIG@N N seconds before it, as Slurm
    does (to the batch shell, which is the runner here: the script execs it). TimeoutExpired at the limit."""
    import subprocess

    limit = parse_time_seconds(sbatch["time"]) if sbatch.get("time") else None
    name, _, before = sbatch.get("signal", "").removeprefix("B:").partition("@")
    if limit is None or not name:
        return proc.wait(limit)
    early = max(0, limit - int(before or 60))
    try:
        return proc.wait(early)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.Signals[f"SIG{name}"])
    return proc.wait(limit - early)


def launch(state_dir: str, job_id: str) -> None:
    """Entry point of the detached launcher process started by ``submit``."""
    LocalCommandBackend(state_dir).run_job(job_id)


def requeue(state_dir: str, job_id: str) -> None:
    """Entry point of the local ``scontrol requeue``: the job runs again when this run ends."""
    LocalCommandBackend(state_dir).request_requeue(job_id)


def _elements(record: dict[str, Any]) -> list[str]:
    """State-file names of a job: its id, or one "<id>_<index>" per array task."""
    if record["array"] is None:
        return [record["id"]]
    return [f"{record['id']}_{index}" for index in record["array"]]


def _dependency_verdict(kind: str, states: list[JobState]) -> bool | None:
    """True: may start; False: never will; None: not yet."""
    if kind == "afterok" and any(s.is_terminal and s is not JobState.COMPLETED for s in states):
        return False
    if kind == "afternotok" and JobState.COMPLETED in states:
        return False
    return True if all(state.is_terminal for state in states) else None


def _kill_group(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
