"""slurm_dev_cluster.airgap without touching the host firewall: the rules it writes, and how it finds and removes
them, against a stand-in `iptables` that keeps its chains in a file (the real one is exercised by
tests/integration/test_network.py)."""

from __future__ import annotations

import ipaddress
import marshal
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from slurm_dev_cluster import airgap
from slurm_dev_cluster.locks import EventLog

SUBNET = ipaddress.ip_network("172.30.0.0/16")

#: `iptables -w N -S|-C|-I|-D CHAIN ...` over a file of chains; enough of iptables' behaviour (exit 1 + "Bad
#: rule" for a missing rule, `-S` quoting comments) to exercise the module's parsing.
# It starts on every call (about 30 per test): -S skips the site-packages scan, and it imports nothing (the
# chains are marshal data, not JSON; `quote` is shlex.quote's rule), ~10 ms a start instead of ~25.
FAKE_IPTABLES = f"""#!{sys.executable} -S
import marshal, os, sys
def quote(word):
    if word and all(c.isascii() and (c.isalnum() or c in "_@%+=:,./-") for c in word):
        return word
    return "'" + word.replace("'", "'\\"'\\"'") + "'"
state = os.environ["FAKE_IPTABLES_STATE"]
with open(state, "rb") as file:
    chains = marshal.load(file)
args = sys.argv[3:]  # drop "-w N"
if os.environ.get("FAKE_IPTABLES_MODE") == "denied":
    sys.exit("iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)")
op, chain, spec = args[0], args[1], args[2:]
rules = chains.setdefault(chain, [])
if op == "-S":
    for rule in rules:
        print(f"-A {{chain}} " + " ".join(quote(w) if " " in w or ":" in w else w for w in rule).replace("'", '"'))
elif op == "-C":
    sys.exit(0 if spec in rules else "iptables: Bad rule (does a matching rule exist in that chain?).")
elif op == "-I":
    rules.insert(int(spec[0]) - 1, spec[1:])
elif op == "-D":
    rules.remove(spec)
with open(state, "wb") as file:
    marshal.dump(chains, file)
"""


@dataclass
class FakeStack:
    project: str
    events: EventLog


@pytest.fixture
def iptables(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("iptables", "ip6tables"):
        (bin_dir / name).write_text(FAKE_IPTABLES)
        (bin_dir / name).chmod(0o755)
    state = tmp_path / "chains.marshal"
    state.write_bytes(marshal.dumps({"DOCKER-USER": [["-j", "RETURN"]], "INPUT": []}))
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_IPTABLES_STATE", str(state))
    return state


def stack(tmp_path, project: str = "slurmsdk-x-1234") -> FakeStack:
    return FakeStack(project, EventLog(tmp_path / f"{project}.events.log"))


def test_rules_let_dns_through_then_reject_new_connections_leaving_the_subnet():
    rules = airgap.rules("p", SUBNET)
    assert [chain for chain, _ in rules] == ["DOCKER-USER"] * 3 + ["INPUT"]
    *dns, forward, host = (spec for _, spec in rules)
    assert [s[s.index("-p") + 1] for s in dns] == ["udp", "tcp"] and all(s[-1] == "RETURN" for s in dns)
    assert " ".join(forward).startswith("-s 172.30.0.0/16 ! -d 172.30.0.0/16 -m conntrack --ctstate NEW")
    assert host[:2] == ["-s", "172.30.0.0/16"] and "NEW" in host
    assert all(spec[-2:] == ["-j", "REJECT"] for spec in (forward, host))
    assert all(airgap.tag("p") in spec for _, spec in rules)


def test_restore_removes_exactly_this_projects_rules(tmp_path, iptables):
    ours, theirs = stack(tmp_path), stack(tmp_path, "slurmsdk-other-5678")
    for project in (ours, theirs):  # what block_egress inserts, for two stacks
        for chain, spec in reversed(airgap.rules(project.project, SUBNET)):
            airgap._iptables(4, "-I", chain, "1", *spec)
    assert airgap._all_present(ours.project, [SUBNET])
    assert airgap.restore_egress(ours) == 4
    assert not airgap._all_present(ours.project, [SUBNET])
    assert airgap._all_present(theirs.project, [SUBNET])
    chains = marshal.loads(iptables.read_bytes())
    assert chains["DOCKER-USER"][-1] == ["-j", "RETURN"]  # Docker's own rule untouched
    assert airgap.restore_egress(ours) == 0  # idempotent
    assert "airgap-off" in (tmp_path / f"{ours.project}.events.log").read_text()


def test_restore_without_iptables_is_a_no_op_so_down_always_works(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert airgap.restore_egress(stack(tmp_path)) == 0


def test_missing_iptables_names_the_install_step(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(airgap.AirgapError, match=r"`iptables` not found.*apt-get install iptables"):
        airgap._all_present("p", [SUBNET])


def test_no_permission_says_to_run_as_root(tmp_path, iptables, monkeypatch):
    monkeypatch.setenv("FAKE_IPTABLES_MODE", "denied")
    with pytest.raises(airgap.AirgapError) as error:
        airgap._all_present("p", [SUBNET])
    assert "Permission denied" in str(error.value) and "fix: run as root" in str(error.value)


def test_comment_parsing_reads_iptables_quoting():
    words = shlex.split('-A INPUT -s 10.0.0.0/8 -m comment --comment "slurm-sdk-airgap:p q" -j REJECT')
    assert airgap._comment(words) == "slurm-sdk-airgap:p q"
    assert airgap._comment(["-A", "INPUT", "-j", "ACCEPT"]) is None
