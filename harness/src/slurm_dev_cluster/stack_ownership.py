"""Who a stack belongs to, and what the next caller does with one whose owner died.

Only a test session records an owner (its process): a stack started with ``slurm-dev-cluster up`` is the
user's and never changes hands. When that process is gone without stopping its stack, the next caller
finds one of two things:

- the containers still run (a SIGKILLed xdist controller never tears down): the stack is *adopted*, and
  the adopting session stops it at its end as if it had started it (``harness up`` takes it over for the
  user, left up). The jobs the dead session left in the queue are cancelled, unless another live session
  uses the stack;
- the containers stopped too (Docker or the host restarted under the session): the stack is *discarded*,
  containers and volumes, and started afresh. Its volumes are the dead session's leftovers: slurmctld
  would recover that session's queue from its state and run it before anything new, so the start's
  probe job would wait behind jobs nobody waits for.
"""

from __future__ import annotations

from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import airgap, preflight
from slurm_dev_cluster.faults import Faults
from slurm_dev_cluster.locks import Coordinator
from slurm_dev_cluster.stack_parts import StackParts
from slurm_dev_cluster.stack_state import claim


class StackOwnership(StackParts):
    def adopt_if_orphaned(self, session: str, owner_pid: int | None) -> None:
        """A running stack whose owning test session died becomes ``session``'s (see the module)."""
        previous = self.orphaned_by()
        if previous is None or previous == session:
            return
        self.update_state(**claim(session, owner_pid))
        self.events.record("adopt", project=self.project, session=session, previous=previous)
        self.say(
            f"adopting stack {self.project}: the test session that started it ({previous}) died without "
            "stopping it" + ("; this session stops it at its end" if owner_pid else "; it stays up")
        )
        self._cancel_jobs_left_by(previous, session)

    def _cancel_jobs_left_by(self, previous: str, session: str) -> None:
        """With no other session on the stack, the jobs in its queue are the dead one's (a test's sleeper
        runs for minutes): cancelled, so this session's tests do not wait behind them."""
        if Coordinator(self.state_dir).live_users(exclude_session=session):
            return  # a live session's jobs may be among them
        try:
            jobs = sorted(set(self.exec("slurmctld", ["squeue", "-h", "-o", "%A"], seconds=30).split()))
            if jobs:
                self.exec("slurmctld", ["scancel", *jobs], seconds=30)
        except DockerException as exc:  # slurmctld not up (a stack partly up): its start recovers them
            self.say(f"could not cancel the jobs session {previous} left: {preflight._first_line(exc)}")
            return
        if jobs:
            self.say(f"cancelled {len(jobs)} job(s) session {previous} left in the queue: {' '.join(jobs)}")

    def discard_if_orphaned(self, session: str) -> None:
        """A stopped stack whose owning test session died is removed, volumes too (see the module), so
        the start that follows begins from scratch."""
        previous = self.orphaned_by()
        if previous is None or previous == session:
            return
        self.events.record("discard", project=self.project, session=session, previous=previous)
        self.say(
            f"removing stack {self.project} (containers and volumes): the test session that started it "
            f"({previous}) ended without stopping it, and its containers stopped too (Docker or the host "
            "restarted?); its Slurm state holds that session's jobs, so this start begins from scratch"
        )
        self.down(session, by=f"session {session}, which found it left stopped by session {previous}")

    def down(self, session: str = "cli", by: str = "") -> None:
        """Stop the stack and remove its containers and volumes. ``by`` says what stopped it (for the note
        a client still using the stack reads, see ``key_removed_note``; default: the session)."""
        self.say(f"stopping stack {self.project} (containers and volumes)")
        self.compose.down(session)
        self._restore_egress()
        self.access.remove(by or f"session {session}")
        self.state_file.unlink(missing_ok=True)
        self._compose_env_file()  # the state (and its login port pin) went: the next stack starts unpinned

    def _restore_egress(self) -> None:
        """An air gap (slurm_dev_cluster.airgap) must not outlive its stack: its rules name the project's old subnet."""
        try:
            if airgap.restore_egress(self):
                self.say("air gap removed (its firewall rules went with the stack)")
        except airgap.AirgapError as exc:
            self.say(f"could not remove the air gap's firewall rules: {exc}")

    def _reset_abandoned_faults(self, state: dict) -> None:
        """Undo faults left on by a process that died (a killed test); a live owner resets its own."""
        faults = Faults(self)
        if state.get("faults") and not faults.owner_alive():
            self.say(f"resetting faults left on by a process that ended: {', '.join(faults.active())}")
            faults.reset()
            self._containers()  # the login container may have been recreated: new id, port
