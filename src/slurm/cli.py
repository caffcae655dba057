"""``slurm-sdk``: the jobs submitted through the SDK, from a shell. Built on ``Cluster.from_env``.

    slurm-sdk jobs list                      slurm-sdk jobs result ID [--wait] [--timeout S]
    slurm-sdk jobs show ID                   slurm-sdk jobs cancel ID
    slurm-sdk jobs logs ID [-f] [--stderr] [-n N]
    slurm-sdk jobs cleanup --older-than 7d [--dry-run]
    slurm-sdk cluster status

Every verb takes ``--config FILE`` (default ``$SLURM_SDK_CONFIG``) and ``--json`` (one JSON document on
stdout, for scripts). Exit codes are in ``EXIT_CODES``; errors go to stderr and name cause and fix.
"""

from __future__ import annotations

import argparse
import json
import pprint
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from slurm.backends.base import JobState
from slurm.errors import BackendError, ConfigError, JobTimeoutError, SlurmSDKError, UnknownJobError
from slurm.waiting import has_ended

OK, JOB_FAILED, USAGE, CONFIG, UNKNOWN_JOB, UNREACHABLE, NOT_FINISHED, INTERRUPTED = 0, 1, 2, 3, 4, 5, 6, 130
EXIT_CODES = {
    OK: "success",
    JOB_FAILED: "the job failed: its task raised, or it ended without a result (jobs result)",
    USAGE: "wrong command line (unknown verb or option, an array id where one task is needed)",
    CONFIG: "configuration missing or invalid (--config / $SLURM_SDK_CONFIG)",
    UNKNOWN_JOB: "no SDK job with that id under the job root (malformed, never submitted here, cleaned up)",
    UNREACHABLE: "the cluster could not be reached or its scheduler failed (SSH, sinfo, squeue, ...)",
    NOT_FINISHED: "the job has not finished (jobs result without --wait, or --timeout elapsed)",
    INTERRUPTED: "interrupted (Ctrl-C); a followed job keeps running",
}


#: How long ``jobs result`` (without --wait) lets a job that looks ended settle: the scheduler must not
#: list it in two queries a few seconds apart before it is declared lost.
_SETTLE = 60.0


class UsageError(SlurmSDKError):
    """A command line that parses but asks for something that cannot be done."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except KeyboardInterrupt:
        return INTERRUPTED
    except SlurmSDKError as error:
        code = _exit_code(error)
        print(f"slurm-sdk: error: {error}", file=sys.stderr)
        if code == CONFIG:
            print(
                "slurm-sdk: pass --config FILE or set SLURM_SDK_CONFIG=FILE (see README, Configuration)",
                file=sys.stderr,
            )
        return code


def _exit_code(error: SlurmSDKError) -> int:
    for kind, code in (
        (ConfigError, CONFIG),
        (UnknownJobError, UNKNOWN_JOB),
        (UsageError, USAGE),
        (JobTimeoutError, NOT_FINISHED),
        (BackendError, UNREACHABLE),
    ):
        if isinstance(error, kind):
            return code
    return JOB_FAILED


# --- the command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    # Common options on every level, SUPPRESS'd below the top so `slurm-sdk --json jobs list` and
    # `slurm-sdk jobs list --json` both work.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--config", metavar="FILE", help="config file (default: $SLURM_SDK_CONFIG)")
    common.add_argument("--json", action="store_true", help="print one JSON document (for scripts)")
    epilog = "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="slurm-sdk",
        description="Jobs submitted through slurm-sdk.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="FILE", default=None, help="config file (default: $SLURM_SDK_CONFIG)"
    )
    parser.add_argument("--json", action="store_true", default=False, help="print one JSON document")
    nouns = parser.add_subparsers(dest="noun", required=True, metavar="{jobs,cluster}")
    jobs = nouns.add_parser("jobs", help="list, inspect, follow, cancel and clean up jobs").add_subparsers(
        dest="verb", required=True, metavar="{list,show,logs,cancel,result,cleanup}"
    )

    def verb(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Callable[[argparse.Namespace], int],
        text: str,
        job_id: bool = True,
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, parents=[common], help=text, description=text)
        if job_id:
            sub.add_argument(
                "job_id", metavar="ID", help="job id as sbatch printed it; 123_4 for an array task"
            )
        sub.set_defaults(handler=handler)
        return sub

    verb(jobs, "list", _jobs_list, "this user's SDK jobs: id, name, state, submit time", job_id=False)
    verb(jobs, "show", _jobs_show, "one job: its directory, and state and log paths per task")
    logs = verb(jobs, "logs", _jobs_logs, "print a job's log; -f follows it until the job ends")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until the job ends"
    )
    logs.add_argument("--stderr", action="store_true", help="the stderr log instead of stdout")
    logs.add_argument(
        "-n", "--lines", type=_count, metavar="N", help="only the last N lines (then follow, with -f)"
    )
    verb(jobs, "cancel", _jobs_cancel, "cancel a job (an array id cancels every task)")
    result = verb(jobs, "result", _jobs_result, "print a job's return value; exit 1 if its task raised")
    result.add_argument("--wait", action="store_true", help="wait for the job to finish")
    result.add_argument(
        "--all-ranks", action="store_true", help="every rank's value of a multi-rank task (default: rank 0's)"
    )
    result.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help="with --wait: give up after S seconds, or 10m, 2h (exit 6)",
    )
    cleanup = verb(
        jobs, "cleanup", _jobs_cleanup, "remove directories of ended jobs older than an age", job_id=False
    )
    cleanup.add_argument(
        "--older-than", required=True, metavar="AGE", help="e.g. 7d, 12h, 30m, 90s, or seconds"
    )
    cleanup.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    cluster = nouns.add_parser("cluster", help="the cluster itself").add_subparsers(
        dest="verb", required=True, metavar="{status}"
    )
    verb(cluster, "status", _cluster_status, "reachable? partitions, nodes and your queue", job_id=False)
    return parser


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a line count: give 0 or more, e.g. -n 20")
    return int(text)


def _seconds(text: str) -> float:
    from slurm.durations import parse_duration

    try:
        return parse_duration(text, what="--timeout").total_seconds()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds: give 0 or more, e.g. --timeout 600 (or 10m, 2h)"
        ) from None


# --- verbs -----------------------------------------------------------------------------------------


def _jobs_list(args: argparse.Namespace) -> int:
    with _cluster(args) as cluster:
        infos = cluster.list_jobs()
    if args.json:
        return _print_json([info.to_dict() for info in infos])
    rows = [
        (info.job_id, info.name, info.state.value, f"{info.results}/{info.tasks}", _when(info.submitted_at))
        for info in infos
    ]
    _print_table(("JOB ID", "NAME", "STATE", "RESULTS", "SUBMITTED"), rows)
    if not rows:
        print("no SDK jobs under this job root yet")
    return OK


def _jobs_show(args: argparse.Namespace) -> int:
    with _cluster(args) as cluster:
        _, tasks, states = _current(cluster, args.job_id)
        details = {
            "job_id": args.job_id,
            "name": tasks[0].name,
            "job_dir": tasks[0].job_dir,
            "tasks": [
                {
                    "job_id": job.job_id,
                    "state": states[job.job_id].value,
                    "stdout": job.log_path("stdout"),
                    "stderr": job.log_path("stderr"),
                }
                for job in tasks
            ],
        }
    if args.json:
        return _print_json(details)
    print(f"job:      {details['job_id']} ({details['name']})\ndir:      {details['job_dir']}")
    _print_table(
        ("TASK", "STATE", "STDOUT"), [(t["job_id"], t["state"], t["stdout"]) for t in details["tasks"]]
    )
    return OK


def _jobs_logs(args: argparse.Namespace) -> int:
    stream = "stderr" if args.stderr else "stdout"
    with _cluster(args) as cluster:
        job = _one_task(cluster.job(args.job_id), args.job_id)
        lines = (
            job.tail(args.lines, stream=stream, follow=args.follow)
            if args.lines is not None
            else (
                getattr(job, f"follow_{stream}")()
                if args.follow
                else iter(getattr(job, stream)().splitlines())
            )
        )
        if args.json:
            return _print_json({"job_id": job.job_id, "stream": stream, "lines": list(lines)})
        for line in lines:
            print(line, flush=True)
    return OK


def _jobs_cancel(args: argparse.Namespace) -> int:
    with _cluster(args) as cluster:
        handle, tasks, states = _current(cluster, args.job_id)
        live = [job.job_id for job in tasks if not has_ended(states[job.job_id])]
        if live:
            handle.cancel()
    if args.json:
        return _print_json({"job_id": args.job_id, "cancelled": live})
    print(f"cancelled {args.job_id}" if live else f"{args.job_id} had already ended; nothing to cancel")
    return OK


def _jobs_result(args: argparse.Namespace) -> int:
    with _cluster(args) as cluster:
        handle, tasks, states = _current(cluster, args.job_id, wait=args.wait, timeout=args.timeout)
        running = [job for job in tasks if not has_ended(states[job.job_id])]
        if running:
            print(
                f"slurm-sdk: {running[0].job_id} has not finished ({states[running[0].job_id].value}); add --wait "
                "(and --timeout S) to wait for it",
                file=sys.stderr,
            )
            return NOT_FINISHED
        try:
            # Bounded even without --wait: a job the scheduler forgot takes a second query to be called lost.
            limit = args.timeout if args.wait else _SETTLE
            values = _values(handle, limit, all_ranks=args.all_ranks)
        except JobTimeoutError:
            raise  # not finished: exit code 6, not a failure of the job
        except Exception as error:  # the task's own exception, re-raised here, or JobFailedError
            return _report_failure(args, error)
    if args.json:
        return _print_json({"job_id": args.job_id, "ok": True, "value": values})
    print(values if isinstance(values, str) else pprint.pformat(values))
    return OK


def _values(handle: Any, limit: float | None, *, all_ranks: bool) -> Any:
    """The result (rank 0's for a multi-rank task), or with ``all_ranks`` every rank's, of a job or of
    each task of an array."""
    if not _is_array(handle):
        return handle.results_by_rank(limit) if all_ranks else handle.result(limit)
    values = handle.results(limit)
    return [job.results_by_rank() for job in handle] if all_ranks else values


def _report_failure(args: argparse.Namespace, error: Exception) -> int:
    remote = str(error.__cause__) if error.__cause__ is not None else ""
    # Where it was raised (job, and for a multi-rank task the rank and its node) is in the notes.
    error_text = " ".join([str(error), *getattr(error, "__notes__", ())])
    if args.json:
        _print_json(
            {
                "job_id": args.job_id,
                "ok": False,
                "error": f"{type(error).__name__}: {error}",
                "notes": list(getattr(error, "__notes__", ())),
                "traceback": remote,
            }
        )
    else:
        print(f"{remote}\n" if remote else "", end="", file=sys.stderr)
        print(f"slurm-sdk: job {args.job_id} failed: {type(error).__name__}: {error_text}", file=sys.stderr)
    return JOB_FAILED


def _jobs_cleanup(args: argparse.Namespace) -> int:
    with _cluster(args) as cluster:
        try:
            report = cluster.cleanup(args.older_than, dry_run=args.dry_run)
        except ValueError as error:
            raise UsageError(str(error)) from None
    if args.json:
        return _print_json(report.to_dict())
    verb = "would remove" if report.dry_run else "removed"
    print(
        f"{verb} {len(report.removed)} job director{'y' if len(report.removed) == 1 else 'ies'}; kept "
        f"{len(report.kept_unfinished)} of unfinished jobs and {report.kept_recent} younger than {args.older_than}"
    )
    for path in report.removed:
        print(f"  {verb}: {path}")
    for path in report.removed_unrecorded:
        print(f"  {verb} (no record, older than {args.older_than}, no unfinished job): {path}")
    for path in report.unrecorded:
        print(f"  left alone (no record; younger than {args.older_than}, or its job is unfinished): {path}")
    return OK


def _cluster_status(args: argparse.Namespace) -> int:
    from slurm.status import cluster_status, format_status

    with _cluster(args) as cluster:
        status = cluster_status(cluster)
    if args.json:
        return _print_json(status)
    print(format_status(status))
    return OK


# --- helpers ---------------------------------------------------------------------------------------


def _cluster(args: argparse.Namespace) -> Any:
    from slurm.cluster import Cluster

    return Cluster.from_env(args.config)


def _current(
    cluster: Any, job_id: str, *, wait: bool = False, timeout: float | None = None
) -> tuple[Any, list[Any], dict[str, JobState]]:
    """The handle for ``job_id``, its tasks and their states now: a result file means ended; otherwise the
    scheduler's word, in one query (UNKNOWN: it no longer lists the job, which ended without a result).
    With ``wait``, once they have all ended."""
    from slurm.waiting import check_result_files

    handle = cluster.job(job_id)
    tasks = list(handle) if _is_array(handle) else [handle]
    if wait:
        handle.wait(timeout)
    else:
        check_result_files(tasks)
    unfinished = [job.job_id for job in tasks if not job.last_state.is_terminal]
    states = cluster.backend.states(unfinished) if unfinished else {}
    return handle, tasks, {job.job_id: states.get(job.job_id, job.last_state) for job in tasks}


def _is_array(handle: Any) -> bool:
    from slurm.job import MappedJobs

    return isinstance(handle, MappedJobs)


def _one_task(handle: Any, job_id: str) -> Any:
    if _is_array(handle):
        raise UsageError(f"{job_id} is an array job of {len(handle)} tasks: name one task, e.g. {job_id}_0")
    return handle


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())


def _print_json(document: Any) -> int:
    print(json.dumps(document, indent=2, default=repr))
    return OK


if __name__ == "__main__":
    sys.exit(main())
