"""slurm.node.name.node_name: the one answer to "which node am I on" for every job-side report."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from slurm import diagnostics
from slurm.node import ranks
from slurm.node.name import node_name

NAME = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
SWITCHES = st.lists(st.from_regex(r"s[0-9]{1,3}", fullmatch=True), max_size=3)
BLANK = st.sampled_from(["", " ", None])


def _env(slurmd: str | None, topology: str | None) -> dict[str, str]:
    pairs = {"SLURMD_NODENAME": slurmd, "SLURM_TOPOLOGY_ADDR": topology}
    return {key: value for key, value in pairs.items() if value is not None}


@given(slurmd=NAME, switches=SWITCHES, other=NAME)
def test_slurmds_name_wins_over_the_topology_address(slurmd, switches, other):
    assert node_name(_env(slurmd, ".".join([*switches, other]))) == slurmd


@given(blank=BLANK, switches=SWITCHES, node=NAME)
def test_without_slurmds_name_the_topology_address_ends_in_the_node(blank, switches, node):
    assert node_name(_env(blank, ".".join([*switches, node]))) == node


@given(slurmd=BLANK, topology=BLANK)
def test_outside_a_slurm_job_it_is_the_host_name(slurmd, topology):
    assert node_name(_env(slurmd, topology)) == os.uname().nodename


def test_rank_context_and_node_info_report_the_same_node(monkeypatch):
    """The job-side reports share the helper: a container id host name never leaks into them."""
    monkeypatch.setenv("SLURMD_NODENAME", "c7")
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    assert ranks.rank_context().nodes == ("c7",)
    assert diagnostics.node_info()["host"] == "c7"  # calling a task runs it here, in this process
