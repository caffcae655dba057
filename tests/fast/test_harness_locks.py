"""slurm_dev_cluster.locks: who may start/stop the stack, and who still uses it (no Docker needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from slurm_dev_cluster.locks import Coordinator, EventLog, is_alive, process_start_time


def test_registered_live_process_is_listed_until_it_unregisters(tmp_path):
    coordinator = Coordinator(tmp_path)
    coordinator.register("session-a", "controller")
    assert [(u.pid, u.session) for u in coordinator.live_users()] == [(os.getpid(), "session-a")]
    coordinator.unregister()
    assert coordinator.live_users() == []


def test_crashed_process_is_ignored_and_its_registration_removed(tmp_path):
    coordinator = Coordinator(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    coordinator.register("session-a", "worker", pid=dead.pid)
    assert coordinator.live_users() == []
    assert list(coordinator.users_dir.iterdir()) == []


def test_recycled_pid_with_another_start_time_counts_as_dead(tmp_path):
    coordinator = Coordinator(tmp_path)
    user = coordinator.register("session-a", "worker")
    assert is_alive(user)
    path = coordinator.users_dir / f"{os.getpid()}.json"
    record = json.loads(path.read_text())
    record["start_time"] = str(int(process_start_time(os.getpid())) + 1)  # "an older process with this pid"
    path.write_text(json.dumps(record))
    assert coordinator.live_users() == []


def test_users_of_the_own_session_can_be_excluded(tmp_path):
    coordinator = Coordinator(tmp_path)
    coordinator.register("mine", "controller")
    assert coordinator.live_users(exclude_session="mine") == []
    assert len(coordinator.live_users(exclude_session="other")) == 1


def test_unreadable_registration_is_treated_as_stale(tmp_path):
    coordinator = Coordinator(tmp_path)
    (coordinator.users_dir / "123.json").write_text("{half written")
    assert coordinator.live_users() == []
    assert not (coordinator.users_dir / "123.json").exists()


def test_exclusive_waits_for_another_process_and_says_so(tmp_path):
    coordinator = Coordinator(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from filelock import FileLock; l = FileLock(sys.argv[1]); "
            "l.acquire(); print('held', flush=True); sys.stdin.read()",
            str(coordinator.setup_lock.lock_file),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        messages: list[str] = []
        with pytest.raises(TimeoutError, match=r"setup.lock"):
            with coordinator.exclusive(say=messages.append, timeout=0.1):  # the holder never lets go
                pass
        assert "waiting" in messages[0]
    finally:
        holder.stdin.close()
        holder.wait()
    with coordinator.exclusive(timeout=5):  # free again once the holder is gone
        pass


def test_event_log_round_trip(tmp_path):
    log = EventLog(tmp_path / "events.log")
    log.record("compose-up", project="p", session="s1")
    log.record("reuse", project="p")
    events = log.events()
    assert [e["event"] for e in events] == ["compose-up", "reuse"]
    assert events[0]["session"] == "s1" and events[0]["pid"] == str(os.getpid())
