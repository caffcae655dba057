"""Reattach, live logs, cleanup and every slurm-sdk CLI verb, on the real cluster over real SSH.

Each test gets its own job root (under the sdk user's home on the cluster), so cleanup and listings never
see other tests' jobs. New processes are real ones: ``python -c`` and the installed ``slurm-sdk`` script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import yaml

from slurm import Cluster, JobState
from slurm.node.layout import record_path
from slurm.node.ranks import expand_hostlist
from slurm.waiting import has_ended
from slurm_dev_cluster import pytest_plugin

from ..fast import log_tasks

pytestmark = pytest.mark.integration
TIMEOUT = 300


@pytest.fixture
def config_path(request, slurm_container, sdk_on_cluster, login_transport, tmp_path) -> str:
    """A config file for the dev stack, as a user would write it: ssh backend, pinned host key, and a job
    root of the test's own (removed afterwards)."""
    job_root = f"{login_transport.home()}/.slurm-sdk/test-reattach-{uuid.uuid4().hex[:8]}"
    config = {
        "backend": {
            "type": "ssh",
            "host": slurm_container.host,
            "port": slurm_container.port,
            "user": slurm_container.user,
            "key_filename": str(slurm_container.key_path),
            "known_host_key": slurm_container.host_key,
        },
        "packaging": pytest_plugin.packaging_for(
            "ssh", sdk_on_cluster, pytest_plugin.test_import_roots(request, sdk_on_cluster)
        ),
        "job_root": job_root,
    }
    path = tmp_path / "slurm-sdk.yaml"
    path.write_text(yaml.safe_dump(config))
    yield str(path)
    login_transport.run(f"rm -rf {job_root}", check=False)


@pytest.fixture
def cluster(config_path, login_transport):
    with Cluster.from_env(config_path) as cluster:
        yield cluster
        # A test that failed midway leaves its gated job waiting for minutes on a node that later tests
        # (the reshapes) need idle: end this test's jobs (scancel ignores those that already ended).
        ids = [info.job_id for info in cluster.list_jobs() if not info.state.is_terminal]
        if ids:
            login_transport.run(f"scancel {' '.join(ids)}", check=False)


def slurm_sdk(config_path: str, *argv: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """The installed console script, in its own process."""
    return subprocess.run(
        [_script(), "--config", config_path, *argv], capture_output=True, text=True, timeout=timeout
    )


def _script() -> str:
    script = Path(sys.executable).with_name("slurm-sdk")
    if not script.exists():
        pytest.fail(
            f"{script} is missing: the console script is installed by `pip install -e .` "
            "(bash harness/setup.sh does it)"
        )
    return str(script)


# --- reattach --------------------------------------------------------------------------------------


def test_a_new_process_reattaches_by_id(cluster, config_path, compute_nodes):
    job = cluster.submit(log_tasks.greet, "reattach")
    program = textwrap.dedent(f"""
        import json
        from slurm import Cluster
        with Cluster.from_env({config_path!r}) as cluster:
            job = cluster.job({job.job_id!r})
            value = job.result(timeout={TIMEOUT})
            print(json.dumps({{"value": value, "state": job.query_state().value, "stdout": job.stdout(),
                               "dir": job.job_dir}}))
    """)
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    (greeting, host) = found["value"]
    assert greeting == "hello reattach" and host in compute_nodes
    assert found["state"] == "COMPLETED" and found["dir"] == job.job_dir
    assert found["stdout"] == f"hello reattach from {host}\n"


def test_listing_and_private_job_files(cluster, login_transport):
    single = cluster.submit(log_tasks.greet, "list")
    array = cluster.map(log_tasks.greet, ["a", "b", "c"])
    single.result(timeout=TIMEOUT)
    array.results(timeout=TIMEOUT)
    infos = {info.job_id: info for info in cluster.list_jobs()}
    assert set(infos) == {single.job_id, array.array_ids[0]}
    assert (infos[single.job_id].name, infos[single.job_id].tasks) == ("greet", 1)
    assert (infos[array.array_ids[0]].array, infos[array.array_ids[0]].tasks) == (True, 3)
    assert infos[array.array_ids[0]].results == 3
    record = record_path(cluster.resolve_job_root(), single.job_id)
    modes = login_transport.run(f"stat -c %a {cluster.resolve_job_root()} {record}").stdout.split()
    assert modes == ["700", "600"]
    whole = cluster.job(array.array_ids[0])
    assert [value for value, _ in whole.results(timeout=TIMEOUT)] == ["hello a", "hello b", "hello c"]


# --- live logs -------------------------------------------------------------------------------------


def test_tail_of_a_running_job(cluster, gate):
    job = cluster.submit(log_tasks.speak_until, ["one", "two", "three"], gate.path, ["four"])
    lines = job.follow_stdout(timeout=TIMEOUT)
    assert [next(lines), next(lines), next(lines)] == ["one", "two", "three"]
    assert job.query_state() is JobState.RUNNING  # waiting on the gate: the lines came live
    tail = cluster.job(job.job_id).tail(2, timeout=TIMEOUT)  # another handle, as a new process would have
    assert [next(tail), next(tail)] == ["two", "three"]
    gate.open()
    assert list(lines) == ["four"]
    assert list(tail) == ["four"]
    assert job.result(timeout=TIMEOUT) == "released"


# --- the CLI ---------------------------------------------------------------------------------------


def test_cli_status_list_show_result(cluster, config_path, compute_nodes):
    job = cluster.submit(log_tasks.greet, "cli")
    _, host = job.result(timeout=TIMEOUT)

    status = slurm_sdk(config_path, "cluster", "status", "--json")
    assert status.returncode == 0, status.stderr
    partitions = json.loads(status.stdout)["partitions"]
    # One entry per partition and node state (sinfo's grouping): while another test's job runs, the
    # default partition is listed as, e.g., c1 mixed and c2 idle; together they hold every node.
    default = [part for part in partitions if partitions and part["name"] == partitions[0]["name"]]
    listed = [node for part in default for node in expand_hostlist(part["nodelist"])]
    assert default and sorted(listed) == sorted(compute_nodes), partitions
    assert "partitions:" in slurm_sdk(config_path, "cluster", "status").stdout

    listed = slurm_sdk(config_path, "jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(j["job_id"], j["name"], j["tasks"]) for j in json.loads(listed.stdout)] == [
        (job.job_id, "greet", 1)
    ]
    plain = slurm_sdk(config_path, "jobs", "list").stdout.splitlines()
    assert plain[1].split()[:2] == [job.job_id, "greet"]

    shown = slurm_sdk(config_path, "jobs", "show", job.job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["tasks"][0]["stdout"] == job.log_path("stdout")
    plain_show = slurm_sdk(config_path, "jobs", "show", job.job_id)
    assert plain_show.returncode == 0 and f"dir:      {job.job_dir}" in plain_show.stdout

    result = slurm_sdk(config_path, "jobs", "result", job.job_id, "--json")
    assert (result.returncode, json.loads(result.stdout)["value"]) == (0, ["hello cli", host]), result.stderr
    logs = slurm_sdk(config_path, "jobs", "logs", job.job_id)
    assert (logs.returncode, logs.stdout) == (0, f"hello cli from {host}\n")


def test_cli_follows_logs_of_a_running_job(cluster, config_path, gate):
    job = cluster.submit(log_tasks.speak_until, ["first"], gate.path, ["second", "third"])
    next(job.follow_stdout(timeout=TIMEOUT))  # running and waiting on the gate
    follower = subprocess.Popen(
        [_script(), "--config", config_path, "jobs", "logs", job.job_id, "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout.readline() == "first\n"  # printed while the job still runs
        gate.open()
        out, err = follower.communicate(timeout=TIMEOUT)
    finally:
        follower.kill()
    assert (follower.returncode, out) == (0, "second\nthird\n"), err
    assert job.result(timeout=TIMEOUT) == "released"


def test_cli_cancel_failures_and_unknown_ids(cluster, config_path):
    sleeper = cluster.submit(log_tasks.snooze, 600)
    failing = cluster.submit(log_tasks.refuse, "not today")

    unfinished = slurm_sdk(config_path, "jobs", "result", sleeper.job_id)
    assert unfinished.returncode == 6 and "has not finished" in unfinished.stderr
    cancelled = slurm_sdk(config_path, "jobs", "cancel", sleeper.job_id, "--json")
    assert (cancelled.returncode, json.loads(cancelled.stdout)["cancelled"]) == (0, [sleeper.job_id])
    assert sleeper.wait(timeout=TIMEOUT) is JobState.CANCELLED

    failed = slurm_sdk(config_path, "jobs", "result", failing.job_id, "--wait", "--timeout", str(TIMEOUT))
    assert failed.returncode == 1 and "not today" in failed.stderr and "refuse" in failed.stderr

    unknown = slurm_sdk(config_path, "jobs", "show", "987654")
    assert unknown.returncode == 4 and "no SDK job 987654" in unknown.stderr and "jobs list" in unknown.stderr
    missing = subprocess.run(
        [_script(), "jobs", "list"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_SDK")},
    )
    assert missing.returncode == 3 and "SLURM_SDK_CONFIG" in missing.stderr


def test_cleanup_keeps_unfinished_jobs(cluster, config_path, login_transport):
    done = cluster.submit(log_tasks.greet, "old")
    running = cluster.submit(log_tasks.snooze, 600)
    done.result(timeout=TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while not has_ended(cluster.backend.states([done.job_id])[done.job_id]):  # result written; job exiting
        assert time.monotonic() < deadline, "the scheduler never saw the job end"
        time.sleep(0.5)
    try:
        preview = slurm_sdk(config_path, "jobs", "cleanup", "--older-than", "0", "--dry-run", "--json")
        assert json.loads(preview.stdout)["removed"] == [done.job_dir] and login_transport.exists(
            done.job_dir
        )
        report = cluster.cleanup(0)
        assert report.removed == [done.job_dir] and report.kept_unfinished == [running.job_dir]
        assert not login_transport.exists(done.job_dir) and login_transport.exists(running.job_dir)
        assert [info.job_id for info in cluster.list_jobs()] == [running.job_id]
    finally:
        running.cancel()
