"""What a submission and a result check cost against real Slurm over real SSH, counted with the SSH
transport's counters: one remote command per submission (files, sbatch and record), one per result check,
no SFTP; the record written in the sbatch command finds the job from a new handle."""

from __future__ import annotations

import pytest

from slurm.transports.ssh import SSHTransport
from slurm.waiting import check_result_files

from . import jobs

pytestmark = pytest.mark.integration


def test_submit_and_a_result_check_are_one_remote_command_each(slurm_cluster):
    transport = slurm_cluster.backend.transport
    if not isinstance(transport, SSHTransport):
        pytest.skip("counts the SSH transport's commands")
    assert slurm_cluster.submit(jobs.double, 1).result(timeout=120) == 2  # first: job root, probes
    before = (transport.commands, transport.sftp_operations)
    job = slurm_cluster.submit(jobs.double, 7)
    assert (transport.commands, transport.sftp_operations) == (before[0] + 1, before[1])
    job.wait(timeout=120)
    handle = slurm_cluster.job(job.job_id)  # found by the record the sbatch command wrote
    before = (transport.commands, transport.sftp_operations)
    check_result_files([handle])
    assert (transport.commands, transport.sftp_operations) == (before[0] + 1, before[1])
    assert handle.last_state.is_terminal and handle.result(timeout=10) == 14


def test_a_three_task_map_is_one_remote_command_to_submit(slurm_cluster):
    transport = slurm_cluster.backend.transport
    if not isinstance(transport, SSHTransport):
        pytest.skip("counts the SSH transport's commands")
    slurm_cluster.map(jobs.double, [0])  # first: job root, home, MaxArraySize (scontrol), asked once
    before = (transport.commands, transport.sftp_operations)
    mapped = slurm_cluster.map(jobs.double, [1, 2, 3])
    assert (transport.commands, transport.sftp_operations) == (before[0] + 1, before[1])
    assert mapped.results(timeout=120) == [2, 4, 6]
    assert slurm_cluster.job(mapped.array_ids[0]).results(timeout=30) == [2, 4, 6]
