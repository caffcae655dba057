"""Cgroup enforcement, the opt-in profile (images/cgroups.compose.yaml, SLURM_SDK_CGROUPS=1): the kernel
confines a job's memory and cores, and a job over its memory ends OUT_OF_MEMORY in sacct, as at a site.
Run on a stack started with the profile (`SLURM_SDK_COMPOSE_FILES=images/cgroups.compose.yaml`); on the
default stack (memory enforced by sampling, no privilege) these tests skip, saying so."""

from __future__ import annotations

import pytest

from slurm import JobFailedError
from slurm_dev_cluster.stack import accounting_enabled

from . import resource_jobs
from .waiting import wait_until

pytestmark = pytest.mark.integration
HOG = 'python3 -c "import time; b = bytearray(1) * (400 << 20); time.sleep(4)"'


@pytest.fixture
def cgroups(login_transport):
    config = login_transport.run("scontrol show config").stdout
    if "proctrack/cgroup" not in config:
        pytest.skip(
            "this stack runs without cgroups (the default); start it with images/cgroups.compose.yaml"
        )


def test_a_job_over_its_memory_ends_out_of_memory(cgroups, login_transport):
    if not accounting_enabled():
        pytest.skip("SLURM_SDK_ACCOUNTING=0: no sacct")
    run = login_transport.run
    hog = run(f"sbatch --wait --parsable --mem=50M -o /dev/null --wrap '{HOG}'", check=False).stdout.strip()
    fits = run("sbatch --wait --parsable --mem=1G -o /dev/null --wrap 'true'").stdout.strip()

    def states() -> dict[str, str]:
        # A job's end reaches slurmdbd a moment after `sbatch --wait` returns: sacct may still say RUNNING.
        return {job: run(f"sacct -n -X -P -j {job} -o State").stdout.strip() for job in (hog, fits)}

    expected = {hog: "OUT_OF_MEMORY", fits: "COMPLETED"}
    wait_until(lambda: states() == expected, 60, lambda: f"sacct saying {expected}; it says {states()}")


def test_the_sdk_reports_the_oom_kill(cgroups, slurm_cluster):
    job = slurm_cluster.submit(resource_jobs.hold_memory.options(mem="50M"), 400)
    with pytest.raises(JobFailedError) as caught:
        job.result(timeout=300)
    assert caught.value.state == "OUT_OF_MEMORY", caught.value


def test_a_job_sees_only_the_cores_it_was_given(cgroups, login_transport):
    """task/cgroup confines a job to its CPUs (a cpuset): one CPU asked, one CPU seen. A whole node sees
    every CPU the container has (a node declares 4; this host may have fewer)."""
    one = login_transport.run("srun -c1 nproc").stdout.split()
    whole = login_transport.run("srun -c4 bash -c 'nproc; nproc --all'").stdout.split()
    assert one == ["1"], one
    assert whole[0] == whole[1], whole
