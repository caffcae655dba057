"""Readiness as wait strategies (slurm_dev_cluster.readiness), without Docker: a fake clock drives the
waits, and the SSH strategies meet a real sshd (or a closed 127.0.0.1 port)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import docker_deadline
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.readiness import (
    NOT_READY,
    Guard,
    LoginKeys,
    ServicesHealthy,
    SlurmctldSettings,
    SlurmTakesJobs,
    SSHLogin,
    WaitTimeout,
    ready_check,
    wait_for,
)
from slurm_dev_cluster.ssh_access import Connection
from slurm_dev_cluster.stack_wait import fail_if_a_container_stopped
from slurm_dev_cluster.topology import SECOND_CLUSTER, Topology

from .test_ssh_transport import pytestmark as needs_sshd


class FakeClock:
    """Time that moves only when a wait sleeps (or a look takes ``look_seconds``)."""

    def __init__(self, look_seconds: float = 0.0) -> None:
        self.now = 1000.0
        self.look_seconds = look_seconds
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class Never:
    """A strategy that never holds; each look sees the next of ``seen`` (the last one repeats)."""

    def __init__(self, what: str, clock: FakeClock, *seen: str) -> None:
        self.what, self.clock, self.seen, self.looks = what, clock, list(seen) or ["no"], []

    def check(self) -> str | None:
        self.looks.append(self.clock.now)
        self.clock.now += self.clock.look_seconds
        return self.seen[min(len(self.looks), len(self.seen)) - 1]


class After:
    """A strategy that holds from its ``n``-th look on."""

    def __init__(self, what: str, n: int) -> None:
        self.what, self.n, self.looks = what, n, 0

    def check(self) -> str | None:
        self.looks += 1
        return None if self.looks >= self.n else f"look {self.looks}"


@given(
    timeout=st.floats(min_value=0.05, max_value=30),
    poll=st.floats(min_value=0.01, max_value=2),
    look_seconds=st.floats(min_value=0, max_value=0.5),
)
def test_a_wait_ends_by_its_deadline_naming_what_it_waited_for_and_what_it_saw_last(
    timeout, poll, look_seconds
):
    clock = FakeClock(look_seconds)
    start = clock.now
    strategy = Never("slurmctld to answer", clock, "first", "connection refused")
    with pytest.raises(WaitTimeout) as caught:
        wait_for([strategy], timeout, subject="stack hx", poll=poll, clock=clock)
    assert all(look < start + timeout for look in strategy.looks)  # no look starts after the deadline
    assert clock.now <= start + timeout + look_seconds  # the last look may run on; no sleep past it
    message = str(caught.value)
    assert message.startswith(f"stack hx was not ready within {timeout:g} s: waiting for slurmctld to answer")
    assert caught.value.strategy is strategy and caught.value.seen in message
    assert isinstance(caught.value, StackError) and isinstance(caught.value, TimeoutError)


def test_strategies_hold_in_order_and_the_timeout_names_the_one_it_was_on():
    clock = FakeClock()
    first, second = (
        After("the login container's SSH keys", 3),
        Never("sshd on the login node", clock, "refused"),
    )
    with pytest.raises(WaitTimeout, match=r"waiting for sshd on the login node \(last seen: refused\)"):
        wait_for([first, second], 1.0, poll=0.1, clock=clock)
    assert first.looks == 3 and second.looks  # the second is looked at only once the first held


def test_a_wait_that_holds_returns_without_sleeping_more():
    clock = FakeClock()
    wait_for([After("a", 1), After("b", 2)], 5.0, poll=0.1, clock=clock)
    assert clock.sleeps == [0.1]  # one look of "b" failed


def test_the_explanation_follows_the_timeout():
    clock = FakeClock()
    with pytest.raises(WaitTimeout, match=r"\(last seen: no\)\n--- logs ---"):
        wait_for([Never("x", clock)], 0.3, clock=clock, explain=lambda: "\n--- logs ---")


def test_a_guard_fails_the_wait_at_once_and_runs_on_its_own_cadence():
    clock = FakeClock()
    runs: list[float] = []

    def container_stopped() -> None:
        runs.append(clock.now)
        if len(runs) == 3:
            raise StackError("slurmctld (exited (1)) stopped while the stack was starting")

    with pytest.raises(StackError, match=r"slurmctld .* stopped") as caught:
        wait_for([Never("x", clock)], 60, guards=[Guard(container_stopped, every=1.0)], poll=0.1, clock=clock)
    assert not isinstance(caught.value, WaitTimeout)
    assert runs[1] - runs[0] >= 1.0 and runs[2] - runs[1] >= 1.0  # not at every look (every 0.1 s)
    assert clock.now < 1000.0 + 60  # long before the deadline


def test_login_keys_wait_for_the_login_container_and_give_up_on_a_hung_dockerd():
    answers: list[object] = [RuntimeError("Error: No such container: login\nmore"), "connection"]

    def read():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    keys = LoginKeys(read)
    assert keys.check() == "Error: No such container: login"
    assert keys.check() is None and keys.connection == "connection"

    def hung():
        raise docker_deadline.DockerTimeout("docker exec login: read the SSH keys", 10)

    with pytest.raises(docker_deadline.DockerTimeout):  # waiting longer will not help
        LoginKeys(hung).check()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when this returns: nothing listens there


def test_ssh_login_waits_for_sshd_and_says_what_it_saw(tmp_path):
    keys = LoginKeys(lambda: None)  # type: ignore[arg-type,return-value]
    keys.connection = Connection(
        "hx", "127.0.0.1", _closed_port(), "sdk", tmp_path / "key", "ssh-ed25519 AAAA"
    )
    login = SSHLogin(keys)
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as caught:
        wait_for([login], 0.3, subject="stack hx", poll=0.1, clock=clock)
    message = str(caught.value)
    assert "waiting for sshd on the login node (last seen: " in message
    assert login.client is None


@pytest.fixture
def login(sshd) -> SSHLogin:
    keys = LoginKeys(lambda: None)  # type: ignore[arg-type,return-value]
    host_key = " ".join(Path(sshd.root / "host_ed25519.pub").read_text().split()[:2])
    keys.connection = Connection("hx", "127.0.0.1", sshd.port, sshd.user, Path(sshd.client_key), host_key)
    login = SSHLogin(keys)
    assert login.check() is None and login.client is not None
    yield login
    login.close()


@needs_sshd
def test_slurm_takes_jobs_reports_what_the_ready_check_still_waits_for(login):
    still = SlurmTakesJobs(
        login, f'echo "nodes to register and be idle (not yet: c2=none)"; exit {NOT_READY}'
    )
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as caught:
        wait_for([still], 0.2, subject="stack hx", poll=0.1, clock=clock)
    assert str(caught.value).startswith(
        "stack hx was not ready within 0.2 s: waiting for Slurm to take jobs "
        "(last seen: still waiting for nodes to register and be idle (not yet: c2=none))"
    )
    assert SlurmTakesJobs(login, "true").check() is None


@needs_sshd
def test_slurm_takes_jobs_fails_at_once_on_a_broken_check(login):
    with pytest.raises(StackError, match=r"readiness check failed \(exit 3\): boom"):
        SlurmTakesJobs(login, "echo boom >&2; exit 3").check()


@needs_sshd
def test_slurm_takes_jobs_opens_a_dropped_session_again(login):
    assert login.client is not None
    login.client.close()  # sshd restarted under the wait
    ready = SlurmTakesJobs(login, "true")
    assert ready.check() is not None  # this look finds the session gone ...
    assert login.client is None
    assert ready.check() is None  # ... the next opens a new one


def test_the_ready_check_asks_every_node_and_slurmdbd_only_with_accounting():
    with_accounting = ready_check(("c1", "c2"), accounting=True)
    assert "unready-nodes c1,c2" in with_accounting and "sacctmgr" in with_accounting
    assert "sacctmgr" not in ready_check(("c1",), accounting=False)
    assert f"exit {NOT_READY}" in with_accounting


def test_the_ready_check_asks_a_further_cluster_by_name_once_the_first_is_ready():
    check = ready_check(("c1",), accounting=True, further_clusters=[SECOND_CLUSTER])
    first, _, further = check.partition("unready-nodes c1)")
    assert "not_yet()" in first and "two" not in first  # not_yet is defined before any check uses it
    assert "show cluster two format=controlhost" in further and "unready-nodes d1 two" in further


def test_services_healthy_waits_for_each_healthcheck_and_names_the_ones_still_failing():
    states = [{"c1": "running (starting)", "login": "running (healthy)"}]
    healthy = ServicesHealthy(["c1", "login"], lambda: states[-1])
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as caught:
        wait_for([healthy], 1.0, subject="c1, login", poll=0.5, clock=clock)
    assert str(caught.value) == (
        "c1, login was not ready within 1 s: waiting for c1, login to pass its healthcheck "
        "(last seen: c1 running (starting))"
    )
    states.append({"c1": "running (healthy)", "login": "running (healthy)"})
    assert healthy.check() is None
    assert ServicesHealthy(["c2"], lambda: {}).check() == "c2 missing"


def test_slurmctld_settings_wait_until_scontrol_shows_every_value():
    answers = [
        DockerException(["docker"], 1, stderr=b"Error: container is restarting"),
        "MinJobAge = 300 sec\n",
        "MinJobAge = 2 sec\nOther = x\n",
    ]
    settings = SlurmctldSettings({"MinJobAge": "2"}, lambda: _answer(answers))
    assert settings.what == "slurmctld to run with {'MinJobAge': '2'}"
    assert settings.check() == "Error: container is restarting"
    assert settings.check() == "scontrol show config: {'MinJobAge': '300 sec'}"
    assert settings.check() is None


def _answer(answers: list) -> str:
    answer = answers.pop(0)
    if isinstance(answer, Exception):
        raise answer
    return answer


class _StartingStack:
    """A stack whose containers are in ``services`` states (``stack_wait.Waitable``), logs recorded."""

    project = "p"
    topology = Topology.resolve({}, None)

    def __init__(self, services: dict[str, str]) -> None:
        self._services, self.logs_asked = services, []
        self.expected_services = ("slurmctld", "c1", "login")

    def services(self) -> dict[str, str]:
        return self._services

    def logs_tail(self, lines=50, services=()):
        self.logs_asked.append(list(services))
        return "slurmctld: fatal: bad setting"


def test_a_container_that_exits_while_the_stack_starts_ends_the_wait_naming_it_with_its_logs():
    running = _StartingStack({"slurmctld": "running (healthy)", "c1": "running (starting)"})
    fail_if_a_container_stopped(running)  # still starting: the wait goes on
    assert running.logs_asked == []
    stopped = _StartingStack({"slurmctld": "exited (1)", "c1": "running (starting)", "extra": "exited (0)"})
    with pytest.raises(StackError, match=r"(?s)slurmctld \(exited \(1\)\) stopped.*fatal: bad setting"):
        fail_if_a_container_stopped(stopped)
    assert stopped.logs_asked == [["slurmctld"]]  # only the expected service that stopped
