"""Dataflow and async on the real cluster over SSH: Job arguments two levels deep (results read on the
nodes, never by the client), a failed parent named in its child's error, and many jobs awaited at once."""

from __future__ import annotations

import asyncio

import pytest

from slurm import JobFailedError, as_completed_async
from tests.fast import dataflow_tasks

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TIMEOUT = 300


def test_dataflow_two_levels_deep(slurm_cluster, monkeypatch):
    reads = dataflow_tasks.record_reads(slurm_cluster.backend.transport, monkeypatch)

    first = slurm_cluster.submit(dataflow_tasks.slow_value, 2, 5)
    second = slurm_cluster.map(dataflow_tasks.total, [[first, 1], {"x": (first, first)}])
    third = slurm_cluster.submit(dataflow_tasks.echo, second, first=first, deep={"k": [second[1]]})

    assert third.result(timeout=TIMEOUT) == (([6, 10],), {"first": 5, "deep": {"k": [10]}})
    assert all(job.depends_on == (first.job_id,) for job in second)  # pending at submit: a Slurm dependency
    assert set(third.depends_on) <= {first.job_id, *(job.job_id for job in second)}
    parents = {first._result_path, *(job._result_path for job in second)}
    assert not parents & set(reads), "a parent's result went through the client"


def test_a_failed_parent_is_named_by_its_child(slurm_cluster):
    parent = slurm_cluster.submit(dataflow_tasks.fail_after, 2, "no result")
    child = slurm_cluster.submit(dataflow_tasks.total, {"values": [parent, 1]})

    with pytest.raises(
        JobFailedError, match=rf"can never start: .*afterok on job {parent.job_id} \(FAILED\)"
    ):
        child.result(timeout=TIMEOUT)


def test_many_jobs_awaited_with_batched_queries(slurm_cluster, monkeypatch):
    awaited: list = []
    queries: list[tuple[set[str], set[str]]] = []  # (ids asked, awaited ids unfinished at that moment)
    statuses = slurm_cluster.backend.statuses

    def counted(job_ids, **options):
        queries.append((set(job_ids), {job.job_id for job in awaited if not job.last_state.is_terminal}))
        return statuses(job_ids, **options)

    monkeypatch.setattr(slurm_cluster.backend, "statuses", counted)

    async def main():
        # The slow job starts only after the map has ended, so it ends last by construction: run side by
        # side, a loaded host once left a map task waiting for a CPU until after the slow job had ended.
        numbers = slurm_cluster.map(dataflow_tasks.total, range(8))
        slow = slurm_cluster.submit(dataflow_tasks.slow_value.after(numbers), 6, "slow")
        awaited.extend([slow, *numbers])
        order = [job async for job in as_completed_async([slow, numbers], timeout=TIMEOUT)]
        values = await asyncio.gather(slow, numbers, *(job.result_async() for job in numbers))
        return order, slow, values

    order, slow, (slow_value, number_values, *each) = asyncio.run(main())
    assert order[-1] is slow and len(order) == 9
    assert slow_value == "slow" and number_values == each == list(range(8))
    assert queries, "the scheduler was never asked (slow ran 6 s: the watcher asks from 1 s on)"
    assert all(unfinished <= asked for asked, unfinished in queries)  # one query for all awaited jobs
