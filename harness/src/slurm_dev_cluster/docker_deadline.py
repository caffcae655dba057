"""Docker calls that always end: a wedged dockerd (seen here: Docker 20.10 deadlocked under load) leaves
every CLI call waiting for an answer that never comes, and the harness with it.

``bounded(docker, seconds, what)`` yields a python-on-whales client whose every call runs under
coreutils' ``timeout`` (the process, and the compose plugin it starts, is ended when the time is up);
a call that ran out of time raises ``DockerTimeout``, whose message names the call, the limit, the
likely cause and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

DOCKERD_LOG = "/var/log/slurm-sdk-dockerd.log"  # where bootstrap-host.sh (`slurm-dev-cluster setup-host`) starts dockerd's log
#: Statuses of a ``timeout`` run that ran out: 124 (TERM sent, the client ended), 137 or -9 (the client
#: ignored TERM and was KILLed after the grace period: timeout's process group, timeout included).
TIMED_OUT_STATUSES = (124, 137, -signal.SIGKILL)
KILL_GRACE_SECONDS = 5
FALLBACK_DIRS = ("/usr/bin", "/bin", "/usr/local/bin", "/opt/homebrew/bin")
#: Bounds of the calls on the stack's lifecycle path; each is far above what a healthy daemon needs here.
ANSWER_SECONDS = 30.0  # `docker version` / `docker info`: milliseconds when dockerd is alive
#: `compose ps`, `image inspect`/`tag`, `network ls`, `compose logs`: seconds even at load 30.
INSPECT_SECONDS = 60.0
EXEC_SECONDS = 120.0  # the harness's `docker exec`s: short commands (cat, sinfo, scontrol, a python import)
#: One container's `kill`, `start`, `pause`, `unpause`, `restart` (2 s grace) or `cp` (the fault injection):
#: a second or two here, ~10 s at load 30.
CONTAINER_SECONDS = 60.0
#: `docker push`/`pull` of one image (0.4-0.6 GB): seconds to a registry on 127.0.0.1, minutes to a remote one;
#: past this a build (5-10 min) is faster anyway.
TRANSFER_SECONDS = 1800.0
DOWN_SECONDS = 120.0  # `compose down`: ~5 s here (stop_grace_period 2 s)
BUILD_SECONDS = 3600.0  # a cold image build: ~5-10 min here
#: Removing an image (0.4-0.7 GB) or pruning the whole build cache (several GB): seconds to a minute here.
CLEANUP_SECONDS = 600.0


class DockerTimeout(TimeoutError):
    """A Docker call did not end in time; the message names the cause and the fix."""

    def __init__(self, what: str, seconds: float) -> None:
        self.what, self.seconds = what, seconds
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        super().__init__(
            f"dockerd ({where}) did not answer `{what}` within {seconds:g} s: the daemon is wedged or "
            "overloaded\nfix: check it (`systemctl status docker`, or its log: journalctl -u docker, "
            f"{DOCKERD_LOG} when `slurm-dev-cluster setup-host` started it), restart it (`systemctl restart "
            "docker`; a dockerd started by setup-host: stop that process, then `sudo slurm-dev-cluster "
            "setup-host` starts it again), then retry"
            + ("; or unset/fix DOCKER_HOST" if os.environ.get("DOCKER_HOST") else "")
        )


def timeout_binary() -> str:
    """coreutils' ``timeout`` (``gtimeout`` where coreutils is prefixed, as Homebrew's), also when PATH
    is narrowed to the Docker CLI's directory."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *FALLBACK_DIRS])
    for name in ("timeout", "gtimeout"):
        found = shutil.which(name, path=search)
        if found:
            return found
    raise FileNotFoundError(
        "coreutils' `timeout` is not installed, and the harness bounds every Docker call with it "
        "(fix: install coreutils: `apt-get install coreutils`, `brew install coreutils`)"
    )


def bounded_client(docker: DockerClient, seconds: float) -> DockerClient:
    """``docker`` with every call run as ``timeout -k 5 <seconds> docker ...``."""
    config = docker.client_config
    limit = [timeout_binary(), f"--kill-after={KILL_GRACE_SECONDS}", f"{seconds:g}"]
    return DockerClient(
        client_config=dataclasses.replace(
            config, client_call=[*limit, *config.client_call], _client_call_with_path=None
        )
    )


def ended_by_its_limit(exc: DockerException) -> bool:
    """Whether a bounded call's ``timeout`` ended it (not the command: `docker exec` passes its status on)."""
    launched = Path(str(exc.docker_command[0])).name if exc.docker_command else ""
    return exc.return_code in TIMED_OUT_STATUSES and launched in ("timeout", "gtimeout")


@contextmanager
def bounded(docker: DockerClient, seconds: float, what: str) -> Iterator[DockerClient]:
    """A client for calls that must end within ``seconds``; a call that did not raises ``DockerTimeout``.

    A command run by `docker exec` may itself exit 124: only a call that also lasted the whole limit is
    taken for a timeout."""
    started = time.monotonic()
    try:
        yield bounded_client(docker, seconds)
    except DockerException as exc:
        if ended_by_its_limit(exc) and time.monotonic() - started >= seconds:
            raise DockerTimeout(what, seconds) from None
        raise
