"""SlurmBackend against fake sbatch/sacct/squeue/scancel/scontrol scripts on PATH (through HostTransport).

Each fake records its argv and SLURM_* environment, then prints what the test put in ``<name>.out`` /
``<name>.err`` and exits with ``<name>.rc``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from slurm.backends.base import JobState, JobStatus
from slurm.backends.slurm import SlurmBackend, expand_job_ids, killed_for_memory, parse_slurm_state
from slurm.errors import BackendError, SubmitError
from slurm.transports.host import HostTransport

FAKE = """#!/bin/sh
d="{dir}"
name=$(basename "$0")
echo "$name" >> "$d/calls.log"
: > "$d/$name.argv"
for arg in "$@"; do printf '%s\\n' "$arg" >> "$d/$name.argv"; done
env | grep '^SLURM_' | sort > "$d/$name.env"
[ -f "$d/$name.out" ] && cat "$d/$name.out"
[ -f "$d/$name.err" ] && cat "$d/$name.err" >&2
exit $(cat "$d/$name.rc" 2>/dev/null || echo 0)
"""
COMMANDS = ("sbatch", "sacct", "squeue", "scancel", "scontrol")
SQUEUE_FIELDS = "JobArrayID:|,State:|,Reason:|,RestartCnt:"


class FakeSlurm:
    def __init__(self, root: Path) -> None:
        self.dir = root
        for name in COMMANDS:
            script = root / name
            script.write_text(FAKE.format(dir=root))
            script.chmod(0o755)

    def respond(self, name: str, out: str = "", err: str = "", rc: int = 0) -> None:
        (self.dir / f"{name}.out").write_text(out)
        (self.dir / f"{name}.err").write_text(err)
        (self.dir / f"{name}.rc").write_text(str(rc))

    def argv(self, name: str) -> list[str]:
        return (self.dir / f"{name}.argv").read_text().splitlines()

    def calls(self) -> list[str]:
        log = self.dir / "calls.log"
        return log.read_text().split() if log.exists() else []

    def env(self, name: str) -> list[str]:
        return (self.dir / f"{name}.env").read_text().splitlines()


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakeSlurm:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return FakeSlurm(bin_dir)


@pytest.fixture
def backend(fake) -> SlurmBackend:
    return SlurmBackend(HostTransport())


def test_submit_passes_array_dependencies_and_extra_and_parses_cluster_suffix(fake):
    fake.respond("sbatch", out="4242;linux\n")
    backend = SlurmBackend(HostTransport(), sbatch_extra=("--qos=low",))
    job_id = backend.submit("/jobs/my dir/job.sh", array="0-9%2", dependencies=["17", "18_3"])
    assert job_id == "4242"
    assert fake.argv("sbatch") == [
        "--parsable",
        "--qos=low",
        "--array=0-9%2",
        "--dependency=afterok:17:18_3",
        "/jobs/my dir/job.sh",
    ]


def test_submit_plain_and_dependency_type(backend, fake):
    fake.respond("sbatch", out="7\n")
    assert backend.submit("/j.sh", dependencies=["5"], dependency_type="afterany") == "7"
    assert fake.argv("sbatch") == ["--parsable", "--dependency=afterany:5", "/j.sh"]


def test_submit_error_carries_stderr_and_command(backend, fake):
    fake.respond(
        "sbatch", err="sbatch: error: Batch job submission failed: Invalid partition name specified\n", rc=1
    )
    with pytest.raises(SubmitError) as info:
        backend.submit("/j.sh", array="0-3")
    message = str(info.value)
    assert "Invalid partition name specified" in message and "sbatch --parsable --array=0-3 /j.sh" in message


def test_submit_garbage_output_is_an_error(backend, fake):
    fake.respond("sbatch", out="Submitted batch job to nowhere\n")
    with pytest.raises(SubmitError, match="nowhere"):
        backend.submit("/j.sh")


def test_commands_drop_the_enclosing_allocation_but_keep_conf_and_sdk_settings(fake):
    class InsideAllocation(HostTransport):
        """The shell of a job: Slurm's variables for the running job are set."""

        def run(self, command: str, *, env: Mapping[str, str] | None = None, **kw):
            allocation = {
                "SLURM_JOB_ID": "99",
                "SLURM_NODELIST": "c1",
                "SLURM_CONF": "/etc/slurm/slurm.conf",
                "SLURM_SDK_JOB_ROOT": "/jobs",
            }
            return super().run(command, env={**allocation, **(env or {})}, **kw)

    fake.respond("sbatch", out="8\n")
    SlurmBackend(InsideAllocation()).submit("/j.sh")
    # Only the allocation's variables are looked at: the shell running the tests may set others
    # (SLURM_SDK_PROJECT, say), which pass through as they should.
    allocation_names = ("SLURM_JOB_ID=", "SLURM_NODELIST=", "SLURM_CONF=", "SLURM_SDK_JOB_ROOT=")
    passed = [e for e in fake.env("sbatch") if e.startswith(allocation_names)]
    assert passed == ["SLURM_CONF=/etc/slurm/slurm.conf", "SLURM_SDK_JOB_ROOT=/jobs"]


def test_states_of_many_jobs_in_one_sacct_call(backend, fake):
    fake.respond(
        "sacct",
        out="10|COMPLETED\n11|CANCELLED by 0\n12|RUNNING\n13_1|FAILED\n13_[2-4%1]|PENDING\n"
        "14|OUT_OF_MEMORY\n",
    )
    fake.respond(
        "squeue",
        out="12|RUNNING|None|0\n13_1|FAILED|NonZeroExitCode|0\n13_[2-4%1]|PENDING|JobArrayTaskLimit|0\n",
    )
    ids = ["10", "11", "12", "13_1", "13_3", "14"]
    assert backend.states([*ids, "10"]) == {
        "10": JobState.COMPLETED,
        "11": JobState.CANCELLED,
        "12": JobState.RUNNING,
        "13_1": JobState.FAILED,
        "13_3": JobState.PENDING,
        "14": JobState.OUT_OF_MEMORY,
    }
    # Array tasks are asked for by their array's id (sacct lists every task of it); squeue only about
    # the jobs sacct says are live (slurmctld knows whether they still are).
    assert fake.calls() == ["sacct", "squeue"]
    assert fake.argv("sacct") == ["-X", "-D", "-n", "-P", "-j", "10,11,12,13,14", "-o", "JobID,State"]
    assert fake.argv("squeue")[4] == "12,13"


def test_a_big_array_is_polled_by_its_id_not_task_by_task(backend, fake):
    fake.respond("sacct", out="".join(f"77_{i}|COMPLETED\n" for i in range(990)) + "77_[990-999]|PENDING\n")
    fake.respond("squeue", out="77_[990-999]|PENDING|Resources|0\n")
    states = backend.states([f"77_{i}" for i in range(1000)])
    assert [states[f"77_{i}"] for i in (0, 989, 990, 999)] == [JobState.COMPLETED] * 2 + [
        JobState.PENDING
    ] * 2
    assert fake.calls() == ["sacct", "squeue"] and fake.argv("sacct")[5] == fake.argv("squeue")[4] == "77"


def test_states_are_batched_by_poll_batch(fake):
    fake.respond("sacct", out="".join(f"{i}|COMPLETED\n" for i in range(5)))
    states = SlurmBackend(HostTransport(), job_ids_per_query=2).states([str(i) for i in range(5)])
    assert set(states.values()) == {JobState.COMPLETED} and len(states) == 5
    assert fake.calls() == ["sacct"] * 3
    assert fake.argv("sacct")[5] == "4"


@pytest.mark.parametrize(
    "said",
    [
        {"err": "Slurm accounting storage is disabled\n", "rc": 1},
        {"out": "Slurm accounting storage is disabled\n", "rc": 0},
    ],
)
def test_without_accounting_squeue_answers_and_sacct_is_not_asked_again(backend, fake, said):
    fake.respond("sacct", **said)
    fake.respond("squeue", out="20|COMPLETED\n21|PENDING\n22_[0-2]|PENDING\n")
    expected = {"20": JobState.COMPLETED, "21": JobState.PENDING, "22_1": JobState.PENDING}
    assert backend.states(["20", "21", "22_1"]) == expected
    assert backend.states(["20", "21", "22_1"]) == expected
    assert fake.calls() == ["sacct", "squeue", "squeue"]
    assert fake.argv("squeue") == ["--states=all", "-h", "-r", "-j", "20,21,22", "-O", SQUEUE_FIELDS]


def test_missing_sacct_command_falls_back_to_squeue(backend, fake):
    os.remove(fake.dir / "sacct")
    fake.respond("squeue", out="5|RUNNING\n")
    assert backend.states(["5"]) == {"5": JobState.RUNNING}
    assert backend.states(["5"]) == {"5": JobState.RUNNING}
    assert fake.calls() == ["squeue", "squeue"]


def test_passing_sacct_trouble_uses_squeue_once_and_keeps_sacct(backend, fake):
    fake.respond("sacct", err="sacct: error: Problem talking to the database: Connection refused\n", rc=1)
    fake.respond("squeue", out="5|RUNNING\n")
    assert backend.states(["5"]) == {"5": JobState.RUNNING}
    fake.respond("sacct", out="5|COMPLETED\n")
    assert backend.states(["5"]) == {"5": JobState.COMPLETED}
    assert fake.calls() == ["sacct", "squeue", "sacct"]


def test_jobs_sacct_does_not_know_yet_are_asked_from_squeue(backend, fake):
    fake.respond("sacct", out="30|COMPLETED\n")
    fake.respond("squeue", out="31|PENDING\n")
    assert backend.states(["30", "31", "32"]) == {
        "30": JobState.COMPLETED,
        "31": JobState.PENDING,
        "32": JobState.UNKNOWN,
    }
    assert fake.argv("squeue")[4] == "31,32"


@pytest.mark.parametrize("sacct", ["21_1|RUNNING\n", "21_1|PENDING\n"])
def test_an_array_task_sacct_does_not_list_yet_is_asked_from_squeue_by_its_array(backend, fake, sacct):
    """slurmdbd hears of a task's start and end late (Slurm 22.05 under load: the ended task 0 missing
    while task 1 was listed); squeue answers for the whole array in one call."""
    fake.respond("sacct", out=sacct)
    fake.respond("squeue", out="21_0|COMPLETED|None|0\n21_1|RUNNING|None|0\n")
    assert backend.states(["21_0", "21_1"]) == {"21_0": JobState.COMPLETED, "21_1": JobState.RUNNING}
    assert fake.calls() == ["sacct", "squeue"] and fake.argv("squeue")[4] == "21"


def test_a_node_failure_sacct_reports_before_the_requeue_is_confirmed_by_squeue(backend, fake):
    """Slurm 22.05 under load: right after a node failure sacct lists the failed run alone (NODE_FAIL,
    terminal) while slurmctld has already requeued the job; squeue says so, with the restart count."""
    fake.respond("sacct", out="30|NODE_FAIL\n")
    fake.respond("squeue", out="30|PENDING|BeginTime|1\n")
    [status] = backend.statuses(["30"]).values()
    assert (status.state, status.restarts) == (JobState.PENDING, 1)
    fake.respond("squeue", err="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    assert backend.states(["30"]) == {"30": JobState.NODE_FAIL}  # not requeued, and forgotten by now


def test_squeue_invalid_id_means_unknown_other_errors_raise(backend, fake):
    backend._use_sacct = False
    fake.respond("squeue", err="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    assert backend.states(["999"]) == {"999": JobState.UNKNOWN}
    fake.respond("squeue", err="slurm_load_jobs error: Unable to contact slurm controller\n", rc=1)
    with pytest.raises(BackendError, match="Unable to contact slurm controller"):
        backend.states(["999"])


def test_array_base_id_summarises_its_tasks(backend, fake):
    fake.respond(
        "sacct", out="40_0|COMPLETED\n40_1|RUNNING\n41_0|COMPLETED\n41_1|TIMEOUT\n42_[0-3]|PENDING\n"
    )
    fake.respond("squeue", out="40_1|RUNNING|None|0\n42_[0-3]|PENDING|Priority|0\n")
    assert backend.states(["40", "41", "42"]) == {
        "40": JobState.RUNNING,
        "41": JobState.TIMEOUT,
        "42": JobState.PENDING,
    }


def test_cancel_runs_scancel_and_tolerates_finished_jobs(backend, fake):
    backend.cancel("50_2")
    assert fake.argv("scancel") == ["50_2"]
    fake.respond(
        "scancel",
        err="scancel: error: Kill job error on job id 51: Job/step already completing or completed\n",
        rc=1,
    )
    backend.cancel("51")
    fake.respond("scancel", err="scancel: error: Unable to contact slurm controller\n", rc=1)
    with pytest.raises(BackendError, match="Unable to contact"):
        backend.cancel("52")


def test_max_array_size_read_once_from_scontrol(backend, fake):
    fake.respond(
        "scontrol",
        out="Configuration data as of now\nMaxArraySize            = 40001\n"
        "MaxJobCount             = 10000\n",
    )
    assert backend.max_array_size() == 40001
    assert backend.max_array_size() == 40001
    assert fake.calls() == ["scontrol"]
    assert fake.argv("scontrol") == ["show", "config"]


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("PENDING", JobState.PENDING),
        ("REQUEUED", JobState.REQUEUED),
        ("CONFIGURING", JobState.PENDING),
        ("RUNNING", JobState.RUNNING),
        ("SUSPENDED", JobState.RUNNING),
        ("COMPLETING", JobState.COMPLETING),
        ("COMPLETED", JobState.COMPLETED),
        ("FAILED", JobState.FAILED),
        ("PREEMPTED", JobState.PREEMPTED),
        ("CANCELLED by 1000", JobState.CANCELLED),
        ("CANCELLED+", JobState.CANCELLED),
        ("TIMEOUT", JobState.TIMEOUT),
        ("DEADLINE", JobState.TIMEOUT),
        ("OUT_OF_MEMORY", JobState.OUT_OF_MEMORY),
        ("NODE_FAIL", JobState.NODE_FAIL),
        ("BOOT_FAIL", JobState.NODE_FAIL),
        ("WHATEVER", JobState.UNKNOWN),
        ("", JobState.UNKNOWN),
    ],
)
def test_slurm_states_map_to_job_states(text, state):
    assert parse_slurm_state(text) is state


def test_array_ranges_expand():
    assert expand_job_ids("9_[1,3-5%2]") == ["9_1", "9_3", "9_4", "9_5"]
    assert expand_job_ids("9_7") == ["9_7"] and expand_job_ids("9") == ["9"]


@pytest.mark.parametrize(
    "stderr, killed",
    [
        # jobacct_gather OverMemoryKill (the dev cluster: no cgroups), as slurmstepd 24.11 writes it
        (
            "slurmstepd-c1: error: StepId=10.batch exceeded memory limit (430116864 > 52428800), being killed\n"
            "slurmstepd-c1: error: *** JOB 10 ON c1 CANCELLED AT 2026-11-25T23:10:59 ***",
            True,
        ),
        # the same, as slurmstepd 26.05 (Debian forky) writes it: a timestamp instead of its name
        (
            "[2026-11-26T05:37:21.625] error: StepId=8.batch exceeded memory limit (436158464 > 52428800), "
            "being killed\n[2026-11-26T05:37:21.630] error: *** JOB 8 ON c2 CANCELLED AT 2026-11-26T05:37:21 ***",
            True,
        ),
        # the cgroup OOM killer on production clusters
        (
            "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=3.batch. Some of your processes may have "
            "been killed by the cgroup out-of-memory handler.",
            True,
        ),
        # the task's own words are not Slurm's verdict
        ("Traceback (most recent call last):\nMemoryError", False),
        ("print('exceeded memory limit')", False),
        ("my log: [2026-11-26T05:37:21] error: exceeded memory limit", False),
        ("", False),
    ],
)
def test_memory_kills_are_recognised_from_slurmstepd_lines(stderr, killed):
    assert killed_for_memory(stderr) is killed


def test_a_job_sacct_calls_live_that_squeue_no_longer_lists_is_unknown_and_asked_on_every_poll(fake):
    """slurmdbd never heard of the job's end and slurmctld has forgotten it (MinJobAge): UNKNOWN, with
    sacct's word, and squeue is asked again on the next poll, due or not, so a wait can confirm it."""
    now = [0.0]
    backend = SlurmBackend(HostTransport(), clock=lambda: now[0])
    fake.respond("sacct", out="30|RUNNING\n")
    fake.respond("squeue", err="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    assert backend.statuses(["30"], background=True) == {
        "30": JobStatus(JobState.UNKNOWN, "sacct still says RUNNING")
    }
    now[0] += 1
    assert backend.statuses(["30"], background=True)["30"].state is JobState.UNKNOWN
    fake.respond("squeue", out="30|RUNNING|None|0\n")  # listed again: confirmed on the cadence only
    now[0] += 1
    assert backend.statuses(["30"], background=True)["30"].state is JobState.RUNNING
    now[0] += 1
    assert backend.statuses(["30"], background=True)["30"].state is JobState.RUNNING
    assert fake.calls() == ["sacct", "squeue"] * 3 + ["sacct"]
