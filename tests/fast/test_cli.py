"""The slurm-sdk console script on a local-backend config: every verb, --json, exit codes, error text."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
import yaml

from slurm import JobState, waiting
from slurm.cli import CONFIG, INTERRUPTED, JOB_FAILED, NOT_FINISHED, OK, UNKNOWN_JOB, UNREACHABLE, USAGE, main
from tests.rank_jobs import fail_on_rank, item_and_rank

from . import log_tasks, tasks
from .conftest import REPO
from .settle import settle

TIMEOUT = 60


@pytest.fixture
def config(cluster, tmp_path):
    """A config file describing ``cluster`` (same state dir and job root), as a user would write it."""
    path = tmp_path / "slurm-sdk.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "backend": {"type": "local", "state_dir": cluster.backend.state_dir},
                "packaging": {"type": "none", "pythonpath": [REPO], "python": sys.executable},
                "job_root": cluster.resolve_job_root(),
                # The cadence of ``cluster`` (make_cluster's): a local config's default looks every 0.2 s.
                "poll_interval_seconds": cluster.poll_interval_seconds,
                "result_poll_interval_seconds": cluster.result_poll_interval_seconds,
            }
        )
    )
    return str(path)


def cli(capsys, config, *argv):
    """Run the CLI in this process; returns (exit code, stdout, stderr)."""
    code = main(["--config", config, *argv] if config else list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_console_script_is_declared():
    [script] = [ep for ep in entry_points(group="console_scripts") if ep.name == "slurm-sdk"]
    assert script.value == "slurm.cli:main"


def test_jobs_list_plain_and_json(cluster, config, capsys):
    job = cluster.submit(tasks.add, 1, 2)
    squares = cluster.map(tasks.square, range(2))
    settle(cluster, job, squares)
    code, out, _ = cli(capsys, config, "jobs", "list")
    assert code == OK
    header, first, second = out.splitlines()
    assert header.split() == ["JOB", "ID", "NAME", "STATE", "RESULTS", "SUBMITTED"]
    assert first.split()[:4] == [job.job_id, "add", "COMPLETED", "1/1"]
    assert second.split()[:4] == [squares.array_ids[0], "square", "COMPLETED", "2/2"]
    code, out, _ = cli(capsys, config, "--json", "jobs", "list")  # --json before the verb works too
    listed = json.loads(out)
    assert code == OK and [(j["job_id"], j["name"], j["state"]) for j in listed] == [
        (job.job_id, "add", "COMPLETED"),
        (squares.array_ids[0], "square", "COMPLETED"),
    ]


def test_jobs_show(cluster, config, capsys):
    squares = cluster.map(tasks.square, range(2))
    settle(cluster, squares)
    code, out, _ = cli(capsys, config, "jobs", "show", squares.array_ids[0], "--json")
    shown = json.loads(out)
    assert code == OK and shown["name"] == "square" and shown["job_dir"] == squares[0].job_dir
    assert [(t["job_id"], t["state"], t["stdout"]) for t in shown["tasks"]] == [
        (job.job_id, "COMPLETED", job.log_path("stdout")) for job in squares
    ]
    code, out, _ = cli(capsys, config, "jobs", "show", squares[1].job_id)
    assert code == OK and squares[1].job_id in out and "COMPLETED" in out


def test_jobs_logs_prints_follows_and_tails(cluster, config, capsys, tmp_path):
    gate = tmp_path / "gate"
    job = cluster.submit(log_tasks.speak_until, ["first", "second"], str(gate), ["third"])
    lines = job.follow_stdout(timeout=TIMEOUT)
    assert [next(lines), next(lines)] == ["first", "second"]  # running, waiting on the gate
    code, out, _ = cli(capsys, config, "jobs", "logs", job.job_id)
    assert (code, out) == (OK, "first\nsecond\n")
    gate.touch()
    code, out, _ = cli(capsys, config, "jobs", "logs", job.job_id, "-f")
    assert (code, out) == (OK, "first\nsecond\nthird\n")
    assert job.last_state is JobState.COMPLETED or job.query_state() is JobState.COMPLETED
    code, out, _ = cli(capsys, config, "jobs", "logs", job.job_id, "-n", "1")
    assert (code, out) == (OK, "third\n")
    code, out, _ = cli(capsys, config, "jobs", "logs", job.job_id, "--stderr", "--json")
    assert code == OK and json.loads(out)["lines"][0].startswith("[slurm-sdk] job")


def test_jobs_result_values_failures_and_unfinished_jobs(cluster, config, capsys):
    done = cluster.submit(tasks.add, 20, 22)
    failed = cluster.submit(log_tasks.refuse, "nope")
    running = cluster.submit(log_tasks.snooze, 600)
    done.wait(timeout=TIMEOUT)
    failed.wait(timeout=TIMEOUT)
    assert cli(capsys, config, "jobs", "result", done.job_id)[:2] == (OK, "42\n")
    code, out, _ = cli(capsys, config, "jobs", "result", done.job_id, "--json")
    assert (code, json.loads(out)) == (OK, {"job_id": done.job_id, "ok": True, "value": 42})
    code, out, err = cli(capsys, config, "jobs", "result", failed.job_id)
    assert code == JOB_FAILED and out == ""
    assert "Refused: nope" in err and "Traceback" in err  # the remote traceback comes along
    code, out, _ = cli(capsys, config, "jobs", "result", failed.job_id, "--json")
    assert code == JOB_FAILED and json.loads(out)["error"] == "Refused: nope"
    code, _, err = cli(capsys, config, "jobs", "result", running.job_id)
    assert code == NOT_FINISHED and "has not finished" in err and "--wait" in err
    code, _, err = cli(capsys, config, "jobs", "result", running.job_id, "--wait", "--timeout", "0.05")
    assert code == NOT_FINISHED and "did not finish within 0.05s" in err
    running.cancel()


def test_jobs_result_waits_when_asked(cluster, config, capsys, tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    job = cluster.submit(tasks.wait_for_file, str(gate))
    check_result_files = waiting.check_result_files

    def open_the_gate_once_looked(jobs):
        check_result_files(jobs)
        gate.touch()  # the job ends only after the wait's first look found it unfinished

    monkeypatch.setattr(waiting, "check_result_files", open_the_gate_once_looked)
    assert cli(capsys, config, "jobs", "result", job.job_id, "--wait", "--timeout", str(TIMEOUT))[:2] == (
        OK,
        f"{gate}\n",
    )


def test_jobs_cancel(cluster, config, capsys):
    job = cluster.submit(log_tasks.snooze, 600)
    code, out, _ = cli(capsys, config, "jobs", "cancel", job.job_id, "--json")
    assert (code, json.loads(out)) == (OK, {"job_id": job.job_id, "cancelled": [job.job_id]})
    assert job.wait(timeout=TIMEOUT) is JobState.CANCELLED
    code, out, _ = cli(capsys, config, "jobs", "cancel", job.job_id)
    assert code == OK and "already ended" in out


def test_jobs_cleanup(cluster, config, capsys):
    job = cluster.submit(tasks.add, 1, 2)
    settle(cluster, job)
    code, out, _ = cli(capsys, config, "jobs", "cleanup", "--older-than", "0", "--dry-run")
    assert code == OK and "would remove 1 job directory" in out and os.path.isdir(job.job_dir)
    code, out, _ = cli(capsys, config, "jobs", "cleanup", "--older-than", "0s", "--json")
    assert code == OK and json.loads(out)["removed"] == [job.job_dir] and not os.path.exists(job.job_dir)
    code, _, err = cli(capsys, config, "jobs", "cleanup", "--older-than", "soon")
    assert code == USAGE and "'7d'" in err


def test_cluster_status_local(cluster, config, capsys):
    settle(cluster, cluster.submit(tasks.add, 1, 2))
    code, out, _ = cli(capsys, config, "cluster", "status", "--json")
    status = json.loads(out)
    assert code == OK and status["backend"] == "local" and status["jobs"] == {"COMPLETED": 1}
    code, out, _ = cli(capsys, config, "cluster", "status")
    assert code == OK and "1 COMPLETED" in out


def test_errors_name_cause_and_fix(cluster, config, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_SDK_CONFIG", raising=False)
    code, _, err = cli(capsys, None, "jobs", "list")
    assert code == CONFIG and "no configuration" in err and "--config FILE" in err
    code, _, err = cli(capsys, str(tmp_path / "missing.yaml"), "jobs", "list")
    assert code == CONFIG and "config file not found" in err
    code, _, err = cli(capsys, config, "jobs", "show", "4242")
    assert code == UNKNOWN_JOB and "no SDK job 4242" in err and "jobs list" in err
    code, _, err = cli(capsys, config, "jobs", "result", "12;rm")
    assert code == UNKNOWN_JOB and "malformed job id" in err
    squares = cluster.map(tasks.square, range(2))
    code, _, err = cli(capsys, config, "jobs", "logs", squares.array_ids[0])
    assert code == USAGE and f"e.g. {squares.array_ids[0]}_0" in err
    for argv in (
        ["jobs", "frobnicate"],
        ["jobs", "logs", "1", "-n", "-3"],
        ["jobs", "result", "1", "--timeout", "x"],
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == USAGE
        assert "e.g." in capsys.readouterr().err or argv[1] == "frobnicate"
    squares.wait(timeout=TIMEOUT)


def test_a_fresh_process_runs_the_cli(cluster, config):
    """The installed entry point, in its own process, as a user runs it."""
    job = cluster.submit(tasks.add, 3, 4)
    job.wait(timeout=TIMEOUT)
    env = {**os.environ, "SLURM_SDK_CONFIG": config, "PYTHONPATH": REPO}
    command = [sys.executable, "-c", "import sys; from slurm.cli import main; sys.exit(main())"]
    proc = subprocess.run(
        [*command, "jobs", "result", job.job_id], capture_output=True, text=True, env=env, timeout=120
    )
    assert (proc.returncode, proc.stdout) == (OK, "7\n"), proc.stderr
    proc = subprocess.run(
        [*command, "jobs", "show", "999999"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == UNKNOWN_JOB and "no SDK job 999999" in proc.stderr


def test_an_unreachable_cluster_exits_5_naming_the_fix(capsys, tmp_path):
    """A closed port on 127.0.0.1 (nothing leaves this machine): refused at once, not retried for minutes."""
    import socket

    paramiko = pytest.importorskip("paramiko")
    key = paramiko.RSAKey.generate(2048)
    key.write_private_key_file(str(tmp_path / "key"))
    with socket.socket() as probe:  # a port that was free a moment ago, and is closed now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "closed.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "backend": {
                    "type": "ssh",
                    "host": "127.0.0.1",
                    "port": port,
                    "user": "sdk",
                    "key_filename": str(tmp_path / "key"),
                    "known_host_key": f"{key.get_name()} {key.get_base64()}",
                }
            }
        )
    )
    for verb in (["jobs", "list"], ["cluster", "status"], ["jobs", "show", "1"]):
        code, _, err = cli(capsys, str(path), *verb)
        assert (
            code == UNREACHABLE and f"127.0.0.1:{port} refused; is the cluster up and the port right?" in err
        )


def test_a_job_the_scheduler_forgot_is_shown_as_such(cluster, config, capsys, monkeypatch):
    """Without accounting Slurm forgets ended jobs: no state, no result file. Nothing may call it pending."""
    monkeypatch.setattr("slurm.waiting.LOST_AFTER", 0.0)  # a second unlisted answer is final at once
    job = cluster.submit(log_tasks.vanish, 3)
    settle(cluster, job)  # FAILED is the launcher's last word: nothing writes the state after it
    os.remove(os.path.join(cluster.backend.state_dir, "states", job.job_id))  # what MinJobAge does
    code, out, _ = cli(capsys, config, "jobs", "show", job.job_id, "--json")
    assert code == OK and json.loads(out)["tasks"][0]["state"] == "UNKNOWN"
    code, out, _ = cli(capsys, config, "jobs", "cancel", job.job_id)
    assert code == OK and "already ended" in out
    code, _, err = cli(capsys, config, "jobs", "result", job.job_id)
    assert code == JOB_FAILED and "unknown to the scheduler" in err and "left no result" in err


def test_ctrl_c_while_following_exits_130_and_the_job_keeps_running(cluster, config, tmp_path):
    """The console script in its own process, interrupted as a terminal's Ctrl-C would (SIGINT)."""
    gate = tmp_path / "gate"
    job = cluster.submit(log_tasks.speak_until, ["first"], str(gate), ["after"])
    env = {**os.environ, "SLURM_SDK_CONFIG": config, "PYTHONPATH": REPO}
    # As from a terminal, SIGINT raises KeyboardInterrupt in the follower. A process started with SIGINT
    # ignored (a test run started in the background: `cmd &` in a non-interactive shell) passes that on,
    # and Python then keeps ignoring it, as Unix tools do: seen in CI, the follower went on following.
    # -X faulthandler: a follower that outlives its Ctrl-C anyway is sent SIGABRT, and the failure shows
    # its stacks.
    start = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    command = [
        sys.executable,
        "-X",
        "faulthandler",
        "-c",
        start + "from slurm.cli import main; sys.exit(main())",
    ]
    follower = subprocess.Popen(
        [*command, "jobs", "logs", job.job_id, "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert follower.stdout.readline() == "first\n"  # following a running job
        follower.send_signal(signal.SIGINT)
        try:
            follower.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            follower.send_signal(signal.SIGABRT)
            _, stacks = follower.communicate(timeout=TIMEOUT)
            pytest.fail(f"the follower did not end within {TIMEOUT} s of SIGINT; its stacks:\n{stacks}")
    finally:
        follower.kill()
    assert follower.returncode == INTERRUPTED
    assert job.query_state() is JobState.RUNNING  # only the follower stopped
    gate.touch()
    assert job.result(timeout=TIMEOUT) == "released"


def test_jobs_result_of_a_multi_rank_task(cluster, config, capsys):
    jobs = cluster.map(item_and_rank, [5, 6])
    failing = cluster.submit(fail_on_rank, 1)
    jobs.wait(timeout=TIMEOUT)
    code, out, _ = cli(capsys, config, "jobs", "result", jobs[0].job_id, "--json")
    assert code == OK and json.loads(out)["value"] == [5, 0, 0]  # rank 0's
    code, out, _ = cli(capsys, config, "jobs", "result", jobs.array_ids[0], "--all-ranks", "--json")
    assert code == OK and json.loads(out)["value"] == [[[5, 0, 0], [5, 1, 0]], [[6, 0, 1], [6, 1, 1]]]
    code, _, err = cli(capsys, config, "jobs", "result", failing.job_id, "--wait", "--timeout", str(TIMEOUT))
    assert code == JOB_FAILED and "rank 1 refuses" in err and f"job {failing.job_id} rank 1 (of 4, on " in err
