"""What uses a stack besides the test sessions registered with it: the job user's jobs and SSH connections.

``harness down`` refuses while any are active (an SDK script, ``harness smoke``, someone's ``harness ssh``),
unless ``--force``, and says what it saw. One ``docker exec`` on the login node asks both questions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import preflight
from slurm_dev_cluster.stack import SSH_USER, Stack

#: squeue bounded (slurmctld may be down or paused), then the established connections to sshd.
QUERY = (
    f"timeout 5 squeue -h -u {SSH_USER} -o '%i %T %j' 2>&1; echo \"squeue-exit=$?\"; "
    "ss -Htn state established '( sport = :22 )'"
)
LOOPBACK = ("127.0.0.1", "[::1]", "::1")  # the login node's own healthcheck logs in over loopback


@dataclass(frozen=True)
class Activity:
    jobs: list[str] = field(default_factory=list)  # "<id> <state> <name>"
    connections: list[str] = field(default_factory=list)  # peer "address:port"
    unknown: str = ""  # why the job list could not be read (slurmctld down, login node not running)

    def findings(self) -> list[str]:
        """One line per kind of activity, for the refusal message; [] when nothing is active."""
        lines = []
        if self.jobs:
            shown = ", ".join(self.jobs[:5]) + (
                f" and {len(self.jobs) - 5} more" if len(self.jobs) > 5 else ""
            )
            lines.append(f"{len(self.jobs)} job(s) of user {SSH_USER} in the queue ({shown})")
        if self.connections:
            lines.append(
                f"{len(self.connections)} SSH connection(s) to the login node "
                f"({', '.join(self.connections[:5])})"
            )
        return lines


def outside_activity(stack: Stack) -> Activity:
    """Jobs and SSH connections of the job user; nothing (with the reason) when the login node is down."""
    if not stack.services().get("login", "").startswith("running"):
        return Activity(unknown="the login node is not running")
    try:
        return parse(stack.exec("login", ["sh", "-c", QUERY]))
    except DockerException as exc:
        return Activity(unknown=f"the login node did not answer ({preflight._first_line(exc)})")


def parse(output: str) -> Activity:
    """``QUERY``'s output -> the jobs, the connections from outside the container, or why jobs are unknown."""
    jobs_part, _, rest = output.partition("squeue-exit=")
    exit_code, _, connections_part = rest.partition("\n")
    jobs = [line.strip() for line in jobs_part.splitlines() if line.strip()]
    unknown = ""
    if exit_code.strip() != "0":
        unknown = f"squeue failed: {' '.join(jobs)[:200] or 'exit ' + exit_code.strip()}"
        jobs = []
    peers = [line.split()[-1] for line in connections_part.splitlines() if line.strip()]
    outside = [peer for peer in peers if peer.rsplit(":", 1)[0] not in LOOPBACK]
    return Activity(jobs, outside, unknown)
