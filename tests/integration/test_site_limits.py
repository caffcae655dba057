"""The SDK under a site's limits (the ``site_limits`` fault: MaxSubmitJobsPerUser=50, MaxArraySize=20,
enforced), on the dev defaults and on Slurm's production defaults: a 500-item map throttled to the
limit, the no-waiting error before upload, an interrupted map, sbatch's refusals, and pending reasons
that never clear (over a MaxWall; behind MaxJobsPerUser=0 with nothing running) ending the wait."""

from __future__ import annotations

import _thread
import logging
import threading
import uuid
from collections.abc import Iterator

import pytest

from slurm import Cluster, JobFailedError, SubmitError, SubmitLimitError
from slurm.limits import SubmitLimit
from slurm_dev_cluster.pytest_plugin import packaging_for, ssh_backend
from slurm_dev_cluster.pytest_plugin import test_import_roots as import_roots  # not collected as a test

from . import jobs
from .defaults_modes import MODES
from .waiting import wait_until

pytestmark = pytest.mark.integration
JOBS, ARRAY = 50, 20
TIMEOUT = 900


@pytest.fixture
def limited(request, faults, slurm_container, sdk_on_cluster):
    """A cluster (own job root) on the stack with the site's limits on; its job root goes afterwards."""
    faults.site_limits(JOBS, ARRAY, max_wall="00:05:00")
    yield from own_cluster(request, slurm_container, sdk_on_cluster)


@pytest.fixture
def held(request, faults, slurm_container, sdk_on_cluster):
    """As ``limited``, with MaxJobsPerUser=0 on the user's QOS too: none of its jobs may run."""
    faults.site_limits(JOBS, ARRAY, max_jobs=0)
    yield from own_cluster(request, slurm_container, sdk_on_cluster)


def own_cluster(request, slurm_container, sdk_on_cluster) -> Iterator[Cluster]:
    packaging = packaging_for("ssh", sdk_on_cluster, import_roots(request, sdk_on_cluster))
    root = f"~/.slurm-sdk/limits-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(backend=ssh_backend(slurm_container), packaging=packaging, job_root=root)
    yield cluster
    cluster.backend.transport.run(f"scancel --me; rm -rf {cluster.resolve_job_root()}", check=False)
    cluster.close()


def sacct_tasks(cluster: Cluster, array_ids: list[str]) -> list[str]:
    """Every array task sacct records for these arrays, one line per run (a task run twice shows twice)."""
    out = cluster.backend.transport.run(
        f"sacct -X -D -n -P -j {','.join(array_ids)} -o JobID", check=False
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_500_item_map_is_throttled_to_the_limit_in_order_each_task_once(limited, caplog, mode):
    with caplog.at_level(logging.INFO, logger="slurm.limits"):
        mapped = limited.map(jobs.double, range(500))
    assert [job.result(timeout=TIMEOUT) for job in mapped] == [2 * i for i in range(500)]
    assert len(mapped.array_ids) == 500 // ARRAY

    # The results come from result files; each task's start reaches slurmdbd later (under load seconds
    # later), and until then sacct lists the array's pending rest as one line ("123_[18-19]").
    def each_task_listed() -> list[str] | None:
        tasks = sacct_tasks(limited, mapped.array_ids)
        return tasks if len(set(tasks)) >= 500 and not any("[" in task for task in tasks) else None

    def listed(tasks: list[str]) -> str:
        return f"{len(set(tasks))} tasks and the ranges {[task for task in tasks if '[' in task]}"

    tasks = wait_until(
        each_task_listed,
        60,
        lambda: (
            f"sacct listing each of the 500 tasks; it lists {listed(sacct_tasks(limited, mapped.array_ids))}"
        ),
    )
    assert len(tasks) == len(set(tasks)) == 500  # each item queued once, run once
    messages = [record.getMessage() for record in caplog.records if record.name == "slurm.limits"]
    throttled = [m for m in messages if "throttled" in m]
    assert len(throttled) == 1 and "MaxSubmitJobsPerUser of QOS normal allows 50" in throttled[0]
    assert "500 of 500 tasks submitted" in messages[-1]


@pytest.mark.parametrize("mode", MODES)
def test_no_waiting_fails_before_anything_is_uploaded(limited, mode):
    with pytest.raises(SubmitLimitError) as caught:
        limited.map(jobs.double, range(500), wait_for_capacity=False)
    assert (caught.value.limit, caught.value.needed) == (JOBS, 500)
    assert "allows 50 jobs pending or running" in str(caught.value) and "needs 500" in str(caught.value)
    root = limited.resolve_job_root()
    listing = limited.backend.transport.run(f"ls -A {root} 2>/dev/null || true").stdout.split()
    assert listing in ([], ["records"])  # the root may exist (secured on first use); no job directory


@pytest.mark.slow
def test_interrupting_a_throttled_map_cancels_what_it_submitted(limited, caplog):
    """Ctrl-C while the map waits for room: the two arrays it queued are cancelled, the rest never sent."""

    class InterruptWhenThrottled(logging.Handler):
        def emit(self, record):
            if "throttled" in record.getMessage():
                threading.Timer(1.0, _thread.interrupt_main).start()

    transport = limited.backend.transport
    started = transport.run("date +%Y-%m-%dT%H:%M:%S").stdout.strip()
    handler = InterruptWhenThrottled()
    logging.getLogger("slurm.limits").addHandler(handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            limited.map(jobs.sleep_then_return, [300] * 100)
    finally:
        logging.getLogger("slurm.limits").removeHandler(handler)

    def queue_empty():
        return not transport.run("squeue --me -h -r -o %i").stdout.split()

    wait_until(queue_empty, 60, "the interrupted map's jobs leaving the queue")

    def recorded() -> list[list[str]]:
        states = transport.run(f"sacct -X -n -P -S {started} -o JobID,State --name=sleep_then_return").stdout
        return [line.split("|") for line in states.splitlines() if line.strip()]

    # squeue forgets a cancelled job before its end reaches slurmdbd (under load seconds later): until then
    # sacct says PENDING or RUNNING for it.
    def ended() -> list[list[str]] | None:
        rows = recorded()
        return rows if rows and not {state for _, state in rows} & {"PENDING", "RUNNING"} else None

    lines = wait_until(
        ended,
        60,
        lambda: f"sacct recording the cancelled arrays' ends; it lists {recorded()}",
    )
    arrays = {job_id.split("_")[0] for job_id, _ in lines}
    assert len(arrays) == 2  # 2 x 20 of the 50 places; the third array of 20 waited for room
    assert {state.split()[0] for _, state in lines} == {"CANCELLED"}


@pytest.mark.parametrize(
    ("how", "slurm_says"),
    [
        ("account", "Invalid account or account/partition combination specified"),
        ("qos", "Invalid qos specification"),
        ("partition", "Invalid partition name specified"),
    ],
)
def test_refusals_at_submit_carry_slurms_reason(limited, how, slurm_says):
    task = jobs.double
    if how == "account":
        task = jobs.double.options(account="no-such-account")
    elif how == "partition":
        task = jobs.double.options(partition="no-such-partition")
    else:
        limited.backend.sbatch_extra = ("--qos=no-such-qos",)
    with pytest.raises(SubmitError) as caught:
        limited.submit(task, 1)
    assert slurm_says in str(caught.value) and "\nfix: " in str(caught.value)


@pytest.mark.parametrize("mode", MODES)
def test_a_job_over_the_qos_wall_time_ends_its_wait_with_the_reason(limited, mode):
    """Over the QOS's MaxWall (5 minutes) the job pends for QOSMaxWallDurationPerJobLimit for ever: the
    wait ends with that reason, and the job is cancelled."""
    job = limited.submit(jobs.double.options(time="00:30:00"), 1)
    with pytest.raises(JobFailedError) as caught:
        job.result(timeout=300)
    assert "QOSMaxWallDurationPerJobLimit" in str(caught.value) and "sacctmgr show qos" in str(caught.value)
    transport = limited.backend.transport
    wait_until(
        lambda: "CANCELLED" in transport.run(f"sacct -X -n -P -j {job.job_id} -o State").stdout,
        60,
        "the job recorded as cancelled",
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_job_behind_a_running_jobs_cap_with_nothing_running_ends_its_wait_with_the_reason(held, mode):
    """MaxJobsPerUser=0: the job pends for QOSMaxJobsPerUserLimit, which only the end of one of the user's
    running jobs could clear, and none runs. Once that has held past one of the cluster's scheduling passes
    (sched_interval and 10 s: 20 s on the dev defaults, 70 s on the production ones) the wait ends naming the
    reason and the fix, and the job is cancelled."""
    job = held.submit(jobs.double, 1)
    with pytest.raises(JobFailedError) as caught:
        job.result(timeout=600)
    message = str(caught.value)
    assert "QOSMaxJobsPerUserLimit" in message, message
    # The hold follows the cluster's own sched_interval (read from its config), not a fixed 70 s.
    assert f"none of yours running for {20 if mode == 'dev' else 70} s" in message, message
    assert "maxjobsperuser" in message, message
    transport = held.backend.transport
    wait_until(
        lambda: "CANCELLED" in transport.run(f"sacct -X -n -P -j {job.job_id} -o State").stdout,
        60,
        "the job recorded as cancelled",
    )


def test_the_fault_limits_the_default_qos_of_an_association_the_site_already_has(
    faults, slurm_stack, slurm_container
):
    """A site-like stack (the job user already in an account, with a default QOS of its own): the fault
    limits that QOS, the SDK learns the limit from it, and reset gives the QOS back as it was and keeps the
    association."""
    name = f"hl-{uuid.uuid4().hex[:6]}"

    def admin(script: str) -> str:
        return slurm_stack.exec("slurmctld", ["sh", "-c", script])

    admin(
        f"sacctmgr -i add qos {name} >/dev/null && sacctmgr -i add account {name} >/dev/null && "
        f"sacctmgr -i add user sdk account={name} qos=normal,{name} defaultqos={name} >/dev/null"
    )
    try:
        faults.site_limits(5, 3)
        assert admin(f"sacctmgr -n -P show qos where name={name} format=maxsubmitjobsperuser").strip() == "5"
        backend = ssh_backend(slurm_container)
        try:
            learned = backend.site_limits()
        finally:
            backend.close()
        assert learned.max_array_size == 3
        assert learned.submit_limit == SubmitLimit(5, f"MaxSubmitJobsPerUser of QOS {name}")
        faults.reset()
        assert admin(f"sacctmgr -n -P show qos where name={name} format=maxsubmitjobsperuser").strip() == ""
        assert name in admin(f"sacctmgr -n -P show assoc where user=sdk account={name} format=account")
    finally:
        admin(
            f"sacctmgr -i delete user where name=sdk account={name} >/dev/null; "
            f"sacctmgr -i delete account {name} >/dev/null; sacctmgr -i delete qos {name} >/dev/null"
        )
