"""Air gap as a fault: the stack's containers reach nothing outside their own Docker network.

Real HPC clusters are often air-gapped; this makes the dev cluster one on demand. Two REJECT rules per
subnet of the stack's network, tagged with a comment naming the project:

* ``DOCKER-USER`` (Docker's chain for user rules, consulted first by ``FORWARD``): new connections from
  the subnet to anywhere but the subnet (the internet, other Docker networks);
* ``INPUT``: new connections from the subnet to the host itself (the bridge gateway, host services).

Traffic inside the stack (Slurm, munge, shared ``/home``) and SSH from the host to the login node's
published port (host-initiated, so its replies are ESTABLISHED, not NEW) keep working. REJECT, not DROP:
tools fail at once with "connection refused" instead of hanging until a timeout. Connections already
open when the rules go in are left alone. Needs root and ``iptables`` on the host (Docker's own rules
need the same).

DNS lookups still get answers (as from a site resolver on an air-gapped network), so a tool fails at
connect time with "connection refused" rather than after resolver timeouts.
"""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from filelock import FileLock

from slurm_dev_cluster import docker_deadline
from slurm_dev_cluster.compose_project import COMPOSE_PROJECT_LABEL, ComposeProject
from slurm_dev_cluster.locks import EventLog
from slurm_dev_cluster.processes import run_bounded


class Stack(Protocol):
    """What the air gap needs of a stack (``slurm_dev_cluster.stack.Stack`` is one)."""

    project: str
    events: EventLog
    state_dir: Path
    compose: ComposeProject


RULE_TAG = "slurm-sdk-airgap"
#: The chains our rules live in (see ``rules``).
CHAINS = ("DOCKER-USER", "INPUT")
IPTABLES_WAIT = "5"  # seconds to wait for the xtables lock other tools (dockerd) may hold
#: One iptables call in all: the lock wait above, then the change itself (milliseconds).
IPTABLES_SECONDS = int(IPTABLES_WAIT) + 25

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AirgapError(RuntimeError):
    """The air gap cannot be applied or checked; the message names the cause and the fix."""


def tag(project: str) -> str:
    return f"{RULE_TAG}:{project}"


def rules(project: str, subnet: Network) -> list[tuple[str, list[str]]]:
    """The rules that cut ``subnet`` off from everything but itself, in chain order: (chain, rule spec).

    DNS is let through first: Docker's embedded resolver forwards from the container's namespace and
    would otherwise make every lookup hang for ~10 s instead of failing fast at connect time.
    """
    net = str(subnet)
    tagged = ["-m", "comment", "--comment", tag(project)]
    reject = ["-m", "conntrack", "--ctstate", "NEW", *tagged, "-j", "REJECT"]
    dns = [
        ("DOCKER-USER", ["-s", net, "-p", proto, "--dport", "53", *tagged, "-j", "RETURN"])
        for proto in ("udp", "tcp")
    ]
    return [*dns, ("DOCKER-USER", ["-s", net, "!", "-d", net, *reject]), ("INPUT", ["-s", net, *reject])]


def stack_subnets(stack: Stack) -> list[Network]:
    """Subnets of the Docker networks compose created for the stack (normally one)."""
    with stack.compose.bounded(docker_deadline.INSPECT_SECONDS, "docker network ls") as docker:
        networks = docker.network.list(filters=[("label", f"{COMPOSE_PROJECT_LABEL}={stack.project}")])
    subnets = [
        ipaddress.ip_network(entry["Subnet"], strict=False)
        for network in networks
        for entry in (network.ipam.config or [])
        if entry.get("Subnet")
    ]
    return sorted(subnets, key=lambda n: (n.version, str(n)))


def block_egress(stack: Stack) -> list[Network]:
    """Insert the REJECT rules for every subnet of the running stack (idempotent); returns the subnets."""
    subnets = stack_subnets(stack)
    if not subnets:
        raise AirgapError(
            f"stack {stack.project} has no Docker network (is it running?); "
            "start it with `slurm-dev-cluster up`, then block its egress"
        )
    if _all_present(stack.project, subnets):
        return subnets
    restore_egress(stack)  # a partial set (or a recreated network's old subnet) is replaced as a whole
    for subnet in subnets:
        # Inserted at the top, last first, so the chain ends up in ``rules`` order before Docker's RETURN.
        for chain, spec in reversed(rules(stack.project, subnet)):
            _iptables(subnet.version, "-I", chain, "1", *spec)
    stack.events.record("airgap-on", project=stack.project, subnets=[str(s) for s in subnets])
    return subnets


def restore_egress(stack: Stack) -> int:
    """Remove every rule tagged with the stack's project (whatever subnet it named); returns how many.

    Safe to call when nothing is blocked or iptables is absent (then there is nothing to remove), so
    ``harness down`` calls it unconditionally.
    """
    removed = 0
    for version in (4, 6):
        if not shutil.which(_binary(version)):
            continue
        for chain, spec in _tagged_rules(version, stack.project):
            _iptables(version, "-D", chain, *spec)
            removed += 1
    if removed:
        stack.events.record("airgap-off", project=stack.project, rules=removed)
    return removed


def egress_is_blocked(stack: Stack) -> bool:
    """True when every subnet of the running stack has all its rules in place."""
    return _all_present(stack.project, stack_subnets(stack))


@contextmanager
def egress_blocked(stack: Stack) -> Iterator[Stack]:
    """``with egress_blocked(stack):`` the containers are air-gapped; restored on exit, even on error."""
    try:
        block_egress(stack)
        yield stack
    finally:
        restore_egress(stack)


def egress_lock(stack: Stack) -> FileLock:
    """Held by whoever needs the stack's egress in a known state (blocked or open) for a while, so a test
    that needs the index is never run while another process's test has the stack air-gapped."""
    return FileLock(str(stack.state_dir / "egress.lock"))


# ---- iptables -------------------------------------------------------------------------------------


def _binary(version: int) -> str:
    return "iptables" if version == 4 else "ip6tables"


def _iptables(version: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = _binary(version)
    if not shutil.which(binary):
        raise AirgapError(
            f"`{binary}` not found on the host, so the air gap cannot be applied; "
            f"install it (`apt-get install iptables`) and run as root"
        )
    run = run_bounded(
        [binary, "-w", IPTABLES_WAIT, *args],
        IPTABLES_SECONDS,
        AirgapError,
        "something holds the xtables lock or the kernel's firewall hangs (`iptables -L -n` by hand shows "
        "which); retry when it answers",
    )
    if check and run.returncode != 0:
        raise AirgapError(_explain(binary, args, run.stderr.strip() or run.stdout.strip()))
    return run


def _explain(binary: str, args: tuple[str, ...], detail: str) -> str:
    command = f"{binary} {shlex.join(args)}"
    lowered = detail.lower()
    if "permission denied" in lowered or "you must be root" in lowered:
        fix = "run as root (the air gap edits the host's firewall, like Docker itself)"
    elif "docker-user" in lowered or "no chain" in lowered:
        fix = (
            "Docker's DOCKER-USER chain is missing: dockerd must manage iptables "
            "(not `--iptables=false`, not rootless); restart dockerd to recreate it"
        )
    elif "conntrack" in lowered or "comment" in lowered or "reject" in lowered:
        fix = "the kernel lacks the conntrack/comment/REJECT netfilter modules; load them (modprobe xt_conntrack)"
    else:
        fix = "check that iptables works on this host (`iptables -S DOCKER-USER`)"
    return f"`{command}` failed: {detail}\nfix: {fix}"


def _all_present(project: str, subnets: list[Network]) -> bool:
    return bool(subnets) and all(
        _exists(s.version, chain, spec) for s in subnets for chain, spec in rules(project, s)
    )


def _exists(version: int, chain: str, spec: list[str]) -> bool:
    run = _iptables(version, "-C", chain, *spec, check=False)
    if run.returncode == 0:
        return True
    detail = run.stderr.strip()
    # "-C" answers 1 with "Bad rule (does a matching rule exist in that chain?)" when the rule is absent
    # (nf_tables says the same for a missing chain, which `-I` then explains); any
    # other answer (no permission, no chain) is a real problem.
    if run.returncode == 1 and "bad rule" in detail.lower():
        return False
    raise AirgapError(_explain(_binary(version), ("-C", chain, *spec), detail or f"exit {run.returncode}"))


def _tagged_rules(version: int, project: str) -> list[tuple[str, list[str]]]:
    """Rules in our chains carrying the project's tag, as (chain, spec) ready for ``-D``."""
    found = []
    for chain in CHAINS:
        run = _iptables(version, "-S", chain, check=False)
        if run.returncode != 0:
            continue  # no such chain (Docker not managing iptables): nothing of ours can be in it
        for line in run.stdout.splitlines():
            words = shlex.split(line)
            if words[:2] == ["-A", chain] and _comment(words) == tag(project):
                found.append((chain, words[2:]))
    return found


def _comment(words: list[str]) -> str | None:
    return words[words.index("--comment") + 1] if "--comment" in words[:-1] else None
