"""Faults on the SSH path: the job user's connections to the login node cut, and an sbatch wrapper
(``fault_sbatch.sh``) that loses or delays its answer after queueing the job."""

from __future__ import annotations

from pathlib import Path

from slurm_dev_cluster.fault_base import FaultsBase
from slurm_dev_cluster.ssh_access import SSH_USER

SBATCH_WRAPPER = Path(__file__).with_name("fault_sbatch.sh")
SBATCH_IN_STACK = "/usr/local/bin/sbatch"  # ahead of the real /usr/bin/sbatch on the job user's PATH
SWITCHES_IN_STACK = "/run/harness-faults"  # the wrapper's switches (see fault_sbatch.sh)
#: What ``drop_ssh`` kills: the job user's SSH session processes (OpenSSH >= 9.8 names them sshd-session).
#: A session listed by ps may end before its kill (the unprivileged half of a session exits when its
#: monitor is killed first): that one is gone, not a failure; a process still alive after a failed kill is.
DROP_SESSIONS = (
    f'for pid in $(ps -o pid=,comm= -u {SSH_USER} | awk \'$2 == "sshd-session" || $2 == "sshd" '
    "{print $1}'); do if kill -KILL $pid 2>/dev/null; then echo $pid; "
    'elif kill -0 $pid 2>/dev/null; then echo "cannot kill SSH session process $pid" >&2; exit 1; fi; done'
)


class SSHFaults(FaultsBase):
    """Dropped SSH sessions and a misbehaving sbatch on the login node."""

    def drop_ssh(self) -> list[int]:
        """Cut every SSH connection of the job user to the login node now (their session processes are
        killed); returns the pids killed. Commands already started keep running, as after a network cut."""
        out = self.stack.exec("login", ["sh", "-c", DROP_SESSIONS])
        self.stack.events.record("fault", project=self.stack.project, action="drop-ssh")
        return [int(pid) for pid in out.split()]

    def drop_ssh_after_sbatch(self, times: int = 1) -> None:
        """The next ``times`` sbatch calls on the login node queue their job, then lose the SSH connection
        before the job id is sent back (the submitter cannot know whether the job exists)."""
        self._sbatch_switches(drop=times)

    def slow_sbatch(self, seconds: float) -> None:
        """sbatch queues the job, then holds its answer back ``seconds``: a ``drop_ssh()`` meanwhile lands
        after the job was queued."""
        self._sbatch_switches(delay=seconds)

    def queued_by_sbatch(self) -> list[str]:
        """Job ids queued through the sbatch wrapper since it was installed, in order."""
        listing = f"cat {SWITCHES_IN_STACK}/sbatch-queued 2>/dev/null || true"
        return self.stack.exec("login", ["sh", "-c", listing]).split()

    def _sbatch_switches(self, **switches: float) -> None:
        record = (self._record().get("sbatch") or {}) | switches
        with self._container_call(f"docker cp {SBATCH_WRAPPER.name} to login") as docker:
            docker.copy(SBATCH_WRAPPER, (self._name("login"), SBATCH_IN_STACK))
        writes = " && ".join(
            f"echo {value} > {SWITCHES_IN_STACK}/sbatch-{key}" for key, value in record.items()
        )
        self.stack.exec(
            "login",
            [
                "sh",
                "-c",
                f"mkdir -p {SWITCHES_IN_STACK} && chmod 755 {SBATCH_IN_STACK} && "
                f"touch {SWITCHES_IN_STACK}/sbatch-queued && {writes} && "
                f"chown -R {SSH_USER} {SWITCHES_IN_STACK}",
            ],
        )
        self._update("sbatch " + " ".join(f"{k}={v}" for k, v in switches.items()), sbatch=record)

    def sbatch_normal(self) -> None:
        """The real sbatch again (wrapper and its switches removed)."""
        self.stack.exec("login", ["rm", "-rf", SBATCH_IN_STACK, SWITCHES_IN_STACK])
        self._update("sbatch normal", sbatch={})
