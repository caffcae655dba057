"""A site's limits: sbatch's refusals and squeue's pending reasons as the dev cluster printed them
(tests/fast/golden/site_limits/), the limits learned from its config, and map throttled by a submit
limit on a local backend that enforces one as slurmctld does (each array task counts)."""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from pathlib import Path

import pytest

from slurm import Cluster, JobFailedError, JobState, SubmitError, SubmitLimitError, limits, throttle
from slurm.backends.base import JobStatus
from slurm.backends.local import HostTransport, LocalCommandBackend, parse_array_spec
from slurm.backends.slurm import SlurmBackend, parse_status_lines
from slurm.limits import NEVER_CLEARING_REASONS, OwnJobsCap, SubmitLimit, never_clears, parse_limits
from slurm.throttle import map_within_limits
from tests.fast import tasks
from tests.fast.test_slurm_backend import FAKE, FakeSlurm

GOLDEN = Path(__file__).parent / "golden" / "site_limits"
REPO = str(Path(__file__).resolve().parents[2])
LIMIT = 5


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakeSlurm:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    sacctmgr = bin_dir / "sacctmgr"
    sacctmgr.write_text(FAKE.format(dir=bin_dir))
    sacctmgr.chmod(0o755)
    return FakeSlurm(bin_dir)


# ---- sbatch's refusals ------------------------------------------------------------------------------


def test_a_submit_limit_refusal_is_a_submit_limit_error_naming_slurms_reason(fake):
    fake.respond("sbatch", err=golden("sbatch-submit-limit.txt"), rc=1)
    with pytest.raises(SubmitLimitError) as caught:
        SlurmBackend(HostTransport()).submit("/jobs/x/job.sh", array="0-19")
    assert caught.value.source == "QOSMaxSubmitJobPerUserLimit"
    assert "Job violates accounting/QOS policy" in str(caught.value)
    assert "--array=0-19" in str(caught.value) and not caught.value.transient


@pytest.mark.parametrize(
    ("golden_file", "slurm_says", "fix"),
    [
        ("sbatch-account.txt", "Invalid account or account/partition combination", "sacctmgr show assoc"),
        ("sbatch-qos.txt", "Invalid qos specification", "format=qos"),
        ("sbatch-partition.txt", "Invalid partition name specified", "sinfo -s"),
        ("sbatch-nodelist.txt", "Invalid node name specified", "sinfo -N"),
        ("sbatch-constraint.txt", "Invalid feature specification", "%f"),
    ],
)
def test_other_refusals_carry_slurms_reason_and_a_fix(fake, golden_file, slurm_says, fix):
    fake.respond("sbatch", err=golden(golden_file), rc=1)
    with pytest.raises(SubmitError) as caught:
        SlurmBackend(HostTransport()).submit("/jobs/x/job.sh")
    assert not isinstance(caught.value, SubmitLimitError) and not caught.value.transient
    assert slurm_says in str(caught.value)
    assert "\nfix: " in str(caught.value) and fix in str(caught.value).split("\nfix: ")[1]


# ---- pending reasons ---------------------------------------------------------------------------------


def test_reasons_that_never_clear_are_told_from_those_that_do():
    statuses = parse_status_lines(golden("squeue-pending.txt"))
    pending = {job: s.reason for job, s in statuses.items() if s.state is JobState.PENDING}
    assert pending == {
        "19": "AssocMaxJobsLimit",
        "17": "QOSMaxWallDurationPerJobLimit",
        "15": "PartitionNodeLimit",
        "14": "PartitionTimeLimit",
    }
    # PartitionNodeLimit (15) also means "nodes it needs are down": it may clear.
    assert {job for job, reason in pending.items() if never_clears(reason)} == {"14", "17"}
    assert never_clears("Resources") is None and never_clears("Priority") is None


def test_a_job_pending_for_good_ends_its_wait_named_and_is_cancelled(cluster):
    job = cluster.submit(tasks.nap, 60)
    job._observe(JobStatus(JobState.PENDING, "PartitionTimeLimit"))
    with pytest.raises(JobFailedError) as caught:
        job.result(timeout=30)
    message = str(caught.value)
    assert "PartitionTimeLimit" in message and NEVER_CLEARING_REASONS["PartitionTimeLimit"] in message
    assert caught.value.state == "CANCELLED"
    assert cluster.backend.states([job.job_id])[job.job_id] is JobState.CANCELLED


def test_a_running_jobs_cap_never_clears_only_with_none_of_the_users_jobs_running_throughout():
    """squeue's AssocMaxJobsLimit (golden: job 19 behind MaxJobs=1 while 18 runs) clears when a running job
    ends; with none running it never does, once that has held past a scheduling pass."""
    statuses = parse_status_lines(golden("squeue-pending.txt"))
    reason = statuses["19"].reason
    hold = limits.OWN_JOBS_HOLD_SECONDS
    running = {"jobs": 1}
    cap = OwnJobsCap()
    assert not cap.never_clears(reason, 0.0, lambda: running["jobs"])  # 18 runs: it may clear
    running["jobs"] = 0
    assert not cap.never_clears(reason, 1.0, lambda: running["jobs"])  # none now: a stale reason, maybe
    assert not cap.never_clears(reason, hold, lambda: running["jobs"])
    assert cap.never_clears(reason, 1.0 + hold, lambda: running["jobs"])
    # Another job running meanwhile starts the hold again; so does an unknown count, or another reason.
    cap = OwnJobsCap()
    for now, jobs, the_reason in (
        (0.0, 0, reason),
        (10.0, 1, reason),
        (20.0, 0, reason),
        (hold + 10, None, reason),
    ):
        running["jobs"] = jobs
        assert not cap.never_clears(the_reason, now, lambda: running["jobs"])
    assert not OwnJobsCap().never_clears("Resources", 0.0, lambda: 0)
    assert not OwnJobsCap().never_clears(statuses["15"].reason, 1e9, lambda: 0)  # PartitionNodeLimit


def test_answers_that_do_not_say_why_a_job_pends_neither_start_nor_end_the_hold():
    """With accounting on, sacct answers most queries and says nothing of why a job pends (an empty reason);
    squeue, asked at most every 15 s about a live job, says it. The hold runs from squeue's first word of the
    cap to its word a hold later, whatever sacct said between."""
    hold = limits.OWN_JOBS_HOLD_SECONDS
    asked: list[float] = []

    def running() -> int:
        asked.append(0.0)
        return 0

    cap = OwnJobsCap()
    assert not cap.never_clears("QOSMaxJobsPerUserLimit", 0.0, running)
    for now in (1.0, 2.5, 4.8, hold / 2, hold - 1):
        assert not cap.never_clears("", now, running)  # sacct's answers between
    assert len(asked) == 1  # the user's running jobs are not counted for an answer that names no cap
    assert cap.never_clears("QOSMaxJobsPerUserLimit", hold, running)
    # Not an end of the hold either: an empty answer alone never gives up.
    assert not OwnJobsCap().never_clears("", 1e9, running)


@pytest.mark.parametrize(("job", "reason"), [("14", "AssocMaxJobsLimit"), ("15", "QOSMaxJobsPerUserLimit")])
def test_caps_on_running_jobs_set_to_zero_read_as_squeue_prints_them(job, reason):
    """Captured with MaxJobs=0 (association) or MaxJobsPerUser=0 (QOS) and none of the user's jobs running."""
    statuses = parse_status_lines(golden("squeue-held.txt"))
    running = sum(1 for status in statuses.values() if status.state is JobState.RUNNING)
    assert (statuses[job].state, statuses[job].reason, running) == (JobState.PENDING, reason, 0)
    assert never_clears(reason) is None  # not for good while a running job could end
    cap = OwnJobsCap()
    assert not cap.never_clears(reason, 0.0, lambda: running)
    assert cap.never_clears(reason, limits.OWN_JOBS_HOLD_SECONDS, lambda: running)


def test_a_job_behind_a_running_jobs_cap_with_nothing_running_ends_its_wait_named(cluster, monkeypatch):
    monkeypatch.setattr(cluster.backend, "running_jobs", lambda: 0)
    job = cluster.submit(tasks.nap, 60)
    job._observe(JobStatus(JobState.PENDING, "AssocMaxJobsLimit"))
    monkeypatch.setattr(limits, "OWN_JOBS_HOLD_SECONDS", 0.0)  # the hold has passed (tested above)
    job._observe(JobStatus(JobState.PENDING, "AssocMaxJobsLimit"))
    with pytest.raises(JobFailedError) as caught:
        job.result(timeout=30)
    message = str(caught.value)
    assert "AssocMaxJobsLimit" in message and "none of yours running" in message
    assert limits.CLEARED_BY_OWN_JOBS["AssocMaxJobsLimit"] in message
    assert cluster.backend.states([job.job_id])[job.job_id] is JobState.CANCELLED


def test_the_users_running_jobs_are_counted_with_the_jobs_lock_free(cluster, monkeypatch):
    """The count is a remote command: asked while the job's lock is free, so another thread reading the job's
    state meanwhile is not held up by it."""
    lock_free = []

    def count() -> int:
        probe = threading.Thread(
            target=lambda: lock_free.append(job._lock.acquire(timeout=0) and job._lock.release() is None)
        )
        probe.start()
        probe.join()
        return 1

    monkeypatch.setattr(cluster.backend, "running_jobs", count)
    job = cluster.submit(tasks.nap, 60)
    job._observe(JobStatus(JobState.PENDING, "AssocMaxJobsLimit"))
    assert lock_free == [True]
    job._observe(JobStatus(JobState.PENDING, "Resources"))  # not a running-jobs cap: nothing counted
    assert lock_free == [True]
    job.cancel()


def test_slurm_counts_the_users_running_jobs_once_per_interval_and_none_when_squeue_fails(fake):
    backend = SlurmBackend(HostTransport())
    fake.respond("squeue", out="18\n21_3\n")
    assert backend.running_jobs() == 2
    assert fake.argv("squeue")[:6] == [
        "--me",
        "-h",
        "-r",
        "-t",
        "RUNNING,COMPLETING,CONFIGURING,SUSPENDED",
        "-o",
    ]
    fake.respond("squeue", out="")
    assert backend.running_jobs() == 2  # the answer serves a map's many pending jobs for a few seconds
    assert fake.calls().count("squeue") == 1
    fake.respond("squeue", err="slurm_load_jobs error: Unable to contact slurm controller", rc=1)
    backend = SlurmBackend(HostTransport())
    assert backend.running_jobs() is None


def test_without_a_running_jobs_count_the_wait_goes_on(cluster, monkeypatch, tmp_path):
    monkeypatch.setattr(limits, "OWN_JOBS_HOLD_SECONDS", 0.0)
    gate = tmp_path / "gate"
    job = cluster.submit(
        tasks.wait_for_file, str(gate)
    )  # still running when the limit's reason is seen below
    assert cluster.backend.running_jobs() is None  # LocalCommandBackend does not count the user's jobs
    for _ in range(2):
        job._observe(JobStatus(JobState.PENDING, "AssocMaxJobsLimit"))
    gate.touch()
    assert job.result(timeout=30) == str(gate)


# ---- limits learned from the cluster -------------------------------------------------------------------


def test_limits_are_learned_from_the_clusters_config_and_accounting():
    limits = parse_limits(golden("limits-query.txt"))
    assert limits.max_array_size == 20
    assert limits.submit_limit == SubmitLimit(50, "MaxSubmitJobsPerUser of QOS normal")


def test_a_qos_named_at_submit_is_the_one_whose_limit_counts():
    assert parse_limits(golden("limits-query.txt"), qos="high").submit_limit is None


def test_limits_in_the_database_count_only_when_slurmctld_enforces_them():
    text = golden("limits-query.txt").replace("associations,limits,qos,safe", "associations")
    assert parse_limits(text).submit_limit is None


def test_a_cluster_without_accounting_has_no_submit_limit_but_its_array_size(fake):
    fake.respond("scontrol", out="MaxArraySize            = 300\nAccountingStorageEnforce = none\n")
    fake.respond("sacctmgr", err="sacctmgr: error: Problem talking to the database\n", rc=1)
    backend = SlurmBackend(HostTransport())
    assert (backend.max_array_size(), backend.submit_limit()) == (300, None)
    assert fake.calls().count("scontrol") == 1


# ---- map under a submit limit ------------------------------------------------------------------------


class LimitedBackend(LocalCommandBackend):
    """Refuses a submission that would take the user's unfinished jobs past ``LIMIT``, as slurmctld
    does; ``known`` says whether it tells the SDK the limit up front (else only the refusal says so)."""

    def __init__(self, state_dir: str, *, known: bool) -> None:
        super().__init__(state_dir, max_array_size=2, parallelism=2)
        self.known = known
        self.most_queued = 0
        self.refusals = 0

    def submit_limit(self):
        return SubmitLimit(LIMIT, "MaxSubmitJobsPerUser of QOS test") if self.known else None

    def queued_jobs(self) -> int:
        return sum(self._unfinished(job_id) for job_id in self.job_ids())

    def _unfinished(self, job_id: str) -> int:
        record = self._record(job_id) or {}
        elements = [f"{job_id}_{i}" for i in record.get("array") or []] or [job_id]
        return sum(not self._read_state(element).is_terminal for element in elements)

    def submit(self, script_path, *, array=None, dependencies=(), dependency_type="afterok"):
        count = len(parse_array_spec(array)[0]) if array else 1
        queued = self.queued_jobs()
        if queued + count > LIMIT:
            self.refusals += 1
            raise SubmitLimitError(
                "sbatch failed (exit code 1)\n" + golden("sbatch-submit-limit.txt"),
                source="QOSMaxSubmitJobPerUserLimit",
            )
        self.most_queued = max(self.most_queued, queued + count)
        return super().submit(
            script_path, array=array, dependencies=dependencies, dependency_type=dependency_type
        )


def limited_cluster(tmp_path, *, known: bool) -> Cluster:
    backend = LimitedBackend(str(tmp_path / "state"), known=known)
    packaging = {"type": "none", "pythonpath": [REPO], "python": sys.executable}
    # The fast tier's quick cadence (tests/fast/conftest.py): waits and the map's pauses for room see a
    # job's end sooner.
    cadence = {"poll_interval_seconds": 0.05, "result_poll_interval_seconds": 0.05}
    return Cluster(backend, packaging, job_root=str(tmp_path / "jobs"), **cadence)


@pytest.mark.parametrize("known", [True, False], ids=["limit-learned", "limit-from-refusal"])
def test_map_submits_as_jobs_end_in_item_order_never_past_the_limit(tmp_path, caplog, monkeypatch, known):
    cluster = limited_cluster(tmp_path, known=known)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        time.sleep(seconds)

    # Cluster.map's throttle, its pauses for room on record.
    monkeypatch.setattr(throttle, "map_within_limits", functools.partial(map_within_limits, sleep=pause))
    with caplog.at_level(logging.INFO, logger="slurm.limits"):
        jobs = cluster.map(tasks.square, range(12))
    assert [job.result(timeout=60) for job in jobs] == [i * i for i in range(12)]
    backend = cluster.backend
    assert backend.most_queued <= LIMIT
    # It waited for room, never longer at a time than the cluster's poll interval (the first pause too).
    assert pauses and max(pauses) <= cluster.poll_interval_seconds
    assert len(backend.job_ids()) == 6  # arrays of MaxArraySize=2, each submitted once
    # Learned up front, the limit is never hit; learned from sbatch, it is hit at least once.
    assert (backend.refusals == 0) if known else (backend.refusals >= 1)
    throttled = [r.getMessage() for r in caplog.records if "throttled" in r.getMessage()]
    source = "MaxSubmitJobsPerUser of QOS test" if known else "QOSMaxSubmitJobPerUserLimit"
    assert throttled and source in throttled[0] and "map of 12 tasks" in throttled[0]
    assert any("12 of 12 tasks submitted" in r.getMessage() for r in caplog.records)


def test_no_waiting_fails_before_anything_is_uploaded_naming_the_limit(tmp_path):
    cluster = limited_cluster(tmp_path, known=True)
    with pytest.raises(SubmitLimitError) as caught:
        cluster.map(tasks.square, range(12), wait_for_capacity=False)
    error = caught.value
    assert (error.limit, error.queued, error.needed) == (LIMIT, 0, 12)
    assert "MaxSubmitJobsPerUser of QOS test allows 5" in str(error) and "needs 12" in str(error)
    assert not (tmp_path / "jobs").exists() and cluster.backend.job_ids() == []
    assert len(cluster.map(tasks.square, range(LIMIT), wait_for_capacity=False)) == LIMIT  # room: no error


def test_an_interrupted_map_cancels_what_it_submitted_and_submits_no_more(tmp_path):
    cluster = limited_cluster(tmp_path, known=True)
    task = tasks.nap

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    calls = [((30,), {}) for _ in range(12)]
    with pytest.raises(KeyboardInterrupt):
        map_within_limits(cluster, task, calls, max_parallel=None, wait_for_capacity=True, sleep=interrupt)
    backend = cluster.backend
    assert len(backend.job_ids()) == 2  # two arrays of 2 filled 4 of 5 places; the third waited
    states = backend.states([f"{job_id}_{i}" for job_id in backend.job_ids() for i in range(2)])
    assert set(states.values()) == {JobState.CANCELLED}


def test_a_limit_of_no_jobs_at_all_fails_at_once_even_when_waiting(tmp_path, monkeypatch):
    cluster = limited_cluster(tmp_path, known=True)
    monkeypatch.setattr(
        cluster.backend, "submit_limit", lambda: SubmitLimit(0, "MaxSubmitJobs of your association")
    )
    with pytest.raises(SubmitLimitError, match="allows 0 jobs"):
        cluster.map(tasks.square, range(3))
    assert cluster.backend.job_ids() == [] and not (tmp_path / "jobs").exists()


# ---- how long a cap on running jobs must hold: one of the cluster's scheduling passes ---------------


def test_the_scheduling_interval_is_read_from_the_clusters_config():
    config = golden("limits-query.txt")
    assert parse_limits(config).sched_interval == limits.DEFAULT_SCHED_INTERVAL  # Slurm's 60 s: not set
    shorter = config.replace("default_queue_depth=1000", "default_queue_depth=1000,sched_interval=10")
    assert parse_limits(shorter).sched_interval == 10
    assert parse_limits("MaxArraySize = 300\n").sched_interval is None  # no SchedulerParameters: unknown
    assert limits.own_jobs_hold(10) == 10 + limits.HOLD_MARGIN_SECONDS
    assert limits.own_jobs_hold(None) == limits.OWN_JOBS_HOLD_SECONDS


def test_the_slurm_backend_asks_the_interval_once_with_the_limits(fake):
    fake.respond("scontrol", out="SchedulerParameters     = bf_interval=1,sched_interval=15\n")
    fake.respond("sacctmgr", out="")
    backend = SlurmBackend(HostTransport())
    assert backend.sched_interval() == backend.sched_interval() == 15
    assert fake.calls().count("scontrol") == 1


def test_a_cap_on_a_cluster_with_a_short_scheduling_interval_gives_up_after_that_interval(
    cluster, monkeypatch
):
    """The wait uses the backend's interval, not the 70 s of a cluster whose interval is unknown: with an
    interval (and margin) of 0 s the second observation ends it, and the message says how long it held."""
    monkeypatch.setattr(cluster.backend, "running_jobs", lambda: 0)
    monkeypatch.setattr(cluster.backend, "sched_interval", lambda: 0)
    monkeypatch.setattr(limits, "HOLD_MARGIN_SECONDS", 0.0)
    job = cluster.submit(tasks.nap, 60)
    job._observe(JobStatus(JobState.PENDING, "AssocMaxJobsLimit"))
    job._observe(JobStatus(JobState.PENDING, "AssocMaxJobsLimit"))
    with pytest.raises(JobFailedError) as caught:
        job.result(timeout=30)
    assert "none of yours running for 0 s" in str(caught.value)
