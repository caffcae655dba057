"""slurm_dev_cluster.stack logic that needs no Docker: project names, the inputs hash, recorded state."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from python_on_whales.client_config import ClientNotFoundError
from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import preflight
from slurm_dev_cluster.locks import Coordinator
from slurm_dev_cluster.stack import (
    ACCOUNTING_VAR,
    INSPECTION_FRESH_SECONDS,
    PINNED_PORT_KEY,
    REPO_ROOT,
    Stack,
    StackError,
    default_project,
    inputs_hash,
    project_name_for,
)
from slurm_dev_cluster.topology import Topology

COMPOSE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def test_project_name_is_stable_per_checkout_and_distinct_between_checkouts(tmp_path):
    one, two = tmp_path / "a" / "slurm-sdk", tmp_path / "b" / "slurm-sdk"
    assert project_name_for(one) == project_name_for(one)
    assert project_name_for(one) != project_name_for(two)


def test_each_debian_release_gets_its_own_project(tmp_path, monkeypatch):
    # Volumes hold slurmctld's state in its Slurm version's format: bookworm's 22.05 must never be
    # handed trixie's 24.11 state, so switching DEBIAN_RELEASE switches project (and volumes).
    monkeypatch.delenv("SLURM_SDK_PROJECT", raising=False)
    monkeypatch.delenv("DEBIAN_RELEASE", raising=False)
    default = default_project(tmp_path)
    assert default == project_name_for(tmp_path)
    monkeypatch.setenv("DEBIAN_RELEASE", "trixie")
    assert default_project(tmp_path) == default
    monkeypatch.setenv("DEBIAN_RELEASE", "bookworm")
    assert default_project(tmp_path) == f"{default}-bookworm"
    assert COMPOSE_NAME.match(default_project(tmp_path))
    monkeypatch.setenv("SLURM_SDK_PROJECT", "chosen")
    assert default_project(tmp_path) == "chosen"


@pytest.mark.parametrize("dirname", ["My Repo!", "UPPER_case", "---", "ünïcode"])
def test_project_name_is_valid_for_compose(tmp_path, dirname):
    name = project_name_for(tmp_path / dirname)
    assert COMPOSE_NAME.match(name), name
    assert name.startswith("slurmsdk-")


@pytest.fixture
def fake_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    (repo / "images" / "slurm").mkdir(parents=True)
    (repo / "src").mkdir()
    (repo / "compose.yaml").write_text("services: {}\n")
    (repo / "pyproject.toml").write_text("[project]\nname='x'\n")
    (repo / "images" / "Dockerfile").write_text("FROM debian\n")
    (repo / "images" / "slurm" / "slurm.conf").write_text("ClusterName=dev\n")
    (repo / "src" / "code.py").write_text("x = 1\n")
    return repo


@pytest.mark.parametrize(
    "changed",
    ["compose.yaml", "pyproject.toml", "images/Dockerfile", "images/slurm/slurm.conf", "images/new-file.sh"],
)
def test_inputs_hash_changes_with_every_image_input(fake_repo, changed):
    before = inputs_hash(fake_repo)
    path = fake_repo / changed
    path.write_text((path.read_text() if path.exists() else "") + "# edit\n")
    assert inputs_hash(fake_repo) != before


def test_inputs_hash_follows_debian_release_and_ignores_source_code(fake_repo, monkeypatch):
    monkeypatch.delenv("DEBIAN_RELEASE", raising=False)
    before = inputs_hash(fake_repo)
    (fake_repo / "src" / "code.py").write_text("x = 2\n")  # bind-mounted, never baked in
    assert inputs_hash(fake_repo) == before
    monkeypatch.setenv("DEBIAN_RELEASE", "bookworm")
    assert inputs_hash(fake_repo) != before


def test_stack_keeps_its_state_in_its_own_directory_without_calling_docker(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("SLURM_SDK_PROJECT", raising=False)
    monkeypatch.delenv("DEBIAN_RELEASE", raising=False)
    stack = Stack(REPO_ROOT, client_call=["/nonexistent/docker"])
    assert stack.state_dir == tmp_path / "state" / project_name_for(REPO_ROOT)
    assert stack.read_state() == {}
    stack.update_state(port=2222)
    stack.update_state(inputs_hash="abc")
    assert stack.read_state() == {"port": 2222, "inputs_hash": "abc"}
    # Compose gets an empty port (ephemeral) unless SLURM_SDK_SSH_PORT is set in the environment, and an
    # image tag naming the inputs, so another checkout's images/ can never overwrite this stack's image.
    env = dict(line.split("=", 1) for line in (stack.state_dir / "compose.env").read_text().splitlines())
    assert env["SLURM_SDK_SSH_PORT"] == ""
    assert env["SLURM_SDK_IMAGE_TAG"] == f"trixie-{inputs_hash(REPO_ROOT)[:12]}"


def _compose_env(stack: Stack) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (stack.state_dir / "compose.env").read_text().splitlines())


def test_a_pinned_login_port_is_in_every_later_compose_call_until_the_state_goes(tmp_path, monkeypatch):
    """The port is part of login's compose config: a pin that one compose call saw and the next did not
    would recreate login on a new port (the reshape bug). Every Stack of the project writes it."""
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("SLURM_SDK_SSH_PORT", raising=False)
    stack = Stack(REPO_ROOT, project="slurmsdk-pin", client_call=["/nonexistent/docker"])
    stack.pin_ssh_port(32999)
    assert _compose_env(stack)["SLURM_SDK_SSH_PORT"] == "32999"
    later = Stack(REPO_ROOT, project="slurmsdk-pin", client_call=["/nonexistent/docker"])
    assert _compose_env(later)["SLURM_SDK_SSH_PORT"] == "32999"
    later.pin_ssh_port(None)
    assert _compose_env(stack)["SLURM_SDK_SSH_PORT"] == ""
    stack.pin_ssh_port(32999)
    stack.state_file.unlink()  # what `down` removes
    assert _compose_env(Stack(REPO_ROOT, project="slurmsdk-pin"))["SLURM_SDK_SSH_PORT"] == ""


def test_project_can_be_overridden_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("SLURM_SDK_PROJECT", "slurmsdk-other")
    assert Stack(REPO_ROOT).project == "slurmsdk-other"


class PlannedStack(Stack):
    """A Stack whose Docker side is replaced by a fixed plan, to test the coordination around it."""

    def __init__(self, action: str, **kwargs) -> None:
        super().__init__(REPO_ROOT, client_call=["/nonexistent/docker"], say=self.messages_append, **kwargs)
        self.action, self.started_for = action, []

    def messages_append(self, message: str) -> None:
        self.__dict__.setdefault("messages", []).append(message)

    def preflight(self) -> None:
        pass

    def plan(self, expected=None):
        return self.action, "planned"

    def ensure_up(self, session="cli", expected=None, owner_pid=None):
        self.started_for.append(session)
        return "up"


@pytest.fixture
def other_session_process(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield process
    process.stdin.close()
    process.wait()


def test_rebuild_waits_while_another_session_uses_the_stack(tmp_path, other_session_process):
    stack = PlannedStack("rebuild", project="slurmsdk-test", state_dir=tmp_path / "state")
    coordinator = Coordinator(stack.state_dir)
    coordinator.register("other-session", "worker", pid=other_session_process.pid)
    with pytest.raises(StackError, match=f"pid\\(s\\) {other_session_process.pid} still use it"):
        stack.ensure_up_shared(coordinator, "my-session", timeout=0.3, poll=0.05)
    assert stack.started_for == []  # never recreated under the other session
    assert any("waiting for them to finish" in m for m in stack.messages)

    other_session_process.stdin.close()
    other_session_process.wait()  # the other session ends (or crashes): the rebuild may proceed
    assert stack.ensure_up_shared(coordinator, "my-session", timeout=5, poll=0.05) == "up"
    assert stack.started_for == ["my-session"]


@pytest.mark.parametrize("action", ["reuse", "start", "complete"])
def test_only_a_rebuild_waits_for_other_sessions(tmp_path, other_session_process, action):
    stack = PlannedStack(action, project="slurmsdk-test", state_dir=tmp_path / "state")
    coordinator = Coordinator(stack.state_dir)
    coordinator.register("other-session", "worker", pid=other_session_process.pid)
    assert stack.ensure_up_shared(coordinator, "my-session", timeout=0.3, poll=0.05) == "up"


def test_own_session_does_not_block_its_own_rebuild(tmp_path):
    stack = PlannedStack("rebuild", project="slurmsdk-test", state_dir=tmp_path / "state")
    coordinator = Coordinator(stack.state_dir)
    coordinator.register("my-session", "controller")
    assert stack.ensure_up_shared(coordinator, "my-session", timeout=0.3, poll=0.05) == "up"


def test_reuse_takes_the_connection_recorded_for_the_same_login_container(tmp_path, monkeypatch):
    """Reusing a stack needs no `docker exec` while the login container is the one recorded at start;
    the port is the one Docker publishes now (a restarted login container gets a new one)."""
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    stack = Stack(REPO_ROOT, client_call=["/nonexistent/docker"])
    state = {
        "login_id": "abc123",
        "port": 40222,
        "host_key": "ssh-ed25519 AAAAkey",
        "containers": {"login": "p-login-1"},
    }
    stack._login_id, stack._login_port = "abc123", 40222
    assert stack._recorded_connection(state) is None  # no client key copied out yet
    stack.key_path.write_text("key")
    connection = stack._recorded_connection(state)
    assert (connection.port, connection.host_key, connection.key_path) == (
        40222,
        "ssh-ed25519 AAAAkey",
        stack.key_path,
    )

    stack._login_port = 40999  # `docker restart login`: same container, same keys, another port
    assert stack._recorded_connection(state).port == 40999
    assert stack.known_hosts_path.read_text() == "[127.0.0.1]:40999 ssh-ed25519 AAAAkey\n"
    stack._login_id = "recreated"  # a new login container may have new keys
    assert stack._recorded_connection(state) is None


class RunningStack(Stack):
    """A Stack whose containers are a fixed table (no Docker), to test what ``plan`` decides from them."""

    def __init__(self, running: dict[str, str], **kwargs) -> None:
        super().__init__(REPO_ROOT, client_call=["/nonexistent/docker"], say=lambda _: None, **kwargs)
        self.running = running

    def services(self) -> dict[str, str]:
        return self.running


@pytest.mark.parametrize(
    ("wanted", "slurmctld", "action"),
    [
        (Topology(nodes=4), "running (healthy)", "rescale"),  # node count only: the node services alone
        (Topology(nodes=1), "running (healthy)", "rescale"),
        (Topology(nodes=4), "exited (1)", "complete"),  # something else is down too: a full `compose up`
        (Topology(nodes=2, gpus_per_node=1), "running (healthy)", "reconfigure"),  # every node's environment
        (Topology(nodes=4, partitions=("a",)), "running (healthy)", "reconfigure"),
        (Topology(nodes=2), "running (healthy)", "reuse"),
    ],
)
def test_a_reshape_touches_only_what_the_topology_change_needs(
    tmp_path, monkeypatch, wanted, slurmctld, action
):
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    monkeypatch.delenv(ACCOUNTING_VAR, raising=False)
    healthy = "running (healthy)"
    running = {"c1": healthy, "c2": healthy, "login": healthy, "slurmdbd": healthy, "slurmctld": slurmctld}
    stack = RunningStack(running, project="slurmsdk-plan", topology=wanted)
    stack.update_state(inputs_hash="h", topology=Topology().to_record(), accounting=True)
    assert stack.plan("h")[0] == action


@pytest.mark.parametrize(
    ("ready_ids", "action"),
    [
        (["id-c1", "id-c2", "id-login", "id-slurmctld", "id-slurmdbd"], "reuse"),  # passed the wait
        (["id-c1", "id-c2", "id-login", "id-slurmctld"], "complete"),  # slurmdbd's container is not the one
        ([], "complete"),
    ],
)
def test_a_stack_that_passed_the_wait_is_reused_before_its_first_healthcheck(
    tmp_path, monkeypatch, ready_ids, action
):
    """`harness up` returns before Docker's first healthcheck tick; another process (an xdist worker) that
    looks right then sees "starting" and must still reuse the stack, not start it again."""
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    monkeypatch.delenv(ACCOUNTING_VAR, raising=False)
    services = ("c1", "c2", "login", "slurmctld", "slurmdbd")
    stack = RunningStack(dict.fromkeys(services, "running (starting)"), project="slurmsdk-plan")
    stack._last_inspection = {s: SimpleNamespace(id=f"id-{s}") for s in services}
    stack.update_state(
        inputs_hash="h", topology=Topology().to_record(), accounting=True, ready_containers=ready_ids
    )
    assert stack.plan("h")[0] == action
    assert stack.status().up == (action == "reuse")  # `harness status` right after `harness up`: exit 0


class CountingStack(RunningStack):
    """A RunningStack that counts its reads of state.json."""

    reads = 0

    def read_state(self) -> dict:
        self.reads += 1
        return super().read_state()


@pytest.mark.parametrize("nodes", [1, 2, 8])
def test_plan_and_status_read_the_state_a_fixed_number_of_times_whatever_the_node_count(
    tmp_path, monkeypatch, nodes
):
    """Readiness of every service comes from one read of state.json, not one read per service."""
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    monkeypatch.delenv(ACCOUNTING_VAR, raising=False)
    topology = Topology(nodes=nodes)
    services = (*topology.node_names, "login", "slurmctld", "slurmdbd")
    stack = CountingStack(
        dict.fromkeys(services, "running (starting)"), project="slurmsdk-reads", topology=topology
    )
    stack._last_inspection = {s: SimpleNamespace(id=f"id-{s}") for s in services}
    stack.update_state(
        inputs_hash="h",
        topology=topology.to_record(),
        accounting=True,
        ready_containers=[f"id-{s}" for s in services],
    )
    stack.reads = 0
    assert stack.plan("h")[0] == "reuse"
    plan_reads, stack.reads = stack.reads, 0
    assert stack.status().up
    assert (plan_reads, stack.reads) == (4, 3)


def test_an_inspection_is_reused_only_while_fresh(tmp_path, monkeypatch):
    """``wait_until_ready`` connects from the inspection it made a moment before; every other caller, and
    any older inspection, asks Docker again (here: a Docker CLI that does not exist)."""
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    stack = Stack(REPO_ROOT, client_call=["/nonexistent/docker"], say=lambda _: None)
    seen = {"login": SimpleNamespace(id="login-id")}
    stack._last_inspection, stack._inspected_at = seen, time.monotonic()
    assert stack._containers(INSPECTION_FRESH_SECONDS) is seen
    with pytest.raises((OSError, DockerException, ClientNotFoundError)):
        stack._containers()  # the default: always Docker
    stack._inspected_at -= INSPECTION_FRESH_SECONDS + 0.01
    with pytest.raises((OSError, DockerException, ClientNotFoundError)):
        stack._containers(INSPECTION_FRESH_SECONDS)


def test_login_keeps_the_port_its_stack_was_first_given(tmp_path, monkeypatch):
    """The port is pinned before any container is made, so a restart, a recreation or a reshape of login
    keeps it: a free port the harness chose (Docker's ephemeral port moved on every start), the one
    SLURM_SDK_SSH_PORT gave, or, for a stack started before ports were kept, the one it has now."""
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("SLURM_SDK_SSH_PORT", raising=False)
    stack = RunningStack({}, project="slurmsdk-keep")
    assert stack.keep_login_port("start") is True  # chosen here
    chosen = stack.read_state()[PINNED_PORT_KEY]
    assert _compose_env(stack)["SLURM_SDK_SSH_PORT"] == str(chosen) and 1024 < chosen < 65536
    assert stack.keep_login_port("rebuild") is False and stack.read_state()[PINNED_PORT_KEY] == chosen
    assert _compose_env(RunningStack({}, project="slurmsdk-keep"))["SLURM_SDK_SSH_PORT"] == str(chosen)

    older = RunningStack({"login": "running (healthy)"}, project="slurmsdk-older")
    older._login_port = 40123  # started ephemerally by an earlier harness
    assert older.keep_login_port("reuse") is False and older.read_state()[PINNED_PORT_KEY] == 40123

    monkeypatch.setenv("SLURM_SDK_SSH_PORT", "2345")
    given = RunningStack({}, project="slurmsdk-given")
    assert given.keep_login_port("start") is False and given.read_state()[PINNED_PORT_KEY] == 2345


def test_slurmrestd_keeps_the_port_its_stack_was_first_given(tmp_path, monkeypatch):
    """With the profile ``rest``, slurmrestd's port is pinned before its container is made (a restart with
    an ephemeral port would move it, and its clients' URL would go stale); SLURM_SDK_REST_PORT wins;
    without the profile nothing is pinned."""
    from slurm_dev_cluster.stack_state import REST_PORT_KEY

    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("SLURM_SDK_REST_PORT", raising=False)
    monkeypatch.delenv("SLURM_SDK_COMPOSE_PROFILES", raising=False)
    plain = RunningStack({}, project="slurmsdk-norest")
    plain.keep_rest_port("start")
    assert REST_PORT_KEY not in plain.read_state() and _compose_env(plain)["SLURM_SDK_REST_PORT"] == ""

    monkeypatch.setenv("SLURM_SDK_COMPOSE_PROFILES", "rest")
    stack = RunningStack({}, project="slurmsdk-rest")
    stack.keep_rest_port("start")
    chosen = stack.read_state()[REST_PORT_KEY]
    assert _compose_env(stack)["SLURM_SDK_REST_PORT"] == str(chosen) and 1024 < chosen < 65536
    stack.keep_rest_port("reuse")  # kept: no new choice, no Docker call (this stack has no Docker)
    assert _compose_env(RunningStack({}, project="slurmsdk-rest"))["SLURM_SDK_REST_PORT"] == str(chosen)

    monkeypatch.setenv("SLURM_SDK_REST_PORT", "6820")
    given = RunningStack({}, project="slurmsdk-rest-given")
    given.keep_rest_port("start")
    assert REST_PORT_KEY not in given.read_state()  # compose reads the setting from the environment


def test_a_kept_port_taken_meanwhile_is_said_at_once(tmp_path, monkeypatch):
    """Login is down and something else took its port: the next start fails before any container is made,
    naming the port and what to do, instead of Docker's error after a build or a login on a new port."""
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("SLURM_SDK_SSH_PORT", raising=False)
    monkeypatch.setattr(
        preflight, "port_holder", lambda docker, port: preflight.PortHolder("process nc (pid 7)", "stop it")
    )
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        stack = RunningStack({"login": "exited (137)"}, project="slurmsdk-taken")
        stack.pin_ssh_port(port)
        with pytest.raises(
            StackError, match=rf"keeps 127\.0\.0\.1:{port}.*process nc \(pid 7\).*\n.*stop it"
        ):
            stack._check_ssh_port()
        stack.running = {"login": "running (healthy)"}  # our own login holds it: nothing to say
        stack._check_ssh_port()


def test_a_chosen_slurmrestd_port_taken_before_docker_binds_it_is_chosen_again(tmp_path, monkeypatch):
    """Between the harness choosing slurmrestd's free port and Docker binding it, another program can take
    it: the start goes on with another free port (login keeps its own); a port the user gave in
    SLURM_SDK_REST_PORT is an error naming it and the fix instead."""
    from slurm_dev_cluster.stack_state import REST_PORT_KEY

    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("SLURM_SDK_COMPOSE_PROFILES", "rest")
    monkeypatch.delenv("SLURM_SDK_REST_PORT", raising=False)
    monkeypatch.delenv("SLURM_SDK_SSH_PORT", raising=False)
    stack = RunningStack({}, project="slurmsdk-restrace")
    chosen = stack.keep_login_port("start")
    stack.keep_rest_port("start")
    login, taken = stack.read_state()[PINNED_PORT_KEY], stack.read_state()[REST_PORT_KEY]
    ups: list[str] = []

    def up(force_recreate: bool, session: str) -> None:
        ups.append(_compose_env(stack)["SLURM_SDK_REST_PORT"])
        if len(ups) == 1:
            raise StackError(
                f"Error response from daemon: Bind for 127.0.0.1:{taken} failed: port is already allocated"
            )

    monkeypatch.setattr(stack, "up", up)
    stack._up_on_kept_port("start", chosen, "session")
    assert ups[0] == str(taken) and len(ups) == 2 and ups[1] != str(taken)
    assert stack.read_state()[PINNED_PORT_KEY] == login and stack.read_state()[REST_PORT_KEY] == int(ups[1])

    monkeypatch.setenv("SLURM_SDK_REST_PORT", str(taken))
    ups.clear()
    with pytest.raises(
        StackError, match=rf"slurmrestd's port 127\.0\.0\.1:{taken} is taken.*SLURM_SDK_REST_PORT"
    ):
        stack._up_on_kept_port("start", chosen, "session")
    assert len(ups) == 1
