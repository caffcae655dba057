"""The outcomes of a multi-rank task's ranks, combined into the one result file every wait looks for.

Each rank writes ``ranks-<index>/rank-<r>.pkl`` (its outcome and its node). After ``srun`` has ended,
the batch step gathers them into ``result-<index>.pkl``: when every rank returned, rank 0's value (what
``result()`` gives) plus every rank's value (``results_by_rank()``); otherwise the failure of the first
rank that raised (else of the first that left no result: killed outright, or never started; a rank that
srun stopped with SIGTERM because another failed is the last suspect), with that rank named.
Only then does the result file exist, so a wait never ends on rank 0 while another rank still runs or failed.
"""

from __future__ import annotations

import pickle
from typing import Any

from slurm.node.atomic import write_atomic
from slurm.node.errors import RankTerminated
from slurm.node.layout import rank_result_path
from slurm.node.outcome import OutcomeFile, dump_ranks


def write_rank_outcome(job_dir: str, index: int, rank: int, node: str, outcome: bytes) -> None:
    write_atomic(
        rank_result_path(job_dir, index, rank), pickle.dumps({"node": node, "outcome": outcome}), 0o600
    )


def gather(job_dir: str, index: int, world_size: int, *, restarts: int) -> tuple[bytes, int]:
    """The combined outcome file of ``world_size`` ranks and the job's exit status (0: all returned)."""
    ranks = [_read_rank(job_dir, index, rank, restarts) for rank in range(world_size)]
    failed = [rank for rank, entry in enumerate(ranks) if entry is None or not entry[1].ok]
    if not failed:
        returned = [entry for entry in ranks if entry is not None]
        values = [outcome.value_bytes() for _, outcome in returned]
        return dump_ranks(values, [node for node, _ in returned], restarts=restarts), 0
    raised = [rank for rank in failed if ranks[rank] is not None and not _terminated(ranks[rank])]
    lost = [rank for rank in failed if ranks[rank] is None]
    where = {"world_size": world_size, "failed_ranks": failed, "restarts": restarts}
    if raised or not lost:
        culprit = (raised or failed)[0]
        entry = ranks[culprit]
        node, fields = (entry[0], entry[1].fields) if entry is not None else ("", {})
        return pickle.dumps({**fields, **where, "rank": culprit, "node": node}), 1
    # No file tells which of the silent ranks died first (srun's own lines in stderr do), so name them all.
    return pickle.dumps(
        {**_lost_ranks(lost, world_size), **where, "rank": lost[0] if len(lost) == 1 else None}
    ), 1


def _terminated(entry: tuple[str, OutcomeFile] | None) -> bool:
    name = f"{RankTerminated.__module__}.{RankTerminated.__qualname__}"
    return entry is not None and entry[1].fields.get("type") == name


def _read_rank(job_dir: str, index: int, rank: int, restarts: int) -> tuple[str, OutcomeFile] | None:
    """A rank's (node, outcome) from this run; None if it left none. A file from an earlier run of a
    requeued job (another restart count) does not count: the rank left nothing this time."""
    try:
        with open(rank_result_path(job_dir, index, rank), "rb") as handle:
            entry = pickle.load(handle)
    except FileNotFoundError:
        return None
    outcome = OutcomeFile.load(entry["outcome"])
    return (entry["node"], outcome) if outcome.restarts == restarts else None


def _lost_ranks(lost: list[int], world_size: int) -> dict[str, Any]:
    which = f"rank {lost[0]}" if len(lost) == 1 else f"ranks {', '.join(map(str, lost))}"
    return {
        "ok": False,
        "exception": None,
        "type": None,
        "message": f"{which} of {world_size} ended without a result: killed outright (signal, out of memory, "
        "os._exit), or stopped by srun before the SDK's handler was in place, or never started; srun's lines in "
        "the job's stderr name the rank that failed first",
        "traceback": "",
        "exit_code": None,
    }
