"""Snakemake with its Slurm executor plugin, run from the login node as its users run it: a workflow of 3
independent rules, each a Slurm job, run side by side; one names its account (`slurm_account`), one its
partition (`slurm_partition`), and the third leaves the account to the plugin, which looks up the user's
default. Each rule writes what Slurm gave its job: its job id (for Slurm's record of it) and the node's
hostname."""

from __future__ import annotations

import uuid

import pytest

from slurm_dev_cluster.stack import accounting_enabled

from .client_sites import client_site

# The module fixture runs the client's whole workflow, its longest wait: one xdist group keeps the module on
# one worker under --dist loadgroup, so it runs once, not once on each worker that takes one of its tests.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("snakemake-client")]
SNAKEFILE = """\
rule all:
    input: "a.txt", "b.txt", "c.txt"

rule a:
    output: "a.txt"
    resources: slurm_account="physics", runtime=5
    shell: "echo $SLURM_JOB_ID $(hostname) > {output}"

rule b:
    output: "b.txt"
    resources: slurm_partition="batch", runtime=5
    shell: "echo $SLURM_JOB_ID $(hostname) > {output}"

rule c:
    output: "c.txt"
    resources: runtime=5
    shell: "echo $SLURM_JOB_ID $(hostname) > {output}"
"""


@pytest.fixture(scope="module")
def outputs(login_transport) -> dict[str, str]:
    if not accounting_enabled():
        pytest.skip("SLURM_SDK_ACCOUNTING=0: no slurmdbd, so no accounts for the plugin to look up")
    site = client_site(
        login_transport,
        "snakemake",
        ("snakemake", "snakemake-executor-plugin-slurm"),
        "snakemake_executor_plugin_slurm",
        sdists=("connection_pool>=0.0.3",),  # a snakemake dependency published as an sdist only
    )
    folder = f"{login_transport.home()}/snakemake-{uuid.uuid4().hex[:8]}"
    login_transport.run(f"mkdir -p {folder}")
    login_transport.write_bytes(f"{folder}/Snakefile", SNAKEFILE.encode())
    try:
        run = login_transport.run(
            # The plugin waits 40 s (its default) after each submission before it first asks Slurm, then
            # snakemake asks every 10 s: minutes of sleep around jobs that take seconds. Their own settings,
            # as a user with short rules would set them. (The plugin also sleeps 5 s before each sbatch,
            # which no setting changes.)
            f"cd {folder} && PATH={site}/bin:$PATH PYTHONPATH={site} python3 -m snakemake --executor slurm "
            "--jobs 3 --latency-wait 10 --slurm-init-seconds-before-status-checks 1 "
            "--seconds-between-status-checks 2 2>&1",
            timeout=900,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-3000:]
        return {name: login_transport.read_bytes(f"{folder}/{name}.txt").decode().strip() for name in "abc"}
    finally:
        login_transport.run(f"rm -rf {folder}", check=False)


def recorded(transport, output: str) -> tuple[str, str, str, str]:
    """Slurm's Account, Partition and NodeList for the job that wrote ``output``, and its hostname."""
    job_id, hostname = output.split()
    account, partition, node = (
        transport.run(f"sacct -n -X -P -j {job_id} -o Account,Partition,NodeList").stdout.strip().split("|")
    )
    return account, partition, node, hostname


def test_a_rule_runs_in_the_account_it_names(outputs, login_transport):
    account, partition, _, _ = recorded(login_transport, outputs["a"])
    assert (account, partition) == ("physics", "debug")  # debug: the default partition


def test_a_rule_runs_in_the_partition_it_names(outputs, login_transport):
    account, partition, _, _ = recorded(login_transport, outputs["b"])
    assert (account, partition) == ("research", "batch")


def test_a_rule_without_an_account_runs_in_the_users_default_on_a_named_node(
    outputs, login_transport, compute_nodes
):
    account, _, node, hostname = recorded(login_transport, outputs["c"])
    assert account == "research" and node in compute_nodes and hostname == node, (account, node, hostname)
