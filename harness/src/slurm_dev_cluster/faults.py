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
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import docker_deadline, site_limits
from slurm_dev_cluster.compose_project import ACCOUNTING_SERVICE, ComposeProject
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.kit import definition_dir
from slurm_dev_cluster.locks import EventLog, User, is_alive, process_start_time
from slurm_dev_cluster.readiness import HEALTHCHECK_IN_STACK, ServicesHealthy, SlurmctldSettings, wait_for
from slurm_dev_cluster.ssh_access import PORT_TAKEN, SSH_USER, Connection
from slurm_dev_cluster.stack_state import PINNED_PORT_KEY, write_text_atomically
from slurm_dev_cluster.topology import Topology


class Stack(Protocol):
    """What fault injection needs of a running stack (``slurm_dev_cluster.stack.Stack`` is one)."""

    project: str
    topology: Topology
    events: EventLog
    compose: ComposeProject
    cluster_services: tuple[str, ...]

    def say(self, message: str) -> None: ...
    def read_state(self) -> dict: ...
    def update_state(self, **changes: object) -> None: ...
    def services(self) -> dict[str, str]: ...
    def container_names(self) -> dict[str, str]: ...
    def exec(
        self, service: str, command: list[str], user: str | None = None, seconds: float | None = None
    ) -> str: ...
    def daemon_logs_tail(self, lines: int = 50) -> str: ...
    def published_port(self, refresh: bool = True) -> int: ...
    def pin_ssh_port(self, port: int | None) -> None: ...
    def login_port_taken(self, port: int, cause: str = "") -> StackError: ...
    def connect_info(self, inspection_max_age: float = 0.0) -> Connection: ...


DEFAULTS_DIR = definition_dir() / "images" / "slurm" / "defaults"
DEV = "dev"
FAULTS_CONF = "/etc/slurm/faults.conf"
#: Slurm's smallest sensible MinJobAge: a finished job is forgotten seconds after it ends.
FORGET_AFTER_SECONDS = 2
SBATCH_WRAPPER = Path(__file__).with_name("fault_sbatch.sh")
SBATCH_IN_STACK = "/usr/local/bin/sbatch"  # ahead of the real /usr/bin/sbatch on the job user's PATH
SWITCHES_IN_STACK = "/run/harness-faults"  # the wrapper's switches (see fault_sbatch.sh)
READY_SECONDS = 120.0
#: A job id as the faults take it: a job, or one task of an array (12, 12_3).
JOB_ID = re.compile(r"\d+(_\d+)?")
PAUSE_ATTEMPTS = 10
#: Settings read back from slurmctld after a reconfigure, with Slurm's value when a file leaves them out.
CHECKED_SETTINGS = {"MinJobAge": "300", "DependencyParameters": "(null)", "MaxArraySize": "1001"}
#: What ``drop_ssh`` kills: the job user's SSH session processes (OpenSSH >= 9.8 names them sshd-session).
#: A session listed by ps may end before its kill (the unprivileged half of a session exits when its
#: monitor is killed first): that one is gone, not a failure; a process still alive after a failed kill is.
DROP_SESSIONS = (
    f'for pid in $(ps -o pid=,comm= -u {SSH_USER} | awk \'$2 == "sshd-session" || $2 == "sshd" '
    "{print $1}'); do if kill -KILL $pid 2>/dev/null; then echo $pid; "
    'elif kill -0 $pid 2>/dev/null; then echo "cannot kill SSH session process $pid" >&2; exit 1; fi; done'
)


def defaults_names() -> list[str]:
    return sorted(path.stem for path in DEFAULTS_DIR.glob("*.conf"))


def defaults(name: str) -> dict[str, str]:
    """The settings of ``images/slurm/defaults/<name>.conf`` (``dev`` or ``production``)."""
    path = DEFAULTS_DIR / f"{name}.conf"
    if not path.is_file():
        raise ValueError(
            f"unknown Slurm defaults {name!r}: choose one of {', '.join(defaults_names())} "
            f"(files in {DEFAULTS_DIR})"
        )
    settings = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def render(name: str, overrides: dict[str, str]) -> str:
    settings = defaults(name) | overrides
    lines = [
        f"# written by harness/src/slurm_dev_cluster/faults.py: {name} defaults"
        + (f" + {overrides}" if overrides else "")
    ]
    return "\n".join(lines + [f"{key}={value}" for key, value in settings.items()]) + "\n"


class Faults:
    """The faults a test can inject into one running stack; ``reset()`` undoes every one of them."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.say = stack.say

    # ---- the record in state.json ---------------------------------------------------------------

    def _record(self) -> dict:
        return dict(self.stack.read_state().get("faults") or {})

    def _update(self, event: str, **changes: object) -> None:
        """Record a fault (owned by this process from now on) after it took effect."""
        owner = {"pid": os.getpid(), "start_time": process_start_time(os.getpid())}
        record = self._record() | changes | {"owner": owner}
        self.stack.update_state(faults=record)
        self.stack.events.record("fault", project=self.stack.project, action=event)

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

    # ---- Slurm settings -------------------------------------------------------------------------

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
        self, max_submit_jobs: int = 50, max_array_size: int = 20, *, max_wall: str | None = None
    ) -> None:
        """A site's submit limits: at most ``max_submit_jobs`` jobs (each array task counts) pending or
        running per user (``MaxSubmitJobsPerUser`` on the QOS the job user submits with by default) and
        arrays of at most ``max_array_size`` tasks (``MaxArraySize``); with ``max_wall`` ("00:05:00") that
        QOS's ``MaxWall`` too (a longer job then pends for QOSMaxWallDurationPerJobLimit). Sets the
        enforcement the limits need (``AccountingStorageEnforce``), and gives the job user an association
        if it has none. Needs accounting (slurmdbd)."""
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

    def _controller(self, command: str) -> str:
        return self.stack.exec("slurmctld", ["sh", "-c", command])

    # ---- containers ------------------------------------------------------------------------------

    def stop_node(self, node: str = "c1", *, mark_down: bool = True) -> None:
        """A compute node fails: its container is killed (SIGKILL, no clean shutdown). With ``mark_down``
        slurmctld is told at once (`scontrol update state=down`), as its own ping would after
        SlurmdTimeout (30 s here): jobs on the node are requeued, or fail if they may not be requeued."""
        _check_choice("compute node", node, self.compute_nodes)
        # Recorded first: if marking it DOWN fails, the fault's undo still starts the node again.
        self._update(f"stop {node}", stopped=sorted({*self._record().get("stopped", []), node}))
        with self._container_call(f"docker kill {node}") as docker:
            docker.container.kill(self._name(node))
        if mark_down:
            self._mark_down(node)

    def _mark_down(self, node: str, settle: float = 1.0, attempts: int = 5) -> None:
        """DOWN, and still DOWN a moment later: a registration the node sent just before it was killed can
        reach slurmctld after the update and return it to service (ReturnToService=2), and a requeued job
        would then be started on the dead node."""
        for _ in range(attempts):
            self._controller(f"scontrol update nodename={node} state=down reason=harness-fault-node-stopped")
            time.sleep(settle)
            shown = self._controller(f"sinfo -h -n {node} -o %T")
            if "DOWN" in shown.upper():
                return
        raise StackError(
            f"{node} keeps returning to service after being killed and marked DOWN (sinfo: {shown.split()})"
        )

    def start_node(self, node: str = "c1") -> None:
        """The node comes back; returns once slurmd has registered and the node takes jobs again."""
        _check_choice("compute node", node, self.compute_nodes)
        with self._container_call(f"docker start {node}") as docker:
            docker.container.start(self._name(node))
        self._wait_ready([node])
        self._update(f"start {node}", stopped=[s for s in self._record().get("stopped", []) if s != node])

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

    def pause(self, service: str) -> None:
        """Freeze every process of a container (``docker pause``): it accepts TCP but never answers,
        like a hung host. ``slurmctld``: an outage; ``login``: a frozen login node."""
        _check_choice("service", service, self.configured)
        for attempt in range(PAUSE_ATTEMPTS):
            try:
                with self._container_call(f"docker pause {service}") as docker:
                    docker.container.pause(self._name(service))
                break
            except DockerException as exc:
                # The cgroup freezer gives up when a process is mid-exec (a healthcheck, a `docker exec`);
                # runc thaws the container again, so a later try starts from a running container.
                if "unable to freeze" not in str(exc) or attempt == PAUSE_ATTEMPTS - 1:
                    raise
                time.sleep(0.5)
        self._update(f"pause {service}", paused=sorted({*self._record().get("paused", []), service}))

    def unpause(self, service: str) -> None:
        _check_choice("service", service, self.configured)
        with self._container_call(f"docker unpause {service}") as docker:
            docker.container.unpause(self._name(service))
        self._update(
            f"unpause {service}", paused=[s for s in self._record().get("paused", []) if s != service]
        )
        self._wait_ready([service])

    def restart(self, service: str) -> Connection | None:
        """Restart a container and wait until it is ready again. ``login`` comes back on the port it had
        (the stack keeps it: ``Stack.keep_login_port``), as a real login node does, so clients waiting on it
        reconnect by themselves; its connection is returned. If something took the port meanwhile, the
        error says so at once."""
        _check_choice("service", service, self.configured)
        if service == "login" and not self._login_port_pinned():
            # A login container made before ports were kept asks Docker for an ephemeral port, which a
            # restart would move: made again on the port it has now, first.
            port = self.stack.published_port()
            self.stack.pin_ssh_port(port)
            self._recreate_login(port)
        try:
            with self._container_call(f"docker restart {service}") as docker:
                docker.container.restart(self._name(service), time=2)
        except DockerException as exc:
            if service == "login" and any(words in str(exc) for words in PORT_TAKEN):
                raise self.stack.login_port_taken(self.stack.read_state()[PINNED_PORT_KEY]) from None
            raise
        self._wait_ready([service])
        self._update(f"restart {service}")
        return self.connection() if service == "login" else None

    def connection(self) -> Connection:
        """The stack's connection as it is now (port read afresh from Docker)."""
        return self.stack.connect_info()

    # ---- SSH ------------------------------------------------------------------------------------

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

    def _restore_login_port(self, port: int) -> None:
        """Recreate the login container on ``port`` (its keys live in the secrets volume, /home is
        shared): connections the test session handed out before the restart work again. Only a fault record
        of a harness from before ports were kept has a ``login_port`` to restore."""
        if self.stack.published_port() != port:
            self._recreate_login(port)
        self._update("login port restored", login_port=None)

    def _recreate_login(self, port: int | None) -> None:
        """A new login container on ``port``, or on an ephemeral port as compose.yaml makes it (None).
        The pin is the stack's (``Stack.pin_ssh_port``), so a later `compose up` keeps login as it is."""
        self.stack.pin_ssh_port(port)
        self.stack.compose.up("faults", services=["login"], force_recreate=True)
        self.stack.connect_info()  # refreshes the copied known_hosts for the port

    def _login_port_pinned(self) -> bool:
        """Whether the login container asks Docker for a fixed host port (an empty one is ephemeral)."""
        with self.stack.compose.bounded(docker_deadline.INSPECT_SECONDS, "docker inspect login") as docker:
            bindings = docker.container.inspect(self._name("login")).host_config.port_bindings or {}
        return any(binding.host_port for binding in bindings.get("22/tcp") or [])

    # ---- helpers --------------------------------------------------------------------------------

    @property
    def configured(self) -> tuple[str, ...]:
        """Every container whose slurm.conf includes faults.conf; they must agree (Slurm compares config
        hashes): slurmctld, each compute node, login."""
        return self.stack.cluster_services

    @property
    def compute_nodes(self) -> tuple[str, ...]:
        return self.stack.topology.node_names

    def _container_call(self, what: str) -> AbstractContextManager[DockerClient]:
        """The Docker client for one call on one container (``docker_deadline.CONTAINER_SECONDS``)."""
        return self.stack.compose.bounded(docker_deadline.CONTAINER_SECONDS, what)

    def _name(self, service: str) -> str:
        return self.stack.container_names()[service]

    def _wait_ready(self, services: list[str], timeout: float = READY_SECONDS) -> None:
        """Until each service's healthcheck passes again (slurmd registered, sshd takes the key, ...)."""
        wait_for(
            [ServicesHealthy(services, self.stack.services)],
            timeout,
            subject=", ".join(services),
            poll=0.5,
            explain=lambda: f"\n{self.stack.daemon_logs_tail(20)}",
        )


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")
