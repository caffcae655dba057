"""Fault injection and harness behaviour that needs no Docker: Slurm defaults files, the CLI verbs, the
cluster lock, orphaned stacks, what `harness down` refuses for, the event log's outcomes."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest

from slurm_dev_cluster import activity, fault_verbs, site_limits
from slurm_dev_cluster.cli_verbs import cmd_down
from slurm_dev_cluster.compose_project import published_ssh_port
from slurm_dev_cluster.faults import (
    CHECKED_SETTINGS,
    DROP_SESSIONS,
    defaults,
    defaults_names,
    render,
)
from slurm_dev_cluster.locks import ClusterLock, EventLog, process_start_time
from slurm_dev_cluster.readiness import same_setting
from slurm_dev_cluster.stack import REPO_ROOT, Stack

# ---- Slurm defaults ---------------------------------------------------------------------------------


def test_dev_and_production_defaults_differ_where_the_issue_says():
    assert set(defaults_names()) >= {"dev", "production"}
    dev, production = defaults("dev"), defaults("production")
    assert dev["DependencyParameters"] == "kill_invalid_depend" and dev["MinJobAge"] == "120"
    assert "DependencyParameters" not in production and production["MinJobAge"] == "300"
    assert "AccountingStorageType" not in production  # the stack's accounting.conf decides, never a switch
    # The main scheduling pass: every 10 s on the dev defaults, Slurm's stock 60 s (left out) on production.
    assert "sched_interval=10" in dev["SchedulerParameters"].split(",")
    assert "sched_interval" not in production["SchedulerParameters"]
    assert set(dev["SchedulerParameters"].split(",")) - set(production["SchedulerParameters"].split(",")) == {
        "sched_interval=10"
    }
    # Every setting read back after a reconfigure has its stock value for a file that leaves it out.
    assert {key: production.get(key, stock) for key, stock in CHECKED_SETTINGS.items()} == {
        "MinJobAge": "300",
        "DependencyParameters": "(null)",
        "MaxArraySize": "1001",  # slurm.conf's, Slurm's stock value; the site_limits fault lowers it
    }


def test_slurm_conf_leaves_the_kind_settings_to_the_include():
    conf = (REPO_ROOT / "images" / "slurm" / "slurm.conf").read_text()
    settings = [
        line.split("=", 1)[0] for line in conf.splitlines() if "=" in line and not line.startswith("#")
    ]
    assert not {"MinJobAge", "DependencyParameters", "SchedulerParameters"} & set(settings)
    assert conf.rstrip().endswith("Include /etc/slurm/faults.conf")  # last: what it sets wins


def test_overrides_win_and_unknown_defaults_are_named(monkeypatch):
    monkeypatch.setenv("SLURM_SDK_ACCOUNTING", "0")
    text = render("production", {"MinJobAge": "2"})
    assert "MinJobAge=2\n" in text and "MinJobAge=300" not in text
    assert "AccountingStorageType" not in text  # accounting.conf decides: no duplicate key
    monkeypatch.delenv("SLURM_SDK_ACCOUNTING")  # the default, accounting on: production leaves it on
    assert "AccountingStorageType" not in render("production", {})
    with pytest.raises(ValueError, match="choose one of dev, production"):
        render("staging", {})


def test_settings_are_compared_as_scontrol_prints_them():
    assert same_setting("2 sec", "2") and same_setting("kill_invalid_depend", "kill_invalid_depend")
    assert not same_setting("120 sec", "2") and not same_setting("(null)", "kill_invalid_depend")


# ---- the CLI verbs ------------------------------------------------------------------------------------


class RecordingFaults:
    """Stands in for Faults to check which method each command line reaches (Faults itself is exercised
    against the real cluster in tests/integration/test_faults*.py)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.stack = SimpleNamespace(project="p")
        self.compute_nodes = ("c1", "c2")  # a default two-node stack
        self.configured = ("slurmctld", "c1", "c2", "login")
        self.restartable = (*self.configured, "slurmrestd")  # a stack with the profile `rest`

    def __getattr__(self, name):
        def record(*args):
            self.calls.append((name, *args))
            return {"restart": SimpleNamespace(port=40001), "drop_ssh": [101, 102]}.get(name)

        return record


@pytest.mark.parametrize(
    ("words", "call"),
    [
        (["defaults", "production"], ("slurm_defaults", "production")),
        (["forget", "on"], ("forget_finished_jobs", 2)),
        (["forget", "on", "5"], ("forget_finished_jobs", 5)),
        (["forget", "off"], ("remember_finished_jobs",)),
        (["node", "c2", "stop"], ("stop_node", "c2")),
        (["node", "c1", "start"], ("start_node", "c1")),
        (["pause", "slurmctld"], ("pause", "slurmctld")),
        (["restart", "login"], ("restart", "login")),
        (["restart", "slurmrestd"], ("restart", "slurmrestd")),
        (["ssh", "drop"], ("drop_ssh",)),
        (["sbatch", "drop", "2"], ("drop_ssh_after_sbatch", 2)),
        (["sbatch", "slow", "4"], ("slow_sbatch", 4.0)),
        (["sbatch", "off"], ("sbatch_normal",)),
        (["preempt", "12_3"], ("preempt", "12_3")),
        (["accounting", "lose-start", "7"], ("lose_job_start", "7")),
        (["accounting", "lose-end", "7_2"], ("lose_job_end", "7_2")),
        (["reset"], ("reset",)),
        (["limits"], ("site_limits", 50, 20)),
        (["limits", "10", "5"], ("site_limits", 10, 5)),
        (["limits", "off"], ("lift_site_limits",)),
    ],
)
def test_fault_verbs_reach_the_fault(words, call):
    faults = RecordingFaults()
    message = fault_verbs.run(faults, words[0], words[1:])
    assert faults.calls == [call] and message
    if words[:2] == ["restart", "login"]:
        assert "127.0.0.1:40001" in message  # the port is said


@pytest.mark.parametrize(
    ("words", "named"),
    [
        (["defaults"], "dev, production"),
        (["node", "c9", "stop"], "c1, c2"),
        (["node", "c1", "reboot"], "stop, start"),
        (["pause", "db"], "slurmctld, c1, c2, login"),
        (["pause", "slurmrestd"], "slurmctld, c1, c2, login, got"),  # only restart takes slurmrestd
        (["restart", "db"], "slurmctld, c1, c2, login, slurmrestd"),
        (["sbatch", "slow"], "SECONDS"),
        (["forget", "on", "x"], "number"),
        (["preempt"], "one JOB_ID"),
        (["preempt", "12;rm"], "one JOB_ID"),
        (["accounting", "lose-start"], "one JOB_ID"),
        (["accounting", "forget", "7"], "lose-start, lose-end"),
        (["accounting", "lose-end", "7", "8"], "lose-end needs one JOB_ID"),
        (["limits", "many"], "JOBS must be a number"),
    ],
)
def test_bad_fault_arguments_name_the_valid_ones(words, named):
    faults = RecordingFaults()
    with pytest.raises(ValueError, match=named):
        fault_verbs.run(faults, words[0], words[1:])
    assert faults.calls == []


# ---- the cluster lock ---------------------------------------------------------------------------------


def _hold(lock_cm, entered: threading.Event, release: threading.Event) -> threading.Thread:
    def run():
        with lock_cm:
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_tests_share_the_cluster_and_a_fault_waits_for_it_alone(tmp_path):
    lock = ClusterLock(tmp_path)
    quiet = dict(say=lambda _: None)
    first, second, fault = threading.Event(), threading.Event(), threading.Event()
    release_tests, release_fault = threading.Event(), threading.Event()
    _hold(lock.shared(**quiet), first, release_tests)
    _hold(lock.shared(**quiet), second, release_tests)
    assert first.wait(5) and second.wait(5)  # two tests at once
    # Each waiter announces its wait once its lock was refused (what a fixed sleep stood in for).
    fault_refused, late_refused = threading.Event(), threading.Event()
    writer = _hold(lock.exclusive(say=lambda _: fault_refused.set()), fault, release_fault)
    assert fault_refused.wait(5) and not fault.is_set()  # the fault waits for the running tests
    late, release_late = threading.Event(), threading.Event()
    _hold(lock.shared(say=lambda _: late_refused.set()), late, release_late)
    # A test arriving now queues behind the waiting fault (no starvation).
    assert late_refused.wait(5) and not late.is_set()
    release_tests.set()
    assert fault.wait(5) and not late.is_set()  # the fault runs alone
    release_fault.set()
    writer.join(5)
    assert late.wait(5)
    release_late.set()


def test_a_lock_wait_is_bounded_and_says_why(tmp_path):
    lock = ClusterLock(tmp_path)
    entered, release = threading.Event(), threading.Event()
    _hold(lock.exclusive(say=lambda _: None), entered, release)
    assert entered.wait(5)
    said = []
    with pytest.raises(TimeoutError, match="a fault test has the cluster to itself"):
        with lock.shared(say=said.append, timeout=0.1):  # any bound: the holder never lets go
            pass
    assert said and "waiting" in said[0]
    release.set()


# ---- events, ports, orphans ---------------------------------------------------------------------------


def test_events_are_recorded_after_the_fact_with_their_outcome(tmp_path):
    log = EventLog(tmp_path / "events.log")
    with log.outcome("compose-down", project="p"):
        assert log.events() == []  # nothing claimed before it happened
    with pytest.raises(RuntimeError), log.outcome("compose-up", project="p"):
        raise RuntimeError("docker said no")
    assert [(e["event"], e["result"]) for e in log.events()] == [
        ("compose-down", "ok"),
        ("compose-up", "failed"),
    ]
    assert log.events()[1]["error"] == "RuntimeError"


def test_published_port_is_read_from_the_container_inspection():
    container = SimpleNamespace(
        network_settings=SimpleNamespace(ports={"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40123"}]})
    )
    assert published_ssh_port(container) == 40123
    stopped = SimpleNamespace(network_settings=SimpleNamespace(ports={}))
    assert published_ssh_port(stopped) is None


@pytest.fixture
def offline_stack(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    return Stack(
        REPO_ROOT, project="slurmsdk-offline", client_call=["/nonexistent/docker"], say=lambda _: None
    )


def test_a_stack_whose_session_died_is_adopted_by_the_next_one(offline_stack):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    offline_stack.update_state(started_by="old-session", owner={"pid": dead.pid, "start_time": "1"})
    assert offline_stack.orphaned_by() == "old-session"
    offline_stack.adopt_if_orphaned("new-session", os.getpid())
    state = offline_stack.read_state()
    assert state["started_by"] == "new-session" and state["owner"]["pid"] == os.getpid()
    assert offline_stack.orphaned_by() is None  # ours now: this session stops it at its end
    assert [e["event"] for e in offline_stack.events.events()] == ["adopt"]


def test_a_live_session_or_a_user_stack_is_never_adopted(offline_stack):
    offline_stack.update_state(
        started_by="live", owner={"pid": os.getpid(), "start_time": process_start_time(os.getpid())}
    )
    offline_stack.adopt_if_orphaned("other", 1)
    assert offline_stack.read_state()["started_by"] == "live"
    offline_stack.update_state(started_by="cli", owner=None)  # `harness up`: the user's, no owner process
    assert offline_stack.orphaned_by() is None


# ---- what `harness down` refuses for ------------------------------------------------------------------


def test_activity_lists_jobs_and_outside_connections_but_not_the_healthcheck():
    found = activity.parse(
        "12 RUNNING train\n13 PENDING eval\nsqueue-exit=0\n"
        "0 0 172.20.0.2:22 172.20.0.1:48662\n0 0 127.0.0.1:22 127.0.0.1:51000\n"
    )
    assert found.jobs == ["12 RUNNING train", "13 PENDING eval"]
    assert found.connections == ["172.20.0.1:48662"]
    lines = found.findings()
    assert lines[0].startswith("2 job(s) of user sdk") and "12 RUNNING train" in lines[0]
    assert lines[1].startswith("1 SSH connection(s)")
    assert activity.parse("squeue-exit=0\n").findings() == []


def test_activity_says_when_the_scheduler_cannot_tell():
    found = activity.parse("slurm_load_jobs error: Unable to contact slurm controller\nsqueue-exit=1\n")
    assert found.jobs == [] and "Unable to contact slurm controller" in found.unknown


class IdleOrBusyStack(Stack):
    """A Stack whose login node answers the activity query with canned output; records down()."""

    def __init__(self, tmp_path, answer: str) -> None:
        super().__init__(
            REPO_ROOT,
            project="slurmsdk-down-test",
            state_dir=tmp_path / "state",
            client_call=["/nonexistent/docker"],
            say=lambda _: None,
        )
        self.answer, self.downs = answer, []

    def services(self):
        return {"login": "running (healthy)"}

    def exec(self, service, command, user=None):
        return self.answer

    def down(self, session="cli", by=""):
        self.downs.append((session, by))


def test_down_refuses_while_jobs_or_ssh_sessions_are_active_and_says_what(tmp_path, capsys):
    busy = IdleOrBusyStack(tmp_path, "7 RUNNING smoke\nsqueue-exit=0\n0 0 172.20.0.2:22 172.20.0.1:40000\n")
    assert cmd_down(busy, argparse.Namespace(force=False)) == 1
    err = capsys.readouterr().err
    assert "1 job(s) of user sdk in the queue (7 RUNNING smoke)" in err and "1 SSH connection(s)" in err
    assert "--force" in err and busy.downs == []
    assert cmd_down(busy, argparse.Namespace(force=True)) == 0 and busy.downs == [
        ("cli", "`slurm-dev-cluster down --force`")
    ]


def test_down_goes_ahead_on_an_idle_stack(tmp_path):
    idle = IdleOrBusyStack(tmp_path, "squeue-exit=0\n0 0 127.0.0.1:22 127.0.0.1:51000\n")
    assert cmd_down(idle, argparse.Namespace(force=False)) == 0 and idle.downs == [
        ("cli", "`slurm-dev-cluster down`")
    ]


# ---- drop_ssh's script ----------------------------------------------------------------------------


def test_dropping_ssh_sessions_skips_one_that_ended_before_its_kill(tmp_path):
    """ps lists a session that exits before its turn (the unprivileged half of a session ends with its
    monitor): the drop still succeeds and names only the processes it killed."""
    live = subprocess.Popen(["sleep", "60"])
    ended = subprocess.Popen(["true"])
    ended.wait()  # reaped: its pid names no process any more
    fake_ps = tmp_path / "ps"
    fake_ps.write_text(
        f"#!/bin/sh\nprintf '%s\\n' '{ended.pid} sshd-session' '{live.pid} sshd-session' '1 bash'\n"
    )
    fake_ps.chmod(0o755)
    try:
        done = subprocess.run(
            ["sh", "-c", DROP_SESSIONS],
            env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (done.returncode, done.stdout.split(), done.stderr) == (0, [str(live.pid)], "")
        assert live.wait(timeout=10) == -9
    finally:
        live.kill()


def test_the_qos_settings_site_limits_restores_are_read_as_sacctmgr_prints_them():
    """``sacctmgr -n -P show qos format=name,maxsubmitjobsperuser,maxwall,maxjobsperuser``: an empty value
    is no limit."""
    assert site_limits.parse_qos_limits("normal|||\nhigh|50|00:05:00|0\n") == {
        "normal": {"MaxSubmitJobsPerUser": "-1", "MaxWall": "-1", "MaxJobsPerUser": "-1"},
        "high": {"MaxSubmitJobsPerUser": "50", "MaxWall": "00:05:00", "MaxJobsPerUser": "0"},
    }
    assert site_limits.set_qos("normal", {"MaxSubmitJobsPerUser": "-1", "MaxWall": "00:05:00"}) == (
        "sacctmgr -i modify qos where name=normal set MaxSubmitJobsPerUser=-1 MaxWall=00:05:00"
    )
