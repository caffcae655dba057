"""The job side: ``python -c 'from slurm.node.runner import run; run()' [--max-requeues N] [--rank |
--gather-ranks N] <job_dir>`` (or ``python -m slurm.node.runner ...`` by hand)
(array index from ``SLURM_ARRAY_TASK_ID``; ``--max-requeues``: a checkpointing task, see
``slurm.node.checkpoint``; ``--rank``: one rank of a multi-rank task under srun, ``--gather-ranks N``:
combine N ranks, see ``slurm.node.gather``).

Loads the task and its own arguments from ``payload.pkl`` (reading only its part of it, see
``slurm.node.payload``) and runs it through the task's own ``run_on_node`` (which gives a workflow its
Cluster: the submitting side is reached only through the task this unpickled, never imported here). A
plain payload (``slurm.node.plain``) names a function and holds marshal data: the runner calls the
function and, when it returns plain data too, never imports pickle.
and writes the outcome, value or exception with its traceback, to its result file (paths:
``slurm.node.layout``, format: ``slurm.node.outcome``). Exits 1 when the task raised, so the scheduler
records FAILED.
"""

# ruff: noqa: E402 - the start time is taken before the other imports, which are part of the run

from __future__ import annotations

import time

_STARTED_AT = time.time()  # first thing: the phase benchmarks count the imports below as the run's

import os
import sys

from slurm import node
from slurm.node import layout, plain
from slurm.node.atomic import write_atomic
from slurm.node.errors import RankTerminated, SerializationError
from slurm.node.name import node_name
from slurm.node.outcome import dump_exception, dump_result, exit_code_of
from slurm.node.payload import LOCAL_PYTHON, read_payload

# The SDK this job runs (``slurm/__init__.py`` beside this package), named in every job's first line.
_SDK_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "__init__.py")

# This package imports only the standard library and itself (an import-linter contract), so nothing
# here pulls in the submitting side; typing alone stays out by hand: every array task would pay for it
# (``python -X importtime -m slurm.node.runner`` shows the cost).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _NeverRaised(BaseException):
    """Stands in for ``checkpoint.Stopped`` when the task does not checkpoint (no import needed)."""


def main(argv: list[str] | None = None) -> int:
    job_dir, max_requeues, as_rank, gather_ranks = _parse_args(sys.argv[1:] if argv is None else argv)
    index = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
    restarts = _restart_count()
    if gather_ranks is not None:
        return _gather(job_dir, index, gather_ranks, restarts)
    rank = int(os.environ.get("SLURM_PROCID", "0")) if as_rank else None
    stopped: type[BaseException] = _NeverRaised
    victim: type[BaseException] = RankTerminated if rank is not None else _NeverRaised
    if rank is not None:  # a stop from here on is this rank's outcome (a victim's), wherever it lands
        import signal  # multi-rank tasks only: it imports enum

        signal.signal(signal.SIGTERM, _stop_rank)
    # Everything after the handler is inside the try: when a fast-failing rank has srun stop the others,
    # a slow one (a loaded host) may still be printing its header or opening its checkpoint. Outside the
    # try, its RankTerminated escaped: a traceback in the job's log and no outcome file for that rank.
    try:
        _print_header(job_dir, index, restarts, rank)
        if max_requeues is not None:
            # dataclasses and subprocess: only checkpointing tasks pay for them
            from slurm.node import checkpoint

            checkpoint.begin(job_dir, index, max_requeues)
            stopped = checkpoint.Stopped
        value, bytes_read = _run(job_dir, index)
        _outcome_decided(rank)
        facts = {"payload_bytes_read": bytes_read, "started_at": _STARTED_AT, "finished_at": time.time()}
        outcome, code = dump_result(value, restarts=restarts, facts=facts), 0
    except stopped as stop:  # this run ends, the job runs again: no result yet
        print(f"[slurm-sdk] checkpoint: {stop}", file=sys.stderr, flush=True)
        return 0
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from the task are failures too
        _outcome_decided(rank)
        import traceback  # the failure path only

        if isinstance(exc, victim):  # a rank srun stopped: one line, the failing rank has the traceback
            print(f"[slurm-sdk] rank {rank}: {exc}", file=sys.stderr, flush=True)
        else:
            traceback.print_exc()
        outcome, code = dump_exception(exc, traceback.format_exc(), restarts=restarts), _exit_status(exc)
    if rank is not None:
        from slurm.node.gather import write_rank_outcome  # multi-rank tasks only

        write_rank_outcome(job_dir, index, rank, node_name(), outcome)
    else:
        write_atomic(layout.result_path(job_dir, index), outcome)
    return code


def _parse_args(argv: list[str]) -> tuple[str, int | None, bool, int | None]:
    """(job dir, --max-requeues N, --rank, --gather-ranks N). The option names are checkpoint's
    MAX_REQUEUES_OPTION and rendering's RANK_OPTION / GATHER_OPTION, written out here so as not to import them."""
    *options, job_dir = argv
    max_requeues = gather_ranks = None
    as_rank = False
    while options:
        option = options.pop(0)
        if option == "--rank":
            as_rank = True
        elif option == "--max-requeues":
            max_requeues = int(options.pop(0))
        elif option == "--gather-ranks":
            gather_ranks = int(options.pop(0))
        else:
            raise SystemExit(f"slurm.node.runner: unknown option {option!r}")
    return job_dir, max_requeues, as_rank, gather_ranks


def _outcome_decided(rank: int | None) -> None:
    """A rank whose task returned or raised records that: a stop that comes while it writes the outcome
    (the job cancelled, or another rank failing a moment later) must not replace it with a victim's."""
    if rank is not None:
        import signal  # imported already by main: a dictionary lookup

        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _stop_rank(signum: int, _frame: object) -> None:
    import signal  # imported already by main: a dictionary lookup

    # Once: the same stop often comes twice (the job's process group and srun forwarding it), and a
    # second raise inside the first one's handling would lose this rank's outcome file.
    signal.signal(signum, signal.SIG_IGN)
    raise RankTerminated(
        f"stopped by {signal.Signals(signum).name}: another rank failed, or the job was cancelled or requeued"
    )


def _gather(job_dir: str, index: int, world_size: int, restarts: int) -> int:
    """After srun: the ranks' outcomes become the job's one result file (``slurm.node.gather``)."""
    from slurm.node.gather import gather  # multi-rank tasks only

    outcome, code = gather(job_dir, index, world_size, restarts=restarts)
    write_atomic(layout.result_path(job_dir, index), outcome)
    if code:
        import _pickle as pickle  # the C pickler alone: the `pickle` module around it imports re and enum

        fields = pickle.loads(outcome)
        who = "" if fields["rank"] is None else f"rank {fields['rank']} of {world_size}: "
        print(f"[slurm-sdk] the job failed: {who}{fields['message']}", file=sys.stderr)
    return code


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


def _print_header(job_dir: str, index: int, restarts: int, rank: int | None) -> None:
    job_id = os.environ.get("SLURM_JOB_ID", "?")
    rerun = f", run {restarts + 1} (requeued {restarts}x)" if restarts else ""
    of_world = f" rank {rank}/{os.environ.get('SLURM_NTASKS', '?')}" if rank is not None else ""
    print(
        f"[slurm-sdk] job {job_id} task {index}{of_world} on {node_name()}{rerun}, Python {sys.version.split()[0]} "
        f"({sys.executable}), slurm from {_SDK_FILE}, job dir {job_dir}",
        file=sys.stderr,
        flush=True,
    )


class _CountingFile:
    """The payload file, counting the bytes read: each task reports how much of the payload it read."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.count = raw, 0

    def read(self, size: int, /) -> bytes:
        data: bytes = self.raw.read(size)
        self.count += len(data)
        return data

    def seek(self, offset: int, /) -> int:
        return int(self.raw.seek(offset))


def _run(job_dir: str, index: int) -> tuple[Any, int]:
    """The task's return value, and how many bytes of the payload it took to get there."""
    with open(layout.payload_path(job_dir), "rb", buffering=0) as raw:  # unbuffered: exact reads
        payload = _CountingFile(raw)
        is_plain, task_data, call = read_payload(payload, index)
    try:
        if is_plain:  # a function by name, plain data (slurm.node.plain): no pickle, no Task to build
            function = plain.load_reference(task_data)
            args, kwargs = plain.loads(call)
        else:
            import _pickle as pickle  # the C pickler alone: the `pickle` module around it imports re and enum

            task = pickle.loads(task_data)
            args, kwargs = pickle.loads(call)
    except Exception as exc:
        raise SerializationError(
            f"cannot load the task on this node (Python {LOCAL_PYTHON}): {type(exc).__name__}: {exc}. "
            "Make its module importable on the nodes (packaging 'pythonpath', 'wheel' or 'sync')."
        ) from exc
    if is_plain:  # what Task.run_on_node does for a task that is not a workflow, without Job arguments
        return function(*args, **kwargs), payload.count
    # The Task (``slurm.task``, imported by unpickling it) runs itself: it replaces Job arguments with
    # their results and gives a workflow its Cluster, the parts of a job that need the submitting side.
    return task.run_on_node(job_dir, args, kwargs), payload.count


def run() -> None:
    """The job script's entry (``python -c 'from slurm.node.runner import run; run()' [options] <job_dir>``,
    see ``slurm.rendering.RUNNER_CODE``): ``main`` with this process's arguments, its status the exit status.
    The process is a job's runner from here on (``slurm.node.in_job_runner``; ``main`` alone, as tests call it
    in their own process, leaves it as it is)."""
    node.in_job_runner = True  # before the task's module is imported (``slurm.task`` reads it)
    sys.exit(main())


if __name__ == "__main__":  # python -m slurm.node.runner, by hand: the same run
    run()
