"""bench.slurm_log and bench.tick: a job's moments read from real slurmctld/slurmd lines, and round starts
spread over the second."""

from __future__ import annotations

import datetime
import re

import pytest

from bench import fig_floor, slurm_log, tick

# Lines as Slurm 24.11 wrote them on the dev cluster (slurmctld at info, slurmd at debug) for job 14,
# with lines of job 140 and 4 beside them that must not be taken for it.
SLURMCTLD_LOG = """\
[2026-12-06T21:54:15.609] debug2: sched: JobId=14 allocated resources: NodeList=(null)
[2026-12-06T21:54:15.609] _slurm_rpc_submit_batch_job: JobId=14 InitPrio=1 usec=379
[2026-12-06T21:54:15.700] _slurm_rpc_submit_batch_job: JobId=140 InitPrio=1 usec=379
[2026-12-06T21:54:16.003] sched: Allocate JobId=14 NodeList=c2 #CPUs=1 Partition=debug
[2026-12-06T21:54:16.059] _job_complete: JobId=14 WEXITSTATUS 0
[2026-12-06T21:54:16.059] _job_complete: JobId=14 done
[2026-12-06T21:54:17.003] sched/backfill: _start_job: Started JobId=4 in debug on c1
"""
SLURMD_LOG = """\
[2026-12-06T21:54:16.022] Launching batch job 14 for UID 1000
[2026-12-06T21:54:16.045] [14.batch] task 0 (939) started 2026-12-06T21:54:16
[2026-12-06T21:54:16.056] [14.batch] task 0 (939) exited with exit code 0.
[2026-12-06T21:54:16.096] debug:  JobId=14: sent epilog complete msg: rc = 0
[2026-12-06T21:54:16.100] [140.batch] task 0 (941) started 2026-12-06T21:54:16
"""


def at(clock: str) -> float:
    return datetime.datetime.fromisoformat(f"2026-12-06T{clock}").replace(tzinfo=datetime.UTC).timestamp()


def test_a_jobs_moments_come_from_both_daemons_logs_and_only_its_own_lines():
    ctld = slurm_log.events(SLURMCTLD_LOG.splitlines(), "slurmctld", ["14", "4"])
    node = slurm_log.events(SLURMD_LOG.splitlines(), "slurmd", ["14"])

    assert ctld["14"] == {
        "queued": at("21:54:15.609"),
        "allocated": at("21:54:16.003"),
        "completing": at("21:54:16.059"),
    }
    assert ctld["4"] == {"allocated": at("21:54:17.003")}  # placed by the backfill scheduler
    assert node["14"] == {
        "launch received": at("21:54:16.022"),
        "task started": at("21:54:16.045"),
        "task exited": at("21:54:16.056"),
        "epilog done": at("21:54:16.096"),
    }


def test_the_grep_pattern_keeps_a_jobs_lines_and_drops_other_ids():
    pattern = re.compile(slurm_log.grep_pattern(["14", "4"]))
    kept = [line for line in (SLURMCTLD_LOG + SLURMD_LOG).splitlines() if pattern.search(line)]

    assert all("140" not in line for line in kept)
    assert len(kept) == 10  # job 14's nine lines and job 4's one


def test_phases_are_spans_between_the_moments_a_job_has():
    stamps = {"submitting": 10.0, "queued": 10.1, "allocated": 10.6, "script up": 10.7}

    phases = fig_floor.spans(stamps, fig_floor.PHASES + fig_floor.TOTALS)

    assert phases["submit RPC (client → slurmctld queued it)"] == pytest.approx(0.1)
    assert phases["scheduling wait (queued → allocated)"] == pytest.approx(0.5)
    assert phases["sbatch → script up (queued → script up)"] == pytest.approx(0.6)
    assert "epilog (COMPLETING → epilog done)" not in phases  # no moment for it: left out, not zero


@pytest.mark.parametrize("rounds", [1, 2, 5, 10])
def test_round_starts_cover_the_second_evenly(rounds):
    starts = tick.offsets(rounds)

    assert sorted(starts) == pytest.approx([(i + 0.5) / rounds for i in range(rounds)])
    assert all(0 <= start < 1 for start in starts)
