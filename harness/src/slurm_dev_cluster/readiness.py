"""Readiness as wait strategies: small named objects, each saying what it waits for.

A stack is ready when, in order, the login container hands out its SSH keys, sshd lets the key in, and
Slurm answers the readiness check over that one connection (slurmctld up, registered with slurmdbd, every
node of the topology usable). ``wait_for`` runs such strategies one after another against one deadline on
an injectable clock; its timeout error names the strategy it was on and what that strategy saw last.
Guards (a container that stopped) are checked on their own cadence and fail the wait at once.

The idea is testcontainers' wait strategies, written here for this stack.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import paramiko
from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import docker_deadline, ssh
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.ssh_access import Connection
from slurm_dev_cluster.topology import FurtherCluster

READY_POLL_SECONDS = 0.1  # how often Slurm is asked over the one SSH connection
INSPECT_EVERY_SECONDS = 1.0  # ... and how often Docker, to fail at once when a container stopped
NOT_READY = 75  # READY_CHECK's exit status while something is still starting (EX_TEMPFAIL)
#: images/healthcheck.sh as installed in the image (/usr/local/sbin is not on a user's PATH): the one home of
#: the node states that count as ready and of how the cluster's name is read (READY_CHECK asks it).
HEALTHCHECK_IN_STACK = "/usr/local/sbin/healthcheck.sh"
#: What ``SlurmTakesJobs`` asks over SSH until it exits 0: slurmctld answers, has registered with slurmdbd
#: (with accounting: from then on sacct sees jobs), and every node of the topology is registered and usable.
#: While something is still starting it prints what and exits NOT_READY.
READY_CHECK = """not_yet() {{ echo "$1"; exit {not_ready}; }}
(exec 3<>/dev/tcp/slurmctld/6817) 2>/dev/null || not_yet "slurmctld to listen"
scontrol ping 2>/dev/null | grep -q 'is UP' || not_yet "slurmctld to answer"
{accounting}unready=$({healthcheck} unready-nodes {nodes})
[ -z "$unready" ] || not_yet "nodes to register and be idle (not yet: ${{unready% }})"
"""
#: The same for each further cluster, asked from the login node with `-M` (slurmdbd says where its
#: controller is): registered with slurmdbd, and its nodes usable.
FURTHER_CLUSTER_READY_CHECK = """sacctmgr -n -P show cluster {name} format=controlhost 2>/dev/null | grep -q . \\
  || not_yet "cluster {name}'s slurmctld to register with slurmdbd"
unready=$({healthcheck} unready-nodes {nodes} {name})
[ -z "$unready" ] || not_yet "cluster {name}'s nodes to register and be idle (not yet: ${{unready% }})"
"""
ACCOUNTING_READY_CHECK = """sacctmgr -n -P show cluster "$({healthcheck} cluster-name)" format=controlhost 2>/dev/null \\
  | grep -q . || not_yet "slurmctld to register with slurmdbd"
"""


def ready_check(
    node_names: Sequence[str], accounting: bool, further_clusters: Sequence[FurtherCluster] = ()
) -> str:
    """The shell script ``SlurmTakesJobs`` runs on the login node for these nodes (and clusters)."""
    further = "".join(
        FURTHER_CLUSTER_READY_CHECK.format(
            name=cluster.name, nodes=",".join(cluster.node_names), healthcheck=HEALTHCHECK_IN_STACK
        )
        for cluster in further_clusters
    )
    return (
        READY_CHECK.format(
            not_ready=NOT_READY,
            accounting=ACCOUNTING_READY_CHECK.format(healthcheck=HEALTHCHECK_IN_STACK) if accounting else "",
            healthcheck=HEALTHCHECK_IN_STACK,
            nodes=",".join(node_names),
        )
        + further
    )


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class WaitStrategy(Protocol):
    #: What it waits for, as the end of "waiting for ...": "sshd on the login node".
    what: str

    def check(self) -> str | None:
        """One look: None when what it waits for holds, else what it saw instead (for the timeout error).
        Raises StackError when waiting longer cannot help."""
        ...


class WaitTimeout(StackError, TimeoutError):
    """A wait reached its deadline; ``strategy`` is the one it was on, ``seen`` what that one saw last."""

    def __init__(self, message: str, strategy: WaitStrategy, seen: str) -> None:
        super().__init__(message)
        self.strategy = strategy
        self.seen = seen


@dataclass
class Guard:
    """A check that fails the wait at once (raises StackError), run at most every ``every`` seconds."""

    check: Callable[[], None]
    every: float = INSPECT_EVERY_SECONDS


def wait_for(
    strategies: Sequence[WaitStrategy],
    timeout: float,
    *,
    subject: str = "the stack",
    guards: Sequence[Guard] = (),
    poll: float = READY_POLL_SECONDS,
    clock: Clock | None = None,
    explain: Callable[[], str] = lambda: "",
) -> None:
    """Wait until every strategy holds, in order (each is looked at again until it does), within
    ``timeout`` seconds in all. The timeout error says "``subject`` was not ready within ... s: waiting for
    <what> (last seen: <seen>)", then ``explain()`` (logs, a fix). No look starts after the deadline."""
    clock = clock or RealClock()
    deadline = clock.monotonic() + timeout
    next_guard = [clock.monotonic()] * len(guards)
    for strategy in strategies:
        seen = "nothing yet"
        while True:
            now = clock.monotonic()
            if now >= deadline:
                raise WaitTimeout(
                    f"{subject} was not ready within {timeout:g} s: waiting for {strategy.what} "
                    f"(last seen: {seen}){explain()}",
                    strategy,
                    seen,
                )
            for index, guard in enumerate(guards):
                if now >= next_guard[index]:
                    guard.check()
                    next_guard[index] = now + guard.every
            result = strategy.check()
            if result is None:
                break
            seen = result
            clock.sleep(max(0.0, min(poll, deadline - clock.monotonic())))


def one_line(exc: BaseException) -> str:
    text = (getattr(exc, "stderr", None) or str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class LoginKeys:
    """The login container runs and hands out the SSH keys: ``connection`` once it did."""

    what = "the login container's SSH keys"

    def __init__(self, read: Callable[[], Connection]) -> None:
        self.read = read
        self.connection: Connection | None = None

    def check(self) -> str | None:
        try:
            self.connection = self.read()
        except docker_deadline.DockerTimeout:
            raise  # dockerd itself hangs: waiting longer will not help
        except Exception as exc:  # not up yet: no login container, no keys
            return one_line(exc)
        return None


class SSHLogin:
    """sshd on the login node lets the client key in: ``client`` is that session, kept open."""

    what = "sshd on the login node"

    def __init__(self, keys: LoginKeys) -> None:
        self.keys = keys
        self.client: paramiko.SSHClient | None = None

    def check(self) -> str | None:
        connection = self.keys.connection
        assert connection is not None, "SSHLogin follows LoginKeys"
        try:
            self.client = ssh.connect(
                connection.host, connection.port, connection.user, connection.key_path, connection.host_key
            )
        except Exception as exc:  # paramiko raises many unrelated types; sshd not listening yet
            return one_line(exc)
        return None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def run(self, command: str) -> tuple[int, str, str] | str:
        """``command``'s exit code, stdout and stderr over the session, opened again first if it dropped
        (sshd restarted); or, when there is no session to run it on, why (the next look tries again)."""
        if self.client is None:
            dropped = self.check()
            if dropped is not None:
                return f"{SSHLogin.what}: {dropped}"
        assert self.client is not None
        try:
            return ssh.run(self.client, command)
        except Exception as exc:  # the session dropped: the next look opens a new one
            self.close()
            return f"the SSH session dropped: {one_line(exc)}"


class SlurmTakesJobs:
    """``READY_CHECK`` exits 0 over the login session: slurmctld answers, is registered with slurmdbd,
    every node is usable. A session that dropped (sshd restarted) is opened again on the next look."""

    what = "Slurm to take jobs"

    def __init__(self, login: SSHLogin, script: str) -> None:
        self.login = login
        self.script = script

    def check(self) -> str | None:
        ran = self.login.run(self.script)
        if isinstance(ran, str):
            return ran
        code, out, err = ran
        if code == 0:
            return None
        if code != NOT_READY:
            raise StackError(f"readiness check failed (exit {code}): {err.strip() or out.strip()}")
        return f"still waiting for {out.strip()}"


class ServicesHealthy:
    """Each of ``services`` passes its healthcheck (``read`` gives the states, ``Stack.services``)."""

    def __init__(self, services: Sequence[str], read: Callable[[], dict[str, str]]) -> None:
        self.services = list(services)
        self.read = read
        self.what = f"{', '.join(self.services)} to pass its healthcheck"

    def check(self) -> str | None:
        states = self.read()
        unhealthy = {s: states.get(s, "missing") for s in self.services}
        unhealthy = {s: state for s, state in unhealthy.items() if state != "running (healthy)"}
        return ", ".join(f"{s} {state}" for s, state in unhealthy.items()) or None


class SlurmctldSettings:
    """slurmctld runs with ``expected`` (``scontrol show config`` as ``read`` gives it shows each value)."""

    def __init__(self, expected: dict[str, str], read: Callable[[], str]) -> None:
        self.expected = expected
        self.read = read
        self.what = f"slurmctld to run with {expected}"

    def check(self) -> str | None:
        try:
            shown_text = self.read()
        except DockerException as exc:
            return one_line(exc)
        shown = dict(config_line(line) for line in shown_text.splitlines() if " = " in line)
        differing = {
            k: shown.get(k, "") for k, v in self.expected.items() if not same_setting(shown.get(k, ""), v)
        }
        return None if not differing else f"scontrol show config: {differing}"


def config_line(line: str) -> tuple[str, str]:
    key, _, value = line.partition(" = ")
    return key.strip(), value.strip()


def same_setting(shown: str, configured: str) -> bool:
    """``scontrol show config`` prints ``MinJobAge = 2 sec``; slurm.conf says ``MinJobAge=2``."""
    return shown == configured or shown.split()[:1] == [configured]


#: How long the token ``RestAnswers`` asks for lives: one look's worth (each look asks afresh).
READINESS_TOKEN_SECONDS = 60
#: slurmrestd's OpenAPI description (Slurm 21.08 and later).
OPENAPI_PATH = "/openapi/v3"
#: A path of the description that slurmrestd passes on to slurmctld: the newest version's ping.
PING_PATH = re.compile(r"^/slurm/(v\d+\.\d+\.\d+)/ping/?$")


class RestAnswers:
    """slurmrestd at ``url`` answers its OpenAPI description, and its ping (which slurmctld answers) to a
    token ``scontrol token`` handed out on the login node (over the login session): JWT works end to
    end, slurmctld signing and checking, slurmrestd passing it on. slurmrestd checks no token itself, so
    the description alone would answer any. Follows ``SlurmTakesJobs`` (a token needs slurmctld)."""

    what = "slurmrestd to answer with a token from `scontrol token`"

    def __init__(self, login: SSHLogin, url: Callable[[], str], timeout: float = 5.0) -> None:
        self.login = login
        self.url = url
        self.timeout = timeout

    def check(self) -> str | None:
        ran = self.login.run(f"scontrol token lifespan={READINESS_TOKEN_SECONDS}")
        if isinstance(ran, str):
            return ran
        code, out, err = ran
        token = out.strip().removeprefix("SLURM_JWT=")
        if code != 0 or not token:
            return f"`scontrol token` failed: {(err or out).strip()[:200]}"
        try:
            base = self.url()
        except StackError as exc:
            return one_line(exc)
        description, seen = self._get(base + OPENAPI_PATH, token)
        if description is None:
            return seen
        pings = sorted(
            (match[1] for path in description.get("paths", {}) if (match := PING_PATH.match(path))),
            key=lambda version: tuple(int(part) for part in version[1:].split(".")),
        )
        if not pings:
            raise StackError(f"slurmrestd's OpenAPI description at {base}{OPENAPI_PATH} lists no ping path")
        _, seen = self._get(f"{base}/slurm/{pings[-1]}/ping", token)
        return seen

    def _get(self, url: str, token: str) -> tuple[dict | None, str | None]:
        """The JSON at ``url`` and None, or None and what went wrong."""
        import json
        import urllib.error
        import urllib.request

        # Slurm 22.05's slurmrestd refuses a token without the user's name beside it (401, /openapi too);
        # later releases read it from the token and accept it given.
        connection = self.login.keys.connection
        assert connection is not None, "RestAnswers follows SSHLogin"
        headers = {"X-SLURM-USER-TOKEN": token, "X-SLURM-USER-NAME": connection.user}
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}"), None
        except urllib.error.HTTPError as exc:
            return None, f"GET {url}: HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return None, f"GET {url}: {one_line(exc)}"
