"""LocalCommandBackend details that the end-to-end tests do not reach."""

from __future__ import annotations

import itertools
import os
import subprocess
import types

import pytest

from slurm import JobFailedError, JobState, SubmitError
from slurm.backends.base import NEVER_SATISFIED
from slurm.backends.local import LocalCommandBackend, parse_array_spec, parse_sbatch_header
from slurm.inherited_env import scrub_slurm_env
from tests.fast import tasks
from tests.fast.test_end_to_end import wait_until


@pytest.mark.parametrize(
    ("spec", "indexes", "throttle"),
    [
        ("0-3", [0, 1, 2, 3], None),
        ("0-9%2", list(range(10)), 2),
        ("1,3,5-6", [1, 3, 5, 6], None),
        ("4", [4], None),
    ],
)
def test_array_specs(spec, indexes, throttle):
    assert parse_array_spec(spec) == (indexes, throttle)


@pytest.mark.parametrize("spec", ["", "a-b", "3-1", "0-3%0", "-1"])
def test_bad_array_specs(spec):
    with pytest.raises(SubmitError, match="array spec"):
        parse_array_spec(spec)


def test_sbatch_header_stops_at_first_command():
    script = "#!/bin/bash\n#SBATCH --time=5\n#SBATCH --exclusive\n\n# comment\necho hi\n#SBATCH --mem=1G\n"
    assert parse_sbatch_header(script) == {"time": "5", "exclusive": ""}


def test_scrub_keeps_conf_and_sdk_settings():
    environ = {
        "SLURM_JOB_ID": "1",
        "SLURM_CONF": "/etc/slurm.conf",
        "SLURM_SDK_CONFIG": "x",
        "SLURMD_NODENAME": "c1",
        "PATH": "/bin",
    }
    assert scrub_slurm_env(environ) == {
        "SLURM_CONF": "/etc/slurm.conf",
        "SLURM_SDK_CONFIG": "x",
        "SLURMD_NODENAME": "c1",
        "PATH": "/bin",
    }


def test_submit_rejects_unknown_dependency_and_oversized_array(tmp_path):
    backend = LocalCommandBackend(str(tmp_path / "state"), max_array_size=4)
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    with pytest.raises(SubmitError, match="unknown job 99"):
        backend.submit(str(script), dependencies=["99"])
    with pytest.raises(SubmitError, match="exceeds MaxArraySize=4"):
        backend.submit(str(script), array="0-4")
    with pytest.raises(SubmitError, match="dependency type 'after'"):
        backend.submit(str(script), dependency_type="after")
    assert backend.job_ids() == []


def test_a_dependency_without_state_cancels_the_job_naming_it(tmp_path):
    """A dependency whose state file is gone (removed by hand, or a cleanup) can never end: the dependent
    job ends CANCELLED as never satisfiable, its error log naming the dependency, instead of waiting forever."""
    backend = LocalCommandBackend(str(tmp_path / "state"))
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH --output={tmp_path}/%j.out\ntrue\n")
    first = backend.submit(str(script))
    assert wait_until(lambda: backend.states([first]) == {first: JobState.COMPLETED}, timeout=60)
    (tmp_path / "state/states" / first).unlink()
    second = backend.submit(str(script), dependencies=[first])
    assert wait_until(lambda: backend.states([second]) == {second: JobState.CANCELLED}, timeout=60)
    assert backend.statuses([second])[second].reason == NEVER_SATISFIED
    log = (tmp_path / f"{second}.out").read_text()
    assert f"DependencyNeverSatisfied (afterok: {first} has no state in {tmp_path / 'state/states'})" in log


def test_a_requeued_job_runs_again_only_once_every_process_of_its_run_has_ended(cluster, tmp_path):
    """As Slurm does: the script's end is not the run's. A process the run started that is still ending (here
    0.3 s after SIGTERM; a rank writing its outcome) ends before the next run starts, so it cannot overwrite
    what the next run writes."""
    marker = str(tmp_path / "child-ended")
    job = cluster.submit(tasks.outlived_by_its_child, marker, 0.3)
    assert wait_until(lambda: os.path.exists(marker + ".ready"), timeout=30), "the child never started"
    cluster.backend.preempt(job.job_id)
    assert job.result(timeout=30) is True, "the rerun started before the first run's child had ended"
    assert job.restarts == 1


def test_cancel_one_array_task(cluster):
    jobs = cluster.map(tasks.nap, [0, 60, 0])
    jobs[1].cancel()
    assert jobs.wait(timeout=30) == [JobState.COMPLETED, JobState.CANCELLED, JobState.COMPLETED]
    # The waits ended on the result files; the backend records the tasks' exits a moment later.
    assert wait_until(
        lambda: cluster.backend.states(jobs.array_ids) == {jobs.array_ids[0]: JobState.CANCELLED}
    )
    assert jobs[2].result() == 0
    with pytest.raises(JobFailedError, match="CANCELLED"):
        jobs.results()


def test_a_job_is_seen_cancelled_only_once_its_log_says_why(tmp_path, monkeypatch):
    """Readers take a local job's state without the lock: when the launcher cancels a job its dependencies
    never allow, the error log line exists before the CANCELLED state does (a reader seeing the state
    finds the reason too)."""
    from slurm.backends import local_dependencies
    from slurm.backends.local_state import LocalStateDir

    jobs = LocalStateDir(str(tmp_path / "state"))
    record = {
        "id": "9",
        "array": None,
        "dependencies": ["8"],  # never submitted: no state file
        "dependency_type": "afterok",
        "sbatch": {"output": str(tmp_path / "%j.out")},
        "submit_dir": str(tmp_path),
    }
    seen_with_log = []
    write_state = LocalStateDir._write_state

    def watched(self, element, state):
        seen_with_log.append((state, (tmp_path / f"{element}.out").exists()))
        return write_state(self, element, state)

    monkeypatch.setattr(LocalStateDir, "_write_state", watched)
    assert local_dependencies.wait_for_dependencies(jobs, record) is False
    assert seen_with_log == [(JobState.CANCELLED, True)]
    assert "DependencyNeverSatisfied (afterok: 8 has no state in" in (tmp_path / "9.out").read_text()


def test_a_dependency_is_looked_at_often_at_first_then_every_50_ms(tmp_path, monkeypatch):
    """The launcher looks at a dependency every 10 ms at first (a quick parent's end is seen at once), then
    less often, x1.25 per look, up to every 50 ms (a long wait costs no more than before)."""
    from slurm.backends import local_dependencies
    from slurm.backends.local_state import LocalStateDir

    jobs = LocalStateDir(str(tmp_path / "state"))
    os.makedirs(jobs._path("states"))
    jobs._write_state("8", JobState.RUNNING)
    jobs._write_state("9", JobState.PENDING)
    record = {"id": "9", "array": None, "dependencies": ["8"], "dependency_type": "afterok"}
    pauses: list[float] = []

    def sleep(seconds):  # the dependency ends after the twelfth look
        pauses.append(seconds)
        if len(pauses) == 12:
            jobs._write_state("8", JobState.COMPLETED)

    monkeypatch.setattr(local_dependencies, "time", types.SimpleNamespace(sleep=sleep))
    assert local_dependencies.wait_for_dependencies(jobs, record) is True
    assert pauses[:3] == pytest.approx([0.01, 0.0125, 0.015625])
    assert all(later >= earlier for earlier, later in itertools.pairwise(pauses))
    assert pauses[-1] == 0.05 and len(pauses) == 12


@pytest.mark.parametrize("sbatch", [{"time": "1:00"}, {"time": "1:00", "signal": "B:USR2@30"}])
def test_the_launcher_knows_a_time_limited_script_ended_when_it_ends(sbatch):
    """Under a --time limit the launcher blocks in waitpid until the script ends (Popen.wait with a timeout
    would poll, sleeping up to 50 ms between looks: the job's end, its dependants and the next task of its
    array would wait that long); the exit status comes back as before."""
    from slurm.backends import local_launcher

    script = subprocess.Popen(["sh", "-c", "sleep 0.05; exit 3"])
    looks: list[int] = []
    try_wait = script._try_wait
    script._try_wait = lambda flags: (looks.append(flags), try_wait(flags))[1]
    assert local_launcher._wait_with_limit(script, sbatch) == 3
    assert looks and os.WNOHANG not in looks  # one blocking waitpid, no polling
