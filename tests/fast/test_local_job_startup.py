"""What a local job's processes import while they run: the local backend starts a launcher and a runner for
every submission (hundreds in the fast tier, one per item of a map on a laptop), so each stays lean.

The processes are the real ones, run through a real submission: Python's own ``-X importtime`` report
(``PYTHONPROFILEIMPORTTIME``, inherited by both) lists every module each of them imported, at start-up and
while it ran, in the launcher's log and in the job's stderr."""

from __future__ import annotations

import re
from pathlib import Path

from tests.fast import tasks

# One line per module: "import time: <self> | <cumulative> | <indent><module>".
_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", re.MULTILINE)

#: Modules that cost a local job's launcher milliseconds each and that it has no use for: the job script's
#: renderer with the resource checks (dataclasses, inspect, typing), a thread pool that imports logging,
#: socket for the host name, the SDK's whole error module for one error, tracebacks for a failure that did
#: not happen.
NOT_IN_THE_LAUNCHER = {
    "slurm.rendering",
    "slurm.resources",
    "slurm.node.checkpoint",
    "slurm.errors",
    "dataclasses",
    "inspect",
    "typing",
    "concurrent.futures",
    "logging",
    "socket",
    "traceback",
}


def _imported(text: str) -> set[str]:
    return set(_IMPORTED.findall(text))


def test_a_local_jobs_launcher_and_runner_import_only_what_they_use(cluster, monkeypatch):
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    job = cluster.submit(tasks.add, 2, b=3)  # add names resources: time, cpus and mem
    assert job.result(timeout=30) == 5
    launcher_log = Path(cluster.backend.state_dir, "launchers", f"{job.job_id}.log").read_text()
    launcher = _imported(launcher_log)
    assert {"slurm.backends.local_launcher", "subprocess", "json"} <= launcher, launcher_log
    assert not launcher & NOT_IN_THE_LAUNCHER, launcher_log
    runner = _imported(job.stderr())
    # The task's module was imported to call it; its decorators' resources were checked when this test
    # imported it, not again in the job.
    assert {"slurm.node.runner", "tests.fast.tasks"} <= runner, job.stderr()
    assert not runner & {"slurm.resources", "dataclasses", "inspect", "typing", "_pickle"}, job.stderr()


def test_an_array_runs_every_task_on_the_launchers_own_threads(make_cluster, monkeypatch):
    """An array's tasks run ``parallelism`` at a time on threads of the launcher (not concurrent.futures,
    which imports logging), and every one of them ends with its result."""
    cluster = make_cluster()
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    jobs = cluster.map(tasks.square, range(5))
    assert jobs.results(timeout=60) == [0, 1, 4, 9, 16]
    launcher_log = Path(cluster.backend.state_dir, "launchers", f"{jobs.array_ids[0]}.log").read_text()
    assert "threading" in _imported(launcher_log)
    assert not _imported(launcher_log) & NOT_IN_THE_LAUNCHER, launcher_log
