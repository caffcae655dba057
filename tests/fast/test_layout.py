"""The job-directory layout has one home (``slurm.node.layout``): the submitting side and the runner agree on it,
and the SLURM_* scrub rule has one definition, applied in Python and as a shell prefix."""

from __future__ import annotations

import fnmatch
import os
import posixpath
import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from slurm.inherited_env import SCRUB_SLURM_ENV_SHELL, scrub_slurm_env
from slurm.node import layout
from slurm.records import list_records
from slurm.transports.host import HostTransport
from tests.fast import tasks


def test_a_job_leaves_exactly_the_layouts_files(cluster):
    jobs = cluster.map(tasks.square, [2, 3])
    assert jobs.results(timeout=60) == [4, 9]
    single = cluster.submit(tasks.add, 1, 2)
    assert single.result(timeout=60) == 3
    for job_dir, count in ((jobs[0].job_dir, 2), (single.job_dir, 1)):
        names = set(os.listdir(job_dir))
        written = {layout.SCRIPT, layout.PAYLOAD} | {
            posixpath.basename(layout.result_path(job_dir, i)) for i in range(count)
        }
        assert written <= names  # the runner wrote where the client reads
        logs = names - written
        assert logs and all(name.startswith("slurm-") for name in logs), names
    listing = list_records(cluster.backend.transport, cluster.resolve_job_root())
    assert listing.results == {jobs[0].job_dir: 2, single.job_dir: 1}  # RESULT_GLOB matches result_path
    assert os.path.exists(layout.record_path(cluster.resolve_job_root(), single.job_id))


@given(
    task_name=st.from_regex(r"[A-Za-z0-9_.-]{1,40}", fullmatch=True),
    index=st.integers(min_value=0, max_value=10**6),
)
def test_every_path_stays_in_its_job_dir(task_name, index):
    job_dir = layout.new_job_dir("/root/jobs", task_name)
    assert posixpath.dirname(job_dir) == "/root/jobs"
    assert layout.is_job_dir_name(posixpath.basename(job_dir))
    paths = [
        layout.script_path(job_dir),
        layout.payload_path(job_dir),
        layout.child_config_path(job_dir),
        layout.result_path(job_dir, index),
        layout.checkpoint_path(job_dir, index),
        layout.requeue_count_path(job_dir, index),
        *layout.log_patterns(job_dir, array=index % 2 == 0),
    ]
    assert all(posixpath.dirname(path) == job_dir for path in paths)
    assert len(set(paths)) == len(paths)  # no two facts share a file
    assert fnmatch.fnmatchcase(posixpath.basename(layout.result_path(job_dir, index)), layout.RESULT_GLOB)
    assert not fnmatch.fnmatchcase(
        posixpath.basename(layout.checkpoint_path(job_dir, index)), layout.RESULT_GLOB
    )


_NAMES = st.from_regex(r"SLURM_(SDK_|CONF|JOB_|ARRAY_)?[A-Z0-9_]{0,8}", fullmatch=True) | st.sampled_from(
    ["SLURM_CONF", "SLURM_SDK_CONFIG", "SLURM_SDK", "SLURM_CONFX", "SLURMD_NODENAME", "SLURM_JOB_ID", "HOME"]
)


@settings(max_examples=25, deadline=None)
@given(names=st.sets(_NAMES, min_size=1, max_size=12))
def test_the_shell_prefix_keeps_what_the_python_rule_keeps(names):
    environ = {"PATH": os.environ["PATH"], **{name: "1" for name in names}}
    expected = {name for name in scrub_slurm_env(environ) if name.startswith("SLURM")}
    listed = subprocess.run(
        ["sh", "-c", SCRUB_SLURM_ENV_SHELL + "env"], env=environ, capture_output=True, text=True, check=True
    ).stdout
    assert {line.split("=", 1)[0] for line in listed.splitlines() if line.startswith("SLURM")} == expected
    assert {"SLURM_CONF", "SLURM_SDK_CONFIG"} & names <= expected


def test_local_commands_run_without_the_enclosing_jobs_variables(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_SDK_CONFIG", "/x.yaml")
    seen = HostTransport().run("env").stdout
    assert "SLURM_JOB_ID=" not in seen and "SLURM_SDK_CONFIG=/x.yaml" in seen


def test_home_is_expanded_once_for_every_far_side_path():
    transport = HostTransport()
    home = os.path.expanduser("~").rstrip("/")
    assert transport.expand_home("~") == home
    assert transport.expand_home("~/a/b") == f"{home}/a/b"
    assert transport.expand_home("/abs/~/x") == "/abs/~/x"
    assert transport.expand_home("~other/x") == "~other/x"  # another user's home is not ours to guess
