"""Faults on the Slurm side: the defaults and settings slurmctld runs with, a site's submit limits, and
jobs preempted or with a stale accounting record.

Slurm settings go through ``/etc/slurm/faults.conf``, the last include of every container's slurm.conf:
it is written on all the cluster's containers (running or not: ``docker cp``), so every node keeps the
same config hash, then ``scontrol reconfigure`` applies it (``slurm_dev_cluster.slurm_defaults``).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from slurm_dev_cluster import site_limits
from slurm_dev_cluster.compose_project import ACCOUNTING_SERVICE
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.fault_base import READY_SECONDS, FaultsBase
from slurm_dev_cluster.readiness import HEALTHCHECK_IN_STACK, SlurmctldSettings, wait_for
from slurm_dev_cluster.slurm_defaults import (
    CHECKED_SETTINGS,
    DEV,
    FAULTS_CONF,
    FORGET_AFTER_SECONDS,
    defaults,
    render,
)
from slurm_dev_cluster.stack_state import write_text_atomically

#: A job id as the faults take it: a job, or one task of an array (12, 12_3).
JOB_ID = re.compile(r"\d+(_\d+)?")


class SlurmFaults(FaultsBase):
    """Slurm's settings, site limits and job records, changed through slurmctld and slurmdbd."""

    def slurm_defaults(self, name: str) -> None:
        """Run the cluster with ``dev`` (kind: kill_invalid_depend, MinJobAge=120, requeue hold cred_expire=10)
        or ``production`` (Slurm's stock behaviour: no kill_invalid_depend, MinJobAge=300, a requeued job held
        120 s, accounting off) defaults."""
        self._configure(name, self._record().get("overrides") or {})

    def forget_finished_jobs(self, after: int = FORGET_AFTER_SECONDS) -> None:
        """slurmctld forgets a finished job ``after`` seconds after it ended (MinJobAge; its purge runs
        every few seconds), as a busy production cluster does within minutes."""
        overrides = (self._record().get("overrides") or {}) | {"MinJobAge": str(after)}
        self._configure(self._record().get("defaults", DEV), overrides)

    def remember_finished_jobs(self) -> None:
        """Back to the MinJobAge of the current defaults."""
        overrides = dict(self._record().get("overrides") or {})
        overrides.pop("MinJobAge", None)
        self._configure(self._record().get("defaults", DEV), overrides)

    def site_limits(
        self,
        max_submit_jobs: int = 50,
        max_array_size: int = 20,
        *,
        max_wall: str | None = None,
        max_jobs: int | None = None,
    ) -> None:
        """A site's submit limits: at most ``max_submit_jobs`` jobs (each array task counts) pending or
        running per user (``MaxSubmitJobsPerUser`` on the QOS the job user submits with by default) and
        arrays of at most ``max_array_size`` tasks (``MaxArraySize``); with ``max_wall`` ("00:05:00") that
        QOS's ``MaxWall`` too (a longer job then pends for QOSMaxWallDurationPerJobLimit); with ``max_jobs``
        its ``MaxJobsPerUser`` (jobs running at once; 0 holds every job, pending for
        QOSMaxJobsPerUserLimit until the limit is lifted). Sets the
        enforcement the limits need (``AccountingStorageEnforce``), and gives the job user an association
        if it has none. Needs accounting (slurmdbd)."""
        if max_jobs is not None and max_jobs < 0:
            raise ValueError(f"max_jobs must be >= 0 (0: no job of the user may run), got {max_jobs}")
        if max_submit_jobs < 1 or max_array_size < 1:
            raise ValueError(
                f"limits must be >= 1, got {max_submit_jobs} jobs and arrays of {max_array_size}"
            )
        record = self._record()
        limits = dict(record.get("site_limits") or {})
        # Recorded before anything changes, so a failure halfway is still undone by reset().
        created = "created" in self._controller(site_limits.ensure_association())
        limits["created_account"] = limits.get("created_account") or created
        self._update("site limits: association", site_limits=limits | {"qos": limits.get("qos", {})})
        previous = site_limits.parse_qos_limits(self._controller(site_limits.default_qos_limits()))
        # The values from before the first call are the ones reset() restores.
        limits["qos"] = previous | dict(limits.get("qos") or {})
        limits["max_submit_jobs"] = max_submit_jobs
        self._update("site limits: qos", site_limits=limits)
        wanted = {"MaxSubmitJobsPerUser": str(max_submit_jobs)} | ({"MaxWall": max_wall} if max_wall else {})
        wanted |= {"MaxJobsPerUser": str(max_jobs)} if max_jobs is not None else {}
        for qos in previous:
            self._controller(site_limits.set_qos(qos, wanted))
        # The reconfigure comes after: slurmctld, restarted in place, loads the QOS limits from slurmdbd
        # as it starts, so they hold once it runs with the new settings.
        overrides = (record.get("overrides") or {}) | {
            "MaxArraySize": str(max_array_size),
            "AccountingStorageEnforce": site_limits.ENFORCE,
        }
        self._configure(record.get("defaults", DEV), overrides)
        self._wait_for_config({"AccountingStorageEnforce": site_limits.ENFORCE})

    def lift_site_limits(self) -> None:
        """The QOS limits as they were, the fault's account gone, Slurm's settings back to the defaults'
        (``MaxArraySize`` and ``AccountingStorageEnforce`` as slurm.conf has them)."""
        record = self._record()
        limits = record.get("site_limits") or {}
        overrides = dict(record.get("overrides") or {})
        for key in ("MaxArraySize", "AccountingStorageEnforce"):
            overrides.pop(key, None)
        self._configure(record.get("defaults", DEV), overrides)
        for qos, settings in (limits.get("qos") or {}).items():
            self._controller(site_limits.set_qos(qos, settings))
        if limits.get("created_account"):
            self._controller(site_limits.remove_association())
        self._update("site limits lifted", site_limits={})

    def _configure(self, name: str, overrides: dict[str, str]) -> None:
        text = render(name, overrides)  # raises for an unknown name before anything changes
        self._write_everywhere(FAULTS_CONF, text)
        self._controller("scontrol reconfigure")
        settings = defaults(name) | overrides
        self._wait_for_config({key: settings.get(key, stock) for key, stock in CHECKED_SETTINGS.items()})
        self._update(f"defaults={name} overrides={overrides or '{}'}", defaults=name, overrides=overrides)

    def _write_everywhere(self, path: str, text: str) -> None:
        """The same file on every configured container, running or stopped (``docker cp`` needs no process)."""
        names = self.stack.container_names()
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch) / Path(path).name
            write_text_atomically(local, text)
            for service in self.configured:
                with self._container_call(f"docker cp {path} to {service}") as docker:
                    docker.copy(local, (names[service], path))

    def _wait_for_config(self, expected: dict[str, str]) -> None:
        """Until slurmctld (restarted in place by `scontrol reconfigure` since Slurm 23.11) runs with it."""
        wait_for(
            [SlurmctldSettings(expected, lambda: self._controller("scontrol show config"))],
            READY_SECONDS,
            subject="slurmctld",
            poll=0.3,
            explain=lambda: f"\n{self.stack.daemon_logs_tail(20)}",
        )

    def preempt(self, job_id: str) -> None:
        """Preempt a running job the way PreemptMode=REQUEUE does, as a scheduler admin can at any time:
        ``scontrol requeue`` by root (SIGTERM to the job, SIGKILL after KillWait, then it pends for its
        begin time and runs again; the restart count grows). Nothing to undo."""
        self._controller(f"scontrol requeue {job_id}")

    def release_requeued(self, job_id: str) -> None:
        """Let a requeued job start again now: Slurm holds a requeued batch job about two minutes
        (its begin time) before it may run again; an admin can lift that, and so does this."""
        self._controller(f"scontrol update jobid={job_id} starttime=now")

    def lose_job_start(self, job_id: str) -> None:
        """Accounting falls behind slurmctld: slurmdbd's record of ``job_id`` goes back to PENDING with no
        start time, as when slurmctld died before its agent sent the job's start to slurmdbd, or while
        that agent's queue lags on a busy cluster. ``sacct`` then says PENDING while the job runs, until
        slurmctld sends its next change (the job's end). Nothing to undo."""
        self._rewrite_job_record(job_id, "state=0, time_start=0", "wait until sacct lists the job")

    def lose_job_end(self, job_id: str) -> None:
        """slurmdbd never hears of the end of ``job_id`` (slurmctld died before its agent sent it): its
        record of the ended job goes back to RUNNING with no end time, so ``sacct`` says RUNNING for good
        while slurmctld lists the job's real end until it forgets the job (MinJobAge). Nothing to undo."""
        self._rewrite_job_record(
            job_id, "state=1, time_end=0", "wait until sacct lists the job's end", only_if="time_end > 0"
        )

    def _rewrite_job_record(self, job_id: str, assignments: str, advice: str, only_if: str = "TRUE") -> None:
        """Change slurmdbd's database row of ``job_id`` (``assignments``, SQL) where ``only_if`` holds."""
        if not JOB_ID.fullmatch(job_id):
            raise ValueError(f"a job id is a number, or <array id>_<index> (e.g. 12 or 12_3), got {job_id!r}")
        array_id, _, index = job_id.partition("_")
        which = f"id_array_job={array_id} AND id_array_task={index}" if index else f"id_job={job_id}"
        # The database and the cluster's name, from the files that set them (slurmdbd.conf, slurm.conf).
        script = (
            "db=$(sed -n 's/^StorageLoc=//p' /etc/slurm/slurmdbd.conf); "
            f"cluster=$({HEALTHCHECK_IN_STACK} cluster-name); "
            f'mariadb -N -B "$db" -e "UPDATE ${{cluster}}_job_table SET {assignments} WHERE {which} '
            f'AND {only_if}; SELECT ROW_COUNT()"'
        )
        changed = self.stack.exec(ACCOUNTING_SERVICE, ["sh", "-c", script]).split()
        if changed != ["1"]:
            raise StackError(
                f"slurmdbd holds no record of job {job_id} to change (rows changed: {changed}): {advice} "
                "before making its record stale"
            )
