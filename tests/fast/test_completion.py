"""Completion logic against scripted scheduler answers: a transport that replays sbatch/squeue/sacct/scancel
outputs and failures (files are real, in a temporary directory), so every wait's ending can be forced."""

from __future__ import annotations

import itertools
import pathlib
import posixpath
import shlex
import time
from collections import defaultdict, deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurm import BackendError, Cluster, JobFailedError, JobState, JobTimeoutError, SSHError
from slurm.backends.base import JobStatus
from slurm.backends.slurm import CONFIRM_LIVE_EVERY, SlurmBackend
from slurm.inherited_env import SCRUB_SLURM_ENV_SHELL
from slurm.node import layout
from slurm.node.outcome import dump_result
from slurm.node.payload import LOCAL_PYTHON
from slurm.transports.base import CommandResult
from slurm.transports.host import HostTransport
from slurm.waiting import as_completed
from tests.fast import tasks
from tests.fast.fake_clock import FakeClock

SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "scontrol")
NO_ACCOUNTING = CommandResult(1, "", "sacct: error: Slurm accounting storage is disabled\n")
DOWN = CommandResult(1, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n")


def ok(stdout: str = "") -> CommandResult:
    return CommandResult(0, stdout, "")


class ScriptedTransport(HostTransport):
    """Slurm commands answer from scripts (the last answer repeats); everything else runs for real."""

    def __init__(self) -> None:
        self.answers: dict[str, deque] = defaultdict(deque)
        self.calls: list[tuple[str, list[str]]] = []

    def script(self, command: str, *answers) -> None:
        self.answers[command] = deque(answers)

    def run(self, command, *, env=None, check=True, timeout=None):
        argv = (
            shlex.split(command[len(SCRUB_SLURM_ENV_SHELL) :])
            if command.startswith(SCRUB_SLURM_ENV_SHELL)
            else []
        )
        if not argv or argv[0] not in SLURM_COMMANDS:
            return super().run(command, env=env, check=check, timeout=timeout)
        self.calls.append((argv[0], argv[1:]))
        queue = self.answers[argv[0]]
        answer = (queue.popleft() if len(queue) > 1 else queue[0]) if queue else ok()
        if isinstance(answer, BaseException):
            raise answer
        return answer(argv) if callable(answer) else answer

    def count(self, command: str) -> int:
        return sum(1 for name, _ in self.calls if name == command)


@pytest.fixture
def slurm(tmp_path):
    transport = ScriptedTransport()
    transport.script("sacct", NO_ACCOUNTING)
    transport.script("sbatch", ok("100\n"))
    return transport


@pytest.fixture
def clock() -> FakeClock:
    """The waiting engine's clock, advanced by hand or by the waits themselves: the scheduler here is
    scripted, so a wait's pauses (seconds of them) take no time and every one is on record."""
    return FakeClock(1000.0)


@pytest.fixture
def make(tmp_path, slurm, recorder, clock):
    def make(*, backend_clock=None, **options) -> Cluster:
        options = {"poll_interval_seconds": 0.05, "result_poll_interval_seconds": 0.02, **options}
        cluster = Cluster(
            SlurmBackend(slurm, clock=backend_clock or clock.now),
            {"type": "none"},
            [recorder],
            job_root=str(tmp_path / "jobs"),
            node_python=LOCAL_PYTHON,
            **options,
        )
        cluster._watcher.clock = clock
        return cluster

    return make


def squeue(*lines: str) -> CommandResult:
    return ok("".join(line + "\n" for line in lines))


def write_result(job, value, restarts: int = 0) -> None:
    HostTransport().write_bytes(layout.result_path(job.job_dir, 0), dump_result(value, restarts=restarts))


def test_a_result_file_ends_the_wait_without_asking_the_scheduler(make, slurm):
    slurm.script("squeue", squeue("100|RUNNING|None|0"))
    job = make(poll_interval_seconds=30).submit(tasks.add, 1, 2)
    write_result(job, 3)
    assert job.result(timeout=10) == 3
    assert job.last_state is JobState.COMPLETED
    assert slurm.count("squeue") == 0 and slurm.count("sacct") == 0


def test_a_result_file_wins_over_what_the_scheduler_says(make, slurm):
    job = make().submit(tasks.add, 1, 2)
    slurm.script(
        "squeue",
        squeue("100|PENDING|Priority|0"),
        squeue("100|RUNNING|None|0"),
        lambda argv: (write_result(job, 3), squeue("100|RUNNING|None|0"))[1],
    )
    assert job.result(timeout=10) == 3


def test_a_forgotten_job_without_result_fails_saying_so(make, slurm):
    slurm.script(
        "squeue",
        squeue("100|RUNNING|None|0"),
        CommandResult(1, "", "slurm_load_jobs error: Invalid job id specified\n"),
    )
    job = make().submit(tasks.add, 1, 2)
    with pytest.raises(
        JobFailedError,
        match=r"unknown to the scheduler \(last seen RUNNING; not listed by two "
        r"queries .*left no result",
    ) as info:
        job.result(timeout=20)
    assert info.value.state == "LOST" and job.last_state is JobState.LOST


def test_one_unknown_answer_is_not_final(make, slurm):
    """Right after submit (or with accounting lag) the scheduler may not list a job for a moment."""
    slurm.script("squeue", squeue(), squeue("100|COMPLETED|None|0"))
    job = make().submit(tasks.add, 1, 2)
    assert job.wait(timeout=10) is JobState.COMPLETED


def test_a_dependency_that_can_never_be_met_is_cancelled_and_names_the_parent(make, slurm):
    cluster = make()
    slurm.script("sbatch", ok("100\n"), ok("101\n"))
    parent = cluster.submit(tasks.add, 1, 2)
    child = cluster.submit(tasks.add.after(parent), 3, 4)
    slurm.script(
        "squeue",
        lambda argv: squeue("100|FAILED|NonZeroExitCode|0", "101|PENDING|DependencyNeverSatisfied|0"),
    )
    with pytest.raises(
        JobFailedError,
        match=r"job 101 \(add\) can never start: its dependency afterok on "
        r"job 100 \(FAILED\) cannot be satisfied.*cancelled it",
    ):
        child.result(timeout=10)
    assert ("scancel", ["101"]) in slurm.calls
    assert child.last_state is JobState.CANCELLED and child.depends_on == ("100",)


def test_only_jobs_sacct_calls_live_ask_squeue_in_one_call_and_a_wait_at_most_every_15s(make, slurm, clock):
    """sacct's PENDING or RUNNING is what slurmdbd last heard (its record of a start or an end can lag or be
    lost, e.g. when slurmctld dies before sending it): slurmctld, through squeue, decides for live jobs, and
    says why they pend. Only those jobs cost slurmctld a query, all in one squeue: on every query a caller
    makes, and at most once per CONFIRM_LIVE_EVERY on a wait's background polls."""
    now = [1000.0]
    cluster = make(backend_clock=lambda: now[0])
    slurm.script("sbatch", *(ok(f"{job_id}\n") for job_id in (100, 101, 102, 103)))
    slurm.script(
        "sacct",
        ok("100|RUNNING\n101|PENDING\n102|PENDING\n103|COMPLETED\n"),
        ok("100|RUNNING\n101|PENDING\n102|PENDING\n"),  # slurmdbd still has not heard of 101's start
    )
    slurm.script("squeue", squeue("100|RUNNING|None|0", "101|RUNNING|None|0", "102|PENDING|Dependency|0"))
    running, started, waiting, done = (cluster.submit(tasks.add, 1, 2) for _ in range(4))
    cluster._poll()
    [(_, argv)] = [call for call in slurm.calls if call[0] == "squeue"]
    assert argv[argv.index("-j") + 1] == "100,101,102"
    assert [job.last_state for job in (running, started, waiting, done)] == [
        JobState.RUNNING,
        JobState.RUNNING,
        JobState.PENDING,
        JobState.COMPLETED,
    ]

    def background_query(at: float) -> list[str]:
        slurm.calls.clear()
        now[0] = 1000.0 + at
        clock.advance(cluster._watcher.first_poll)  # sooner, the watcher would give the first answer again
        cluster._watcher.query(background=True)
        return [name for name, _ in slurm.calls]

    assert background_query(at=1) == ["sacct"] and started.last_state is JobState.PENDING  # sacct's word
    assert background_query(at=CONFIRM_LIVE_EVERY - 0.1) == ["sacct"]
    assert background_query(at=CONFIRM_LIVE_EVERY) == ["sacct", "squeue"]
    assert started.last_state is JobState.RUNNING
    assert background_query(at=CONFIRM_LIVE_EVERY + 1) == ["sacct"]
    slurm.calls.clear()
    clock.advance(cluster._watcher.first_poll)
    cluster._poll()  # a caller asking: confirmed now
    assert [name for name, _ in slurm.calls] == ["sacct", "squeue"]


SACCT_SAYS = {
    "PENDING": "100|PENDING\n",
    "RUNNING": "100|RUNNING\n",
    "COMPLETED": "100|COMPLETED\n",
    "NODE_FAIL": "100|NODE_FAIL\n",
    "nothing": "",
}


@given(
    st.lists(
        st.tuples(st.floats(0, 40), st.sampled_from(sorted(SACCT_SAYS)), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_squeue_confirms_a_live_job_on_a_background_poll_at_most_every_15s(polls):
    """Whatever sacct says from poll to poll, and however far apart the polls are: squeue is asked when
    sacct lacks the job or says something happened to it (NODE_FAIL), on every caller's query of a live job,
    and on a background poll of a live job only if the last confirmation is CONFIRM_LIVE_EVERY old."""
    transport, now = ScriptedTransport(), [0.0]
    backend = SlurmBackend(transport, clock=lambda: now[0])
    transport.script("squeue", squeue("100|RUNNING|None|0"))
    confirmed_at = None
    for gap, says, background in polls:
        now[0] += gap
        transport.script("sacct", ok(SACCT_SAYS[says]))
        transport.calls.clear()
        backend.statuses(["100"], background=background)
        live = says in ("PENDING", "RUNNING")
        due = not background or confirmed_at is None or now[0] - confirmed_at >= CONFIRM_LIVE_EVERY
        expected = says in ("NODE_FAIL", "nothing") or (live and due)
        assert transport.count("squeue") == int(expected), (now[0], says, background, confirmed_at)
        if expected and live:
            confirmed_at = now[0]


def test_a_job_sacct_calls_running_that_slurmctld_forgot_is_lost_not_waited_on_until_the_timeout(make, slurm):
    """slurmdbd never heard of the job's end (slurmctld died before sending it) and slurmctld has dropped
    the job since (MinJobAge): sacct says RUNNING forever. squeue no longer listing it twice ends the wait."""
    slurm.script("sacct", ok("100|RUNNING\n"))
    slurm.script("squeue", CommandResult(1, "", "slurm_load_jobs error: Invalid job id specified\n"))
    job = make().submit(tasks.add, 1, 2)
    with pytest.raises(
        JobFailedError,
        match=r"job 100 \(add\) is unknown to the scheduler .*sacct still says RUNNING: slurmdbd never heard "
        "of its end",
    ) as info:
        job.result(timeout=30)
    assert info.value.state == "LOST" and job.last_state is JobState.LOST


def test_a_job_sacct_calls_running_whose_end_slurmctld_knows_ends_as_slurmctld_says(make, slurm):
    slurm.script("sacct", ok("100|RUNNING\n"))
    slurm.script("squeue", squeue("100|TIMEOUT|TimeLimit|0"))
    job = make().submit(tasks.add, 1, 2)
    with pytest.raises(JobFailedError, match="ended TIMEOUT without a result"):
        job.result(timeout=30)


def test_a_requeue_is_reported_once_through_state_and_callback(make, slurm, recorder):
    requeues = []
    recorder.on_requeue = lambda job, count: requeues.append((job.job_id, count))
    job = make().submit(tasks.add, 1, 2)
    slurm.script(
        "squeue",
        squeue("100|RUNNING|None|0"),
        squeue("100|PENDING|BeginTime|1"),
        squeue("100|RUNNING|None|1"),
        squeue("100|RUNNING|None|1"),
        lambda argv: (write_result(job, 3), squeue("100|RUNNING|None|1"))[1],
    )
    assert job.result(timeout=10) == 3
    assert requeues == [("100", 1)] and job.restarts == 1
    states = [event[3] for event in recorder.events if event[0] == "state"]
    assert states == ["RUNNING", "REQUEUED", "PENDING", "RUNNING", "COMPLETED"]


def test_sacct_duplicates_count_the_runs_of_a_requeued_job(make, slurm):
    # An end (squeue would confirm a live state, and answer with its own restart count).
    slurm.script("sacct", ok("100|NODE_FAIL\n100|REQUEUED\n100|COMPLETED\n"))
    job = make().submit(tasks.add, 1, 2)
    assert job.query_state() is JobState.COMPLETED and job.restarts == 2
    assert slurm.count("squeue") == 0


def test_transient_scheduler_errors_are_outlasted(make, slurm):
    slurm.script("squeue", DOWN, DOWN, DOWN, squeue("100|FAILED|NonZeroExitCode|0"))
    job = make().submit(tasks.add, 1, 2)
    with pytest.raises(JobFailedError, match="ended FAILED without a result"):
        job.result(timeout=20)
    assert slurm.count("squeue") == 4


def test_an_outage_does_not_hide_a_job_that_completed(make, slurm):
    slurm.script("squeue", DOWN)
    job = make().submit(tasks.add, 1, 2)
    slurm.script("squeue", DOWN, DOWN, lambda argv: (write_result(job, 3), DOWN)[1], DOWN)
    assert job.result(timeout=20) == 3


def test_timeout_message_says_how_old_the_last_answer_is(make, slurm):
    slurm.script("squeue", squeue("100|RUNNING|None|0"))
    job = make().submit(tasks.add, 1, 2)
    with pytest.raises(
        JobTimeoutError,
        match=r"did not finish within 0.5s: still RUNNING as of \d+s ago; "
        r"call job.cancel\(\)",
    ) as info:
        job.result(timeout=0.5)
    assert info.value.state == "RUNNING"


def test_timeout_message_says_the_scheduler_is_silent(make, slurm):
    slurm.script("squeue", squeue("100|PENDING|Priority|0"), DOWN)
    job = make().submit(tasks.add, 1, 2)
    with pytest.raises(
        JobTimeoutError,
        match=r"still PENDING as of \d+s ago; the scheduler has not answered for "
        r"\d+s \(last error: squeue failed .*Unable to contact",
    ):
        job.result(timeout=1)


def test_without_a_timeout_an_endless_outage_still_ends_the_wait(make, slurm):
    slurm.script("squeue", DOWN)
    job = make(outage_limit_seconds=0.5).submit(tasks.add, 1, 2)
    with pytest.raises(
        BackendError,
        match=r"gave up waiting for job 100: the scheduler has not answered for "
        r".*outage_limit_seconds=0.5s",
    ):
        job.result()


def test_a_permanent_scheduler_error_is_raised_at_once(make, slurm):
    slurm.script("squeue", CommandResult(1, "", "squeue: error: Invalid user: nobody\n"))
    job = make().submit(tasks.add, 1, 2)
    with pytest.raises(BackendError, match="Invalid user"):
        job.result(timeout=20)


def test_one_query_covers_every_unfinished_job_of_the_cluster(make, slurm):
    cluster = make()
    slurm.script("sbatch", ok("100\n"), ok("101\n"), ok("102\n"))
    jobs = [cluster.submit(tasks.add, i, i) for i in range(3)]
    slurm.script("squeue", squeue("100|COMPLETED|None|0", "101|RUNNING|None|0", "102|PENDING|Priority|0"))
    jobs[0].wait(timeout=10)
    [(_, argv)] = [call for call in slurm.calls if call[0] == "squeue"]
    assert argv[argv.index("-j") + 1] == "100,101,102"
    assert [job.last_state for job in jobs] == [JobState.COMPLETED, JobState.RUNNING, JobState.PENDING]


@pytest.fixture
def slow_cluster(make, slurm, clock) -> Cluster:
    """A cluster asking slowly (poll_interval_seconds 30 s) about job 100, on the fake clock."""
    slurm.script("squeue", squeue("100|RUNNING|None|0"))
    return make(poll_interval_seconds=30)


def test_the_cadence_backs_off_to_poll_interval_within_a_minute(slow_cluster, slurm, clock):
    cluster = slow_cluster
    job = cluster.submit(tasks.add, 1, 2)
    asked_at = []
    while clock.elapsed < 180:
        before = slurm.count("squeue")
        cluster._watcher.query_if_due([job])
        if slurm.count("squeue") > before:
            asked_at.append(clock.elapsed)
        clock.advance(0.1)
    first_minute = [t for t in asked_at if t <= 60]
    assert 6 <= len(first_minute) <= 10, asked_at
    gaps = [b - a for a, b in itertools.pairwise(asked_at)]
    assert gaps[-1] == pytest.approx(30, abs=0.2) and all(gap <= 30.2 for gap in gaps)
    assert all(gap == pytest.approx(30, abs=0.2) for gap, t in zip(gaps, asked_at[1:], strict=True) if t > 90)


def test_a_lost_sbatch_answer_is_looked_up_not_resubmitted(make, slurm):
    def squeue_me(argv):
        script = next(
            path for _, args in slurm.calls if _ == "sbatch" for path in args if path.endswith("job.sh")
        )
        return squeue(f"4242|{script}", "77|/elsewhere/job.sh")

    slurm.script("sbatch", SSHError("connection dropped while running: sbatch ...", transient=True))
    slurm.script("squeue", squeue_me)
    job = make().submit(tasks.add, 1, 2)
    assert job.job_id == "4242" and slurm.count("sbatch") == 1


@pytest.fixture
def quick_backoff(monkeypatch):
    """Retries of transient errors back off as in the SDK, at a hundredth of the pace (5 ms doubling,
    not 0.5 s): what is retried and what is reported is the point here, not how long the pauses are."""
    from tenacity import wait_exponential, wait_random

    import slurm.retrying

    monkeypatch.setattr(
        slurm.retrying, "_BACKOFF", wait_exponential(multiplier=0.005, max=0.1) + wait_random(0, 0.005)
    )


@pytest.mark.usefixtures("quick_backoff")
def test_a_lost_sbatch_answer_for_a_job_that_does_not_exist_is_retried(make, slurm):
    slurm.script(
        "sbatch", SSHError("connection dropped while running: sbatch ...", transient=True), ok("55\n")
    )
    slurm.script("squeue", squeue("77|/elsewhere/job.sh"))
    assert make().submit(tasks.add, 1, 2).job_id == "55"
    assert slurm.count("sbatch") == 2


@pytest.mark.usefixtures("quick_backoff")
def test_sbatch_refusing_for_a_transient_reason_is_retried_then_reported(make, slurm):
    refused = CommandResult(
        1,
        "",
        "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n",
    )
    slurm.script("sbatch", refused, ok("56\n"))
    assert make().submit(tasks.add, 1, 2).job_id == "56"
    slurm.script("sbatch", CommandResult(1, "", "sbatch: error: Invalid partition name specified\n"))
    with pytest.raises(Exception, match="Invalid partition"):
        make().submit(tasks.add, 1, 2)
    assert slurm.count("sbatch") == 3


def test_a_frozen_ssh_server_cannot_hold_a_bounded_call(tmp_path):
    """A server that accepts TCP but never speaks (like a paused login node): the caller's deadline wins
    over the transport's own connect timeout."""
    import socket

    from slurm.deadline import bounded
    from slurm.transports.ssh import SSHTransport

    key = tmp_path / "key"
    key.write_text("unused")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        transport = SSHTransport(
            "127.0.0.1", server.getsockname()[1], "sdk", str(key), trust_unknown_host=True, connect_timeout=60
        )
        started = time.monotonic()
        with bounded(0.5), pytest.raises(SSHError) as info:
            transport.run("true")
        assert time.monotonic() - started < 5
        assert info.value.transient


@pytest.mark.parametrize(
    ("task", "args", "code", "how"),
    [
        (tasks.call_sys_exit, (0,), 0, r"called sys.exit\(0\)"),
        (tasks.call_sys_exit, (3,), 3, r"called sys.exit\(3\)"),
        (tasks.call_sys_exit, ("bye",), "bye", r"called sys.exit\('bye'\)"),
        (tasks.interrupt, (), None, "raised KeyboardInterrupt"),
    ],
)
def test_a_task_exiting_arrives_as_job_failed_with_its_code(cluster, task, args, code, how):
    job = cluster.submit(task, *args)
    with pytest.raises(JobFailedError, match=how) as info:
        job.result(timeout=30)
    assert info.value.exit_code == code and job.last_state is JobState.FAILED
    assert "SystemExit" in str(info.value.__cause__) or "KeyboardInterrupt" in str(info.value.__cause__)


def test_an_array_whose_dependency_can_never_be_met_is_cancelled_once(make, slurm):
    cluster = make()
    slurm.script("sbatch", ok("100\n"), ok("101\n"))
    slurm.script("sacct", ok("100|FAILED\n101_[0-2]|PENDING\n"))
    slurm.script("squeue", squeue(*(f"101_{i}|PENDING|DependencyNeverSatisfied|0" for i in range(3))))
    parent = cluster.submit(tasks.add, 1, 2)
    children = cluster.map(tasks.square.after(parent), range(3))
    with pytest.raises(JobFailedError, match=r"job 101_0 \(square\) can never start.*job 100 \(FAILED\)"):
        children.results(timeout=10)
    assert [args for name, args in slurm.calls if name == "scancel"] == [["101"]]
    assert children.query_states() == [JobState.CANCELLED] * 3


def test_an_older_job_with_the_same_id_is_not_a_requeue(make, slurm):
    slurm.script("sacct", ok("100|COMPLETED\n100|RUNNING\n"))
    slurm.script("squeue", squeue("100|RUNNING|None|0"))
    job = make().submit(tasks.add, 1, 2)
    assert job.query_state() is JobState.RUNNING and job.restarts == 0


def test_asking_for_the_state_in_a_loop_asks_the_scheduler_at_most_once_a_second(make, slurm, clock):
    slurm.script("squeue", squeue("100|RUNNING|None|0"))
    job = make(poll_interval_seconds=30).submit(tasks.add, 1, 2)
    while clock.elapsed < 1.5:
        assert job.query_state() is JobState.RUNNING
        clock.advance(0.01)
    assert 1 <= slurm.count("squeue") <= 2


def test_a_callers_timeout_outlasts_outage_limit(make, slurm):
    """outage_limit_seconds only bounds waits that have no timeout of their own."""
    slurm.script("squeue", DOWN)
    job = make(outage_limit_seconds=0.3).submit(tasks.add, 1, 2)
    with pytest.raises(JobTimeoutError, match="the scheduler has not answered for"):
        job.result(timeout=1.5)


def test_a_dependent_slurm_cancelled_itself_still_names_the_parent(make, slurm):
    """kill_invalid_depend: Slurm cancels the dependent at once, with the same reason."""
    cluster = make()
    slurm.script("sbatch", ok("100\n"), ok("101\n"))
    parent = cluster.submit(tasks.add, 1, 2)
    child = cluster.submit(tasks.add.after(parent), 3, 4)
    slurm.script("squeue", squeue("100|FAILED|NonZeroExitCode|0", "101|CANCELLED|DependencyNeverSatisfied|0"))
    with pytest.raises(
        JobFailedError, match=r"job 100 \(FAILED\) cannot be satisfied.*so Slurm cancelled it"
    ):
        child.result(timeout=10)
    assert slurm.count("scancel") == 0


def test_a_lost_sbatch_answer_for_a_job_that_already_ended_is_found_by_its_logs(make, slurm):
    def run_then_drop(argv):
        job_dir = posixpath.dirname(argv[-1])
        HostTransport().write_bytes(posixpath.join(job_dir, "slurm-4243.out"), b"")
        raise SSHError("connection dropped while running: sbatch ...", transient=True)

    slurm.script("sbatch", run_then_drop)
    slurm.script("squeue", squeue("77|/elsewhere/job.sh"))
    assert make().submit(tasks.add, 1, 2).job_id == "4243"
    assert slurm.count("sbatch") == 1


def test_a_requeue_between_polls_is_reported_from_the_result_file(make, slurm, recorder):
    """The rerun may end before any query sees the restart count: the runner wrote SLURM_RESTART_COUNT."""
    requeues = []
    recorder.on_requeue = lambda job, count: requeues.append(count)
    job = make(poll_interval_seconds=30).submit(tasks.add, 1, 2)
    write_result(job, 3, restarts=2)
    assert job.result(timeout=10) == 3
    assert requeues == [2] and job.restarts == 2 and slurm.count("squeue") == 0
    assert [event[3] for event in recorder.events if event[0] == "state"] == ["REQUEUED", "COMPLETED"]


def test_a_requeue_is_counted_from_the_result_file_when_a_query_saw_the_end_first(make, slurm):
    """The scheduler's status may say COMPLETED before the result file is read (a local job's status carries
    no restart count): the run that wrote the result still tells how often the job was requeued."""
    job = make(poll_interval_seconds=30).submit(tasks.add, 1, 2)
    job._observe(JobStatus(JobState.COMPLETED, ""))
    write_result(job, 3, restarts=2)
    assert job.result(timeout=10) == 3
    assert job.restarts == 2


def test_the_runner_records_the_restart_count(tmp_path, monkeypatch, capsys):
    from slurm.node import runner
    from slurm.serialization import Outcome, dump_payload

    pathlib.Path(layout.payload_path(str(tmp_path))).write_bytes(
        dump_payload(tasks.add, [((1, 2), {})], lambda: LOCAL_PYTHON)
    )
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert runner.main([str(tmp_path)]) == 0
    assert Outcome.load(pathlib.Path(layout.result_path(str(tmp_path), 0)).read_bytes()).restarts == 1
    assert "run 2 (requeued 1x)" in capsys.readouterr().err


TERMINAL_ANSWERS = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
ANSWERS = ("PENDING", "RUNNING", "UNKNOWN", "DOWN", *TERMINAL_ANSWERS)


def expected_ending(answers: list[str], file_step: int | None) -> tuple[str, str]:
    """What a wait must end with when the scheduler answers ``answers`` (the last one repeating) and the
    result file appears during query ``file_step``: ("value", _), ("failed", state), ("lost", _) or
    ("timeout", what the message must say)."""
    unknown_before, last_known = False, None
    for step, answer in enumerate(answers):
        has_file = file_step is not None and step >= file_step
        if answer in TERMINAL_ANSWERS:
            return ("value", "") if has_file else ("failed", answer)
        if answer == "UNKNOWN":
            if has_file:
                return "value", ""
            if unknown_before:
                return "lost", ""
            unknown_before = True
        elif answer != "DOWN":
            unknown_before, last_known = False, answer
        if has_file:
            return "value", ""
    final = answers[-1]
    if final == "UNKNOWN":
        return "lost", ""
    return "timeout", "has not answered" if final == "DOWN" else f"still {last_known}"


def scheduler_answer(answer: str) -> CommandResult:
    if answer == "DOWN":
        return DOWN
    if answer == "UNKNOWN":
        return CommandResult(1, "", "slurm_load_jobs error: Invalid job id specified\n")
    return squeue(f"100|{answer}|None|0")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=st.lists(st.sampled_from(ANSWERS), min_size=1, max_size=5), file_at=st.integers(0, 6))
def test_every_wait_ends_with_the_truth(make, slurm, clock, monkeypatch, answers, file_at):
    """Any sequence of scheduler answers, transient failures and a result file appearing at any point:
    the wait ends, and how it ends follows from what was said (the result file always wins)."""
    monkeypatch.setattr("slurm.waiting.LOST_AFTER", 0.0)  # a second unlisted answer is final at once
    file_step = file_at if file_at < len(answers) else None
    kind, text = expected_ending(answers, file_step)
    job = make(poll_interval_seconds=0.02, result_poll_interval_seconds=0.02).submit(tasks.add, 1, 2)

    def answer_at(step: int, answer: str):
        def respond(argv):
            if step == file_step:
                write_result(job, 3)
            return scheduler_answer(answer)

        return respond

    slurm.script("squeue", *(answer_at(step, answer) for step, answer in enumerate(answers)))
    timeout = 1.0 if kind == "timeout" else 20.0
    started = clock.now()
    if kind == "value":
        assert job.result(timeout=timeout) == 3
    elif kind == "failed":
        with pytest.raises(JobFailedError, match=f"ended {text} without a result"):
            job.result(timeout=timeout)
    elif kind == "lost":
        with pytest.raises(JobFailedError, match="unknown to the scheduler"):
            job.result(timeout=timeout)
    else:
        with pytest.raises(JobTimeoutError, match=text):
            job.result(timeout=timeout)
    assert clock.now() - started <= timeout  # by the wait's own clock: it ends by its deadline


def test_a_stream_of_submissions_does_not_postpone_the_next_query(slow_cluster, clock):
    cluster = slow_cluster
    job = cluster.submit(tasks.add, 1, 2)
    cluster._watcher.query([job])  # the ramp is under way: next query planned 1 s later
    planned = cluster._watcher.next_query_at
    for _ in range(5):
        clock.advance(0.5)
        cluster.submit(tasks.add, 1, 2)
    assert cluster._watcher.next_query_at <= planned


def test_preempted_is_not_final_for_a_job_slurm_requeues(make, slurm, recorder):
    job = make().submit(tasks.add, 1, 2)
    slurm.script(
        "squeue",
        squeue("100|RUNNING|None|0"),
        squeue("100|PREEMPTED|None|0"),
        squeue("100|PENDING|BeginTime|1"),
        lambda argv: (write_result(job, 3, restarts=1), squeue("100|RUNNING|None|1"))[1],
    )
    assert job.result(timeout=10) == 3 and job.restarts == 1
    states = [event[3] for event in recorder.events if event[0] == "state"]
    assert states[:3] == ["RUNNING", "PREEMPTED", "REQUEUED"] and states[-1] == "COMPLETED"


def test_a_job_that_stays_preempted_fails_saying_why(make, slurm, monkeypatch):
    monkeypatch.setattr("slurm.waiting.PREEMPTED_FINAL_AFTER", 0.3)
    slurm.script("squeue", squeue("100|PREEMPTED|None|0"))
    job = make().submit(tasks.add, 1, 2)
    with pytest.raises(
        JobFailedError, match=r"was preempted and not requeued \(still PREEMPTED after"
    ) as info:
        job.result(timeout=20)
    assert info.value.state == "PREEMPTED" and job.last_state is JobState.FAILED


def test_each_result_check_asks_for_and_fetches_only_what_it_has_not_fetched(make, slurm):
    """The second check of a map's wait names only the tasks still unfinished, and fetches only the results
    that appeared since the first: a long map's checks do not grow with what has finished."""
    slurm.script("squeue", lambda argv: squeue(*(f"100_{i}|RUNNING|None|0" for i in range(20))))
    jobs = make(poll_interval_seconds=30).map(tasks.square, range(20))
    asked, fetched = [], []
    read_existing = slurm.read_existing

    def fetch(paths):
        asked.append(list(paths))
        found = read_existing(paths)
        fetched.append(list(found))
        return found

    slurm.read_existing = fetch
    for job in jobs[:10]:
        HostTransport().write_bytes(job._result_path, dump_result(job._index**2))
    seen = []
    for job in as_completed([jobs], timeout=10):
        seen.append(job)
        if len(seen) == 10:  # between two checks, the other half finishes
            for later in jobs[10:]:
                HostTransport().write_bytes(later._result_path, dump_result(later._index**2))
    paths = [job._result_path for job in jobs]
    assert asked == [paths, paths[10:]]
    assert fetched == [paths[:10], paths[10:]]  # each result once, when it is new
    assert jobs.results(timeout=10) == [i * i for i in range(20)] and len(asked) == 2
