"""Slurm without Slurm: run job scripts as local subprocesses, for tests and laptops.

There is no daemon. Every job's state lives in files under ``state_dir``, so any process using a
``LocalCommandBackend`` on the same directory sees the same jobs; this is how a workflow, itself running
as a local job, submits children that the test process then polls. Each submission starts a detached
launcher process (``slurm.backends.local_launcher``) that waits for dependencies, runs the script with ``bash`` under
Slurm-like environment variables, honours ``#SBATCH --output/--error/--time`` and records the final state.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from slurm.backends.base import DEPENDENCY_TYPES, NEVER_SATISFIED, Backend, JobState, JobStatus
from slurm.backends.local_state import LocalStateDir, elements, kill_group
from slurm.errors import BackendError, SubmitError
from slurm.inherited_env import scrub_slurm_env
from slurm.node.atomic import write_atomic
from slurm.transports.host import HostTransport

if TYPE_CHECKING:
    import subprocess

# json, subprocess and the script parsers are imported where used: building a Cluster makes this backend,
# and ``import slurm; Cluster()`` is paid by every script before its first submission.

#: The detached launcher process each submission starts (``slurm.backends.local_launcher``).
_LAUNCH = "import sys; from slurm.backends.local_launcher import launch; launch(sys.argv[1], sys.argv[2])"


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


class LocalCommandBackend(LocalStateDir, Backend):
    """Runs rendered job scripts as local subprocesses with Slurm-like environment variables.

    ``state_dir`` holds job records and states (share it to share jobs between processes);
    ``max_array_size`` mimics Slurm's MaxArraySize; ``parallelism`` is how many array tasks run at once.
    """

    type_name = "local"

    def __init__(
        self, state_dir: str | None = None, *, max_array_size: int = 1001, parallelism: int = 2
    ) -> None:
        super().__init__(state_dir)
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
            for element in elements(record):
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
        targets = [job_id] if index else elements(record)
        with self._locked():
            cancelled = [element for element in targets if not self._read_state(element).is_terminal]
            for element in cancelled:
                self._write_state(element, JobState.CANCELLED)
        for element in cancelled:
            kill_group(self._read_pid(element))

    def preempt(self, job_id: str) -> None:
        """What a preemption with PreemptMode=REQUEUE does: SIGTERM to the running job, then it runs again
        (without a time-limit requeue count; ``job_id`` is one job or one array task "12_3")."""
        self.request_requeue(job_id)
        kill_group(self._read_pid(job_id))

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
                    # -S: no site-packages scan (.pth files) at start-up: the launcher needs only the
                    # standard library and this SDK, which PYTHONPATH names.
                    [sys.executable, "-S", "-c", _LAUNCH, self.state_dir, job_id],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
