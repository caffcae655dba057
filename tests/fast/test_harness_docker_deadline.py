"""Every Docker call on the stack's lifecycle path ends, and says why, when dockerd never answers.

The fault is real and stays on this machine: a unix socket that accepts connections and never answers,
given to the real Docker CLI as DOCKER_HOST (what a wedged dockerd looks like to its clients)."""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from bench import fig_cluster, machine
from slurm_dev_cluster import airgap, cli_parser, cli_verbs, docker_deadline, images
from slurm_dev_cluster.docker_deadline import DockerTimeout, bounded
from slurm_dev_cluster.faults import Faults
from slurm_dev_cluster.preflight import PreflightError
from slurm_dev_cluster.stack import REPO_ROOT, Stack, StackError

# Seconds; the bounds are lowered so that the test is short, the mechanism is the real one (the socket never
# answers, so any bound is reached: a short one only shortens the wait).
LIMIT = 0.1

needs_docker_cli = pytest.mark.skipif(shutil.which("docker") is None, reason="needs the Docker CLI")


@pytest.fixture
def hung_dockerd(tmp_path, monkeypatch) -> str:
    """DOCKER_HOST pointing at a socket that accepts every connection and never answers."""
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hold() -> None:
        while True:
            connection = server.accept()[0]
            if stop.is_set():  # the teardown's own connection, made to wake this blocked accept
                connection.close()
                return
            held.append(connection)

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    host = f"unix://{path}"
    monkeypatch.setenv("DOCKER_HOST", host)
    for name in (
        "ANSWER_SECONDS",
        "INSPECT_SECONDS",
        "DOWN_SECONDS",
        "EXEC_SECONDS",
        "CONTAINER_SECONDS",
        "TRANSFER_SECONDS",
        "CLEANUP_SECONDS",
        "BUILD_SECONDS",
    ):
        monkeypatch.setattr(docker_deadline, name, LIMIT)
    monkeypatch.setattr("slurm_dev_cluster.compose_project.UP_BOUND_SECONDS", LIMIT)
    yield host
    stop.set()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as waker:
        waker.connect(str(path))
    thread.join()
    for connection in held:
        connection.close()
    server.close()


@pytest.fixture
def stack(tmp_path) -> Stack:
    return Stack(REPO_ROOT, project="slurmsdk-hung", state_dir=tmp_path / "state", say=lambda _: None)


def _ends_in_time(call) -> Exception:
    started = time.monotonic()
    with pytest.raises((DockerTimeout, PreflightError)) as caught:
        call()
    assert time.monotonic() - started < LIMIT + docker_deadline.KILL_GRACE_SECONDS + 10
    return caught.value


@needs_docker_cli
def test_preflight_names_a_wedged_daemon_with_cause_and_fix(hung_dockerd, stack):
    error = _ends_in_time(stack.preflight)
    assert isinstance(error, PreflightError)
    (problem,) = error.problems
    assert problem.code == "daemon-hung" and not problem.unavailable  # a failure to fix, not a skip
    assert f"dockerd ({hung_dockerd}) did not answer `docker version` within {LIMIT:g} s" in problem.cause
    assert docker_deadline.DOCKERD_LOG in problem.fix and "slurm-dev-cluster setup-host" in problem.fix


@needs_docker_cli
@pytest.mark.parametrize(
    ("step", "what"),
    [
        (lambda stack: stack.down(), "docker compose down"),
        (lambda stack: stack.services(), "docker ps/inspect"),
        (lambda stack: stack.up(), "docker compose up"),
        (lambda stack: stack.exec("login", ["true"]), "docker compose exec login true"),
        (lambda stack: stack.refresh_wheelhouse(), "docker info"),
        (lambda stack: airgap.stack_subnets(stack), "docker network ls"),
    ],
)
def test_lifecycle_calls_end_and_say_why(hung_dockerd, stack, step, what):
    error = _ends_in_time(lambda: step(stack))
    assert isinstance(error, DockerTimeout) and isinstance(error, TimeoutError)  # CLI and plugin catch it
    assert f"did not answer `{what}` within {LIMIT:g} s" in str(error)
    assert "systemctl status docker" in str(error) and docker_deadline.DOCKERD_LOG in str(error)


@needs_docker_cli
@pytest.mark.parametrize(
    ("step", "what"),
    [
        (lambda env: machine.describe(env.stack.docker), "docker version"),
        (lambda env: fig_cluster.reuse(env, repeats=1), "docker compose up --wait"),
        (lambda env: fig_cluster.image_size(env), "docker compose config"),
        (lambda env: fig_cluster._remove_images_and_cache(env), "docker compose config"),
    ],
)
def test_the_benchmarks_docker_calls_end_and_say_why(hung_dockerd, stack, step, what):
    env = SimpleNamespace(stack=stack, ensure_up=lambda: None)  # the bench stack, already up
    error = _ends_in_time(lambda: step(env))
    assert isinstance(error, DockerTimeout)
    assert f"did not answer `{what}` within {LIMIT:g} s" in str(error)


@needs_docker_cli
def test_reading_the_ssh_keys_ends_and_says_why(hung_dockerd, stack, monkeypatch):
    """`connect_info`'s key read (a plain `docker exec`, after the containers were listed) is bounded too."""

    def login_listed(
        max_age: float = 0.0,
    ) -> dict:  # as `_containers` leaves it when the login container runs
        stack._login_id, stack._login_port = "login-id", 2222
        return {}

    monkeypatch.setattr(stack, "_containers", login_listed)
    error = _ends_in_time(stack.connect_info)
    assert f"did not answer `docker exec login: read the SSH keys` within {LIMIT:g} s" in str(error)


@pytest.fixture
def named_containers(stack, monkeypatch) -> Stack:
    """``stack`` with its containers' names known, so that a call on one container is the first Docker call."""
    names = {service: f"{stack.project}-{service}" for service in stack.cluster_services}
    monkeypatch.setattr(stack, "container_names", lambda: names)
    return stack


@needs_docker_cli
def test_the_exec_verb_ends_and_says_why(hung_dockerd, named_containers, monkeypatch, capsys):
    """`harness exec` without a terminal (a script's, CI's) gives up after --timeout, with exit 124."""
    monkeypatch.setattr("sys.stdin", io.StringIO())  # not a terminal
    args = cli_parser.parser().parse_args(["exec", "--timeout", str(LIMIT), "login", "true"])
    started = time.monotonic()
    assert cli_verbs.cmd_exec(named_containers, args) == cli_parser.TIMED_OUT == 124
    assert time.monotonic() - started < LIMIT + docker_deadline.KILL_GRACE_SECONDS + 10
    error = capsys.readouterr().err
    assert (
        f"`true` in login did not end within {LIMIT:g} s: it needs longer (pass --timeout SECONDS)" in error
    )
    assert "or dockerd (unix://" in error and "did not answer `docker compose exec login true`" in error


@needs_docker_cli
@pytest.mark.parametrize(
    ("inject", "what"),
    [
        (lambda faults: faults.stop_node("c1", mark_down=False), "docker kill c1"),
        (lambda faults: faults.start_node("c1"), "docker start c1"),
        (lambda faults: faults.pause("slurmctld"), "docker pause slurmctld"),
        (lambda faults: faults.unpause("slurmctld"), "docker unpause slurmctld"),
        (lambda faults: faults.restart("slurmctld"), "docker restart slurmctld"),
        (lambda faults: faults.slurm_defaults("production"), "docker cp /etc/slurm/faults.conf to slurmctld"),
        (lambda faults: faults.slow_sbatch(1), "docker cp fault_sbatch.sh to login"),
        (lambda faults: faults._login_port_pinned(), "docker inspect login"),  # before `restart login`
        (lambda faults: faults._recreate_login(None), "docker compose up"),  # login, on another port
    ],
)
def test_fault_injection_calls_end_and_say_why(hung_dockerd, named_containers, inject, what):
    error = _ends_in_time(lambda: inject(Faults(named_containers)))
    assert f"did not answer `{what}` within {LIMIT:g} s" in str(error)


@needs_docker_cli
def test_a_pull_that_never_ends_is_an_error_naming_the_registry(hung_dockerd, stack):
    """Not "building instead": a build would wait as long again on a wedged daemon."""
    started = time.monotonic()
    with pytest.raises(StackError) as caught:
        images.pull(stack, ["127.0.0.1:5000/slurm-sdk-dev:trixie-0"])
    assert time.monotonic() - started < LIMIT + docker_deadline.KILL_GRACE_SECONDS + 10
    message = str(caught.value)
    assert f"`docker pull 127.0.0.1:5000/slurm-sdk-dev:trixie-0` did not end within {LIMIT:g} s" in message
    assert "the registry or the network to it is that slow, or dockerd is wedged" in message
    assert "unset SLURM_SDK_IMAGE_REGISTRY" in message


def test_a_push_that_never_ends_is_an_error_naming_the_registry(tmp_path, monkeypatch):
    """The tag is made, the push hangs (a registry that accepts and never answers, as dockerd relays it)."""
    docker = _fake_docker(
        tmp_path,
        'case "$1 $2" in\n'
        "  'image inspect') echo '[{\"Id\": \"sha256:0\"}]' ;;\n"
        "  'image push') exec sleep 600 ;;\n"
        "esac",
    )
    stack = Stack(
        REPO_ROOT,
        project="slurmsdk-hung",
        state_dir=tmp_path / "state",
        say=lambda _: None,
        client_call=docker.client_config.client_call,
    )
    monkeypatch.setattr(stack, "build", lambda pull: None)  # the images exist
    monkeypatch.setattr(docker_deadline, "TRANSFER_SECONDS", LIMIT)
    started = time.monotonic()
    with pytest.raises(StackError) as caught:
        images.push(stack, "127.0.0.1:5000", "v1")
    assert time.monotonic() - started < LIMIT + docker_deadline.KILL_GRACE_SECONDS + 10
    message = str(caught.value)
    assert (
        f"`docker push 127.0.0.1:5000/slurm-sdk-dev:{stack.image_tag}` did not end within {LIMIT:g} s"
        in message
    )
    assert "curl http://127.0.0.1:5000/v2/" in message


def _fake_docker(tmp_path: Path, body: str) -> DockerClient:
    """A real executable in the Docker CLI's place (the bound wraps whatever client it is given)."""
    script = tmp_path / "docker"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return DockerClient(client_call=[str(script)])


def test_a_command_exiting_124_on_its_own_is_not_taken_for_a_timeout(tmp_path):
    """`docker exec` passes the command's status on: a quick 124 is the command's, not the limit's."""
    with (
        pytest.raises(DockerException) as caught,
        bounded(_fake_docker(tmp_path, "exit 124"), 30, "x") as docker,
    ):
        docker.version()
    assert not isinstance(caught.value, DockerTimeout) and caught.value.return_code == 124


def test_a_call_ignoring_the_polite_stop_is_killed(tmp_path, monkeypatch):
    """A client that ignores SIGTERM is KILLed after the grace period: the wait still ends."""
    # Lowered like LIMIT, the same mechanism: the client ignores SIGTERM, so any grace ends in a KILL.
    monkeypatch.setattr(docker_deadline, "KILL_GRACE_SECONDS", LIMIT)
    docker = _fake_docker(tmp_path, "trap '' TERM; while :; do sleep 0.1; done")
    started = time.monotonic()
    with pytest.raises(DockerTimeout), bounded(docker, LIMIT, "docker version") as bounded_docker:
        bounded_docker.version()
    assert time.monotonic() - started < LIMIT + docker_deadline.KILL_GRACE_SECONDS + 5
