"""The job side: ``python -m slurm.runner [--max-requeues N] <job_dir>`` (array index from
``SLURM_ARRAY_TASK_ID``; ``--max-requeues``: a checkpointing task, see ``slurm.checkpoint``).

Loads the task and its arguments from the job directory's payload, runs it (a workflow also gets a Cluster for
submitting children from inside the allocation) and writes the outcome, value or exception with its
traceback, to its result file (paths: ``slurm.layout``). Exits 1 when the task raised, so the scheduler records FAILED.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import traceback
from typing import Any

import slurm
from slurm import checkpoint, layout
from slurm.atomic import write_atomic
from slurm.errors import SerializationError
from slurm.serialization import LOCAL_PYTHON, dump_exception, dump_result, exit_code_of, load_payload


def main(argv: list[str] | None = None) -> int:
    job_dir, max_requeues = _parse_args(sys.argv[1:] if argv is None else argv)
    index = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
    restarts = _restart_count()
    _print_header(job_dir, index, restarts)
    if max_requeues is not None:
        checkpoint.begin(job_dir, index, max_requeues)
    try:
        outcome, code = dump_result(_run(job_dir, index), restarts=restarts), 0
    except checkpoint.Stopped as stop:  # this run ends, the job runs again: no result yet
        print(f"[slurm-sdk] checkpoint: {stop}", file=sys.stderr, flush=True)
        return 0
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from the task are failures too
        traceback.print_exc()
        outcome, code = dump_exception(exc, traceback.format_exc(), restarts=restarts), _exit_status(exc)
    write_atomic(layout.result_path(job_dir, index), outcome)
    return code


def _parse_args(argv: list[str]) -> tuple[str, int | None]:
    if len(argv) == 3 and argv[0] == checkpoint.MAX_REQUEUES_OPTION:
        return argv[2], int(argv[1])
    [job_dir] = argv
    return job_dir, None


def _exit_status(exc: BaseException) -> int:
    """The job's exit status after a failure: the task's own sys.exit code when it is a non-zero int
    (so sacct shows it), else 1 (even for sys.exit(0): the task ended without returning a result)."""
    code = exit_code_of(exc)
    return code if isinstance(code, int) and 0 < code < 256 else 1


def _restart_count() -> int:
    """How often Slurm requeued this job before this run (SLURM_RESTART_COUNT, set from the first requeue
    on). It goes into the result, so the submitting side learns of a requeue even between its polls."""
    count = os.environ.get("SLURM_RESTART_COUNT", "0")
    return int(count) if count.isdigit() else 0


def _print_header(job_dir: str, index: int, restarts: int) -> None:
    job_id = os.environ.get("SLURM_JOB_ID", "?")
    rerun = f", run {restarts + 1} (requeued {restarts}x)" if restarts else ""
    print(
        f"[slurm-sdk] job {job_id} task {index} on {socket.gethostname()}{rerun}, Python {sys.version.split()[0]} "
        f"({sys.executable}), slurm from {slurm.__file__}, job dir {job_dir}",
        file=sys.stderr,
        flush=True,
    )


def _run(job_dir: str, index: int) -> Any:
    with open(layout.payload_path(job_dir), "rb") as handle:
        data = handle.read()
    try:
        task, calls = load_payload(data)
    except Exception as exc:
        raise SerializationError(
            f"cannot load the task on this node (Python {LOCAL_PYTHON}): {type(exc).__name__}: {exc}. "
            "Make its module importable on the nodes (packaging 'pythonpath', 'wheel' or 'sync')."
        ) from exc
    args, kwargs = calls[index]
    if not task.is_workflow:
        return task.fn(*args, **kwargs)
    with _workflow_cluster(job_dir) as cluster:
        return task.fn(cluster, *args, **kwargs)


def _workflow_cluster(job_dir: str) -> Any:
    # Imported here, not at the top: plain tasks (most jobs) start faster without the submitting side.
    from slurm.cluster import Cluster
    from slurm.inherited_env import scrub_slurm_env

    # Children must be new jobs, not steps bound to this allocation: drop this job's SLURM_* variables.
    environ = scrub_slurm_env(os.environ)
    os.environ.clear()
    os.environ.update(environ)
    with open(layout.child_config_path(job_dir)) as handle:
        return Cluster.from_child_config(json.load(handle))


if __name__ == "__main__":
    sys.exit(main())
