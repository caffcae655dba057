"""Fault injection on a running dev-cluster stack, and Slurm's production defaults as an explicit choice.

``Faults(stack)`` has one method per fault; each records what it changed in the stack's ``state.json``
(``faults``), and ``reset()`` undoes all of it: containers unpaused and started, the login node back on
the port it keeps, the sbatch wrapper removed, the dev defaults written back. The ``faults`` pytest
fixture resets at teardown, even when the test failed; ``harness up`` (and every test session) resets
faults whose owner process has died.

Slurm settings go through ``/etc/slurm/faults.conf``, the last include of every container's slurm.conf:
it is written on all four containers (running or not: ``docker cp``), so every node keeps the same
config hash, then ``scontrol reconfigure`` applies it. The settings themselves live in
``images/slurm/defaults/<name>.conf`` (baked into the image as ``/etc/slurm/defaults/``, where a fresh
container takes ``dev.conf`` from).

The kinds of fault live in their own modules: ``fault_slurm`` (settings, site limits, job records),
``fault_containers`` (nodes and services), ``fault_ssh`` (SSH sessions, sbatch); ``slurm_defaults`` reads
the defaults files, ``fault_base`` holds the record. Their public names are importable from here too.
"""

from __future__ import annotations

from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.fault_base import READY_SECONDS, Stack
from slurm_dev_cluster.fault_containers import PAUSE_ATTEMPTS, ContainerFaults
from slurm_dev_cluster.fault_slurm import JOB_ID, SlurmFaults
from slurm_dev_cluster.fault_ssh import (
    DROP_SESSIONS,
    SBATCH_IN_STACK,
    SBATCH_WRAPPER,
    SWITCHES_IN_STACK,
    SSHFaults,
)
from slurm_dev_cluster.locks import User, is_alive
from slurm_dev_cluster.slurm_defaults import (
    CHECKED_SETTINGS,
    DEFAULTS_DIR,
    DEV,
    FAULTS_CONF,
    FORGET_AFTER_SECONDS,
    defaults,
    defaults_names,
    render,
)

__all__ = [
    "CHECKED_SETTINGS",
    "DEFAULTS_DIR",
    "DEV",
    "DROP_SESSIONS",
    "FAULTS_CONF",
    "FORGET_AFTER_SECONDS",
    "JOB_ID",
    "PAUSE_ATTEMPTS",
    "READY_SECONDS",
    "SBATCH_IN_STACK",
    "SBATCH_WRAPPER",
    "SWITCHES_IN_STACK",
    "Faults",
    "Stack",
    "defaults",
    "defaults_names",
    "render",
]


class Faults(SlurmFaults, ContainerFaults, SSHFaults):
    """The faults a test can inject into one running stack; ``reset()`` undoes every one of them."""

    def active(self) -> list[str]:
        """What is changed right now, for humans (empty: the stack is as it started)."""
        record = self._record()
        parts = []
        if record.get("defaults", DEV) != DEV:
            parts.append(f"{record['defaults']} defaults")
        parts += [f"{key}={value}" for key, value in (record.get("overrides") or {}).items()]
        parts += [f"{service} stopped" for service in record.get("stopped", [])]
        parts += [f"{service} paused" for service in record.get("paused", [])]
        if record.get("sbatch"):
            parts.append("sbatch wrapper " + ", ".join(f"{k}={v}" for k, v in record["sbatch"].items()))
        if record.get("login_port"):
            parts.append(f"login restarted (was on port {record['login_port']})")
        if record.get("site_limits"):
            limits = record["site_limits"]
            parts.append(
                f"MaxSubmitJobsPerUser={limits['max_submit_jobs']} on QOS {', '.join(limits['qos'])}"
            )
        return parts

    def owner_alive(self) -> bool:
        owner = self._record().get("owner")
        return bool(owner) and is_alive(User(owner["pid"], owner.get("start_time", ""), "", ""))

    # ---- reset ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Undo every recorded fault; each step is tried even if an earlier one fails (then raises)."""
        record = self._record()
        errors = []
        steps = [(f"unpause {s}", lambda s=s: self.unpause(s)) for s in record.get("paused", [])]
        steps += [(f"start {s}", lambda s=s: self.start_node(s)) for s in record.get("stopped", [])]
        if record.get("sbatch"):
            steps.append(("remove the sbatch wrapper", self.sbatch_normal))
        if record.get("login_port"):
            steps.append(
                ("move login back to its port", lambda: self._restore_login_port(record["login_port"]))
            )
        if record.get("site_limits"):
            steps.append(("lift the site limits", self.lift_site_limits))
        if record.get("defaults", DEV) != DEV or record.get("overrides"):
            steps.append(("write the dev defaults", lambda: self._configure(DEV, {})))
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # keep undoing the rest; report everything at the end
                errors.append(f"{what}: {exc}")
        if errors:
            raise StackError(
                "resetting faults failed:\n  "
                + "\n  ".join(errors)
                + "\nfix: `slurm-dev-cluster down --force` then `up` gives a fresh stack"
            )
        self.stack.update_state(faults={})
        if steps:
            self.stack.events.record("fault", project=self.stack.project, action="reset")
