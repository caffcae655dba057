"""Job states from ``sacct`` and ``squeue`` for ``SlurmBackend``: which of the two to ask about which jobs,
and how their answers are combined (sacct remembers ended jobs; slurmctld, through squeue, knows the live
ones)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence

from slurm.backends.base import JobState, JobStatus
from slurm.backends.slurm_clusters import without_cluster_headers
from slurm.backends.slurm_output import array_id as _array_id
from slurm.backends.slurm_output import parse_status_lines
from slurm.backends.slurm_output import resolve_statuses as _resolve
from slurm.backends.slurm_output import scheduler_error as _scheduler_error
from slurm.transports.base import CommandResult

# sacct's ways of saying "there is no accounting here" for good; other sacct errors (slurmdbd briefly
# down) only make squeue answer this one time.
_NO_ACCOUNTING = ("accounting storage is disabled", "command not found")
#: What sacct says of a job something just happened to (failed or preempted, maybe requeued by now, see
#: ``SlurmBackend._query``): squeue confirms these on every query.
_UNSETTLED = frozenset({JobState.REQUEUED, JobState.NODE_FAIL, JobState.PREEMPTED})
#: What sacct says of a live job, which may be stale: slurmdbd hears of starts and ends late, or never.
#: squeue confirms these on every query a caller makes, and at most once per ``CONFIRM_LIVE_EVERY`` on a
#: wait's background polls.
_LIVE = frozenset({JobState.PENDING, JobState.RUNNING, JobState.COMPLETING})
#: Seconds between two squeue confirmations of sacct's live states on a wait's background polls. Half the
#: default poll_interval_seconds (30 s): the watcher's ramp (queries at about 1, 2.5, 4.8, 8.1, 13, 21, 32, 49 s)
#: confirms at 1, 21 and 49 s instead of 8 times in its first minute, and every query once the pause has
#: grown past 15 s, so a long wait learns of a start or an end slurmdbd missed no later than it would
#: without accounting.
CONFIRM_LIVE_EVERY = 15.0


class SlurmStatusQueries:
    """``SlurmBackend``'s status queries (a base class of it): the attributes declared here are set by
    ``SlurmBackend.__init__``, ``_run`` is its own."""

    job_ids_per_query: int
    _use_sacct: bool  # turned off for good once sacct says accounting is unavailable
    _lock: threading.Lock
    _clock: Callable[[], float]
    _live_confirmed_at: float | None  # the last squeue that confirmed sacct's live states
    _forgotten: set[str]  # jobs sacct calls live that the last squeue did not list

    def _run(self, args: Sequence[str]) -> CommandResult:
        raise NotImplementedError  # SlurmBackend's: runs a Slurm command on its cluster

    def statuses(
        self, job_ids: Sequence[str], *, reasons_for: Collection[str] = (), background: bool = False
    ) -> dict[str, JobStatus]:
        """``background``: a wait's poll on the watcher's cadence, which has squeue confirm sacct's live
        states at most once per ``CONFIRM_LIVE_EVERY``; a caller asking (``query_state``) gets them
        confirmed now."""
        unique = list(dict.fromkeys(job_ids))
        # Array tasks are asked for by their array's id: sacct and `squeue -r` list every task of it, so a
        # 1,000-task map costs one short query instead of a command line of 1,000 ids.
        queried = list(dict.fromkeys(_array_id(job_id) for job_id in unique))
        reasons_for = {_array_id(job_id) for job_id in reasons_for}
        confirm_live = not background or self._live_confirmation_due()
        found: dict[str, JobStatus] = {}
        for start in range(0, len(queried), self.job_ids_per_query):
            batch = set(queried[start : start + self.job_ids_per_query])
            found |= self._query([j for j in unique if _array_id(j) in batch], reasons_for, confirm_live)
        return _resolve(unique, found)

    def _live_confirmation_due(self) -> bool:
        last = self._live_confirmed_at
        return last is None or self._clock() - last >= CONFIRM_LIVE_EVERY

    def _query(
        self, job_ids: list[str], reasons_for: Collection[str] = (), confirm_live: bool = True
    ) -> dict[str, JobStatus]:
        """sacct first (it remembers finished jobs and costs slurmctld nothing: slurmdbd answers), then
        one squeue when sacct does not list a job (a task of an array too), says it ended in a way Slurm
        may requeue (``_UNSETTLED``), says it is CANCELLED while in ``reasons_for`` (only squeue says
        *why*, e.g. a dependency that can never be met), or says it is live (``_LIVE``) and
        ``confirm_live``; that squeue is asked about every job sacct says is live. squeue alone when
        accounting is unavailable. Both are asked by array id.

        sacct only says what slurmdbd has heard: a job's start, end and requeue reach it through
        slurmctld's agent queue, seconds late on a busy cluster (seen with Slurm 22.05: a running job
        PENDING; a finished array task missing while its siblings were listed; a job requeued after a
        node failure listed as NODE_FAIL alone, its new run not yet recorded), and never if slurmctld dies
        before sending them. slurmctld knows its live jobs, so squeue decides for those. A job it no
        longer lists keeps sacct's answer if that is an end; if sacct calls it live, its end never reached
        slurmdbd and slurmctld has forgotten it (MinJobAge): UNKNOWN, with sacct's word as the reason."""
        queried = list(dict.fromkeys(_array_id(job_id) for job_id in job_ids))
        found = self._sacct(queried) if self._use_sacct else {}
        live = {key for key, status in found.items() if status.state in _LIVE}
        # Jobs squeue did not list last time are asked on every query until it confirms (see Job: two
        # queries apart make a job LOST), like the jobs sacct does not list.
        ask = {_array_id(key) for key, status in found.items() if status.state in _UNSETTLED}
        ask |= {_array_id(key) for key in live & self._forgotten}
        ask |= {
            _array_id(j)
            for j, s in _resolve(job_ids, found).items()
            if s.state is JobState.UNKNOWN or (s.state is JobState.CANCELLED and _array_id(j) in reasons_for)
        }
        if not ask and not (live and confirm_live):
            return found
        asked = ask | {_array_id(key) for key in live}
        listed = self._squeue([j for j in queried if j in asked])
        if live:
            self._live_confirmed_at = self._clock()
        forgotten = {
            key: JobStatus(JobState.UNKNOWN, f"sacct still says {found[key].state.value}")
            for key in live
            if key not in listed
        }
        with self._lock:
            self._forgotten = (self._forgotten - live) | forgotten.keys()
        return found | forgotten | listed

    def _sacct(self, job_ids: list[str]) -> dict[str, JobStatus]:
        # --duplicates: one line per run of a requeued job, which gives the restart count.
        result = self._run(
            [
                "sacct",
                "-X",
                "-D",
                "-n",
                "-P",
                "-j",
                ",".join(job_ids),
                "-o",
                "JobID,State",
            ]
        )
        output = (result.stderr + result.stdout).lower()
        if result.returncode == 127 or any(s in output for s in _NO_ACCOUNTING):
            with self._lock:
                self._use_sacct = False
            return {}
        # On other failures squeue answers instead; it knows live and recently finished jobs.
        return parse_status_lines(result.stdout, count_runs=True) if result.returncode == 0 else {}

    def _squeue(self, job_ids: list[str]) -> dict[str, JobStatus]:
        # -r prints one line per array task; ranges that still show up are expanded by the parser.
        result = self._run(
            [
                "squeue",
                "--states=all",
                "-h",
                "-r",
                "-j",
                ",".join(job_ids),
                "-O",
                "JobArrayID:|,State:|,Reason:|,RestartCnt:",
            ]
        )
        if result.returncode != 0 and "invalid job id" not in result.stderr.lower():
            raise _scheduler_error("squeue", result)
        return parse_status_lines(without_cluster_headers(result.stdout))
