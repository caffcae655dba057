"""What a GitHub Actions runner does with a job's ``services:`` (and ``container:``), emulated with
python-on-whales, so that tests can run an example workflow file as it would run (docs/ci.md).

The runner's semantics reproduced here (actions/runner, ContainerOperationProvider):

- one user-defined network per job (``github_network_<hex>``); every service container joins it with its
  service id as network alias;
- per service, ``docker create`` with the image, ``env``, ``ports``, ``volumes`` and ``options`` only:
  no command, no network of the workflow's choosing; the runner adds ``GITHUB_ACTIONS=true`` and
  ``CI=true``; then ``docker start``, service after service, before any step;
- the steps start once every service that has a health check is healthy (one that turns unhealthy fails
  the job);
- ``actions/checkout`` empties the workspace directory (keeping the directory) and writes the repository
  into it as the runner's user (uid 1001 on hosted runners), not root;
- a ``run:`` step is ``bash --noprofile --norc -eo pipefail`` in the workspace, with ``RUNNER_TEMP``,
  ``GITHUB_WORKSPACE`` and ``GITHUB_ENV`` (whose lines later steps get as environment variables).

Named volumes are global on a Docker host: the emulation prefixes each with its own id so that parallel
runs never share one (a hosted runner is a fresh VM each job, so there the names need no prefix).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import yaml
from python_on_whales import DockerClient


def _runner_uid() -> int:
    """The runner's user: uid 1001 (`runner` on GitHub's hosted Ubuntu images) when this host has such a
    user, else `nobody`: what matters is a user that is not root and that ssh can look up."""
    import pwd

    for uid in (1001, 65534):
        try:
            return pwd.getpwuid(uid).pw_uid
        except KeyError:
            continue
    raise RuntimeError("no user with uid 1001 or 65534 (nobody) to run the steps as")


RUNNER_UID = _runner_uid()
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
SERVICE_ID = re.compile(r"job\.services\.([A-Za-z0-9_-]+)\.id")
SERVICE_PORT = re.compile(r"job\.services\.([A-Za-z0-9_-]+)\.ports\['(\d+)'\]")
#: ``options`` flags the emulation understands, as python-on-whales keyword arguments.
FLAGS = {
    "--hostname": "hostname",
    "--cap-add": "cap_add",
    "--health-cmd": "health_cmd",
    "--health-interval": "health_interval",
    "--health-timeout": "health_timeout",
    "--health-retries": "health_retries",
    "--health-start-period": "health_start_period",
    "--entrypoint": "entrypoint",
}
SWITCHES = {"--init": "init"}


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    if not match:
        raise ValueError(f"duration {text!r}: the emulation knows ms, s, m")
    value, unit = float(match.group(1)), match.group(2)
    return timedelta(seconds=value * {"ms": 0.001, "s": 1, "m": 60}[unit])


def create_arguments(options: str) -> dict:
    """A service's ``options`` string as python-on-whales ``container.create`` keyword arguments."""
    words, kwargs = shlex.split(options or ""), {}
    while words:
        flag = words.pop(0)
        name, _, value = flag.partition("=")
        if name in SWITCHES:
            kwargs[SWITCHES[name]] = True
            continue
        if name not in FLAGS:
            raise ValueError(f"options flag {name!r} is not one the emulation knows: {sorted(FLAGS)}")
        value = value or words.pop(0)
        key = FLAGS[name]
        if key == "cap_add":
            kwargs.setdefault(key, []).append(value)
        elif key in ("health_interval", "health_timeout", "health_start_period"):
            kwargs[key] = _duration(value)
        elif key == "health_retries":
            kwargs[key] = int(value)
        else:
            kwargs[key] = value
    return kwargs


def publish_argument(port: str | int) -> tuple:
    """``ports`` entry -> python-on-whales ``publish`` tuple (``8080:80``, ``127.0.0.1::22``, ``22``)."""
    text = str(port)
    host, _, container = text.rpartition(":")
    return (host, container) if host else (container,)


@dataclass
class Job:
    """One workflow job of an example file, run as a runner would."""

    workflow: Path
    job_id: str
    images: dict[str, str]  # image in the YAML -> image to run instead (locally built)
    docker: DockerClient = field(default_factory=DockerClient)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    containers: dict[str, str] = field(default_factory=dict)  # service id -> container id
    ports: dict[str, dict[str, int]] = field(default_factory=dict)
    volumes: set[str] = field(default_factory=set)
    network: str = ""
    env_file_values: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spec = yaml.safe_load(self.workflow.read_text())["jobs"][self.job_id]
        self.prefix = f"hci-{self.run_id}"

    @property
    def services(self) -> dict:
        return self.spec.get("services", {})

    def _volume(self, entry: str) -> str:
        """A ``volumes`` entry with a named volume's name made unique to this run."""
        source, _, rest = entry.partition(":")
        if source.startswith(("/", ".", "$")):
            return entry
        name = f"{self.prefix}-{source}"
        self.volumes.add(name)
        return f"{name}:{rest}"

    def _image(self, image: str) -> str:
        return self.images.get(image, image)

    def start_services(self) -> None:
        """Network, then per service ``docker create`` + ``docker start``, in the file's order."""
        self.network = f"github_network_{self.prefix}"
        self.docker.network.create(self.network)
        for service, spec in self.services.items():
            envs = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
            envs.update(GITHUB_ACTIONS="true", CI="true")
            container = self.docker.container.create(
                self._image(spec["image"]),
                name=f"{self.prefix}-{service}",
                envs=envs,
                publish=[publish_argument(p) for p in spec.get("ports") or []],
                volumes=[tuple(self._volume(v).split(":", 2)) for v in spec.get("volumes") or []],
                networks=[self.network],
                network_aliases=[service],
                labels={"hci.emulated-runner": self.prefix},
                **create_arguments(spec.get("options", "")),
            )
            self.containers[service] = container.id
            self.docker.container.start(container.id)
        for service, container in self.containers.items():
            ports = self.docker.container.inspect(container).network_settings.ports or {}
            self.ports[service] = {
                key.split("/")[0]: int(bindings[0]["HostPort"]) for key, bindings in ports.items() if bindings
            }

    def wait_healthy(self, timeout: float = 300.0) -> float:
        """Until every service with a health check is healthy (the runner's gate before the steps)."""
        started, pending = time.monotonic(), set(self.containers)
        while pending:
            for service in sorted(pending):
                state = self.docker.container.inspect(self.containers[service]).state
                status = state.health.status if state.health else "healthy"
                if status == "healthy":
                    pending.discard(service)
                elif status == "unhealthy" or not state.running:
                    raise RuntimeError(f"service {service} is {status}:\n{self.logs(service)}")
            if pending and time.monotonic() - started > timeout:
                raise TimeoutError(f"services {sorted(pending)} not healthy after {timeout:.0f} s")
            time.sleep(0.2)
        return time.monotonic() - started

    def logs(self, service: str, tail: int = 40) -> str:
        return self.docker.container.logs(self.containers[service], tail=tail)

    def expression(self, text: str) -> str:
        """``${{ ... }}`` in a step's ``env``: the service contexts (others are not emulated)."""

        def value(match: re.Match) -> str:
            inner = match.group(1)
            if found := SERVICE_ID.fullmatch(inner):
                return self.containers[found.group(1)]
            if found := SERVICE_PORT.fullmatch(inner):
                return str(self.ports[found.group(1)][found.group(2)])
            raise ValueError(f"expression {inner!r} is not emulated")

        return EXPRESSION.sub(value, text)

    def step(self, step_id: str) -> dict:
        for step in self.spec["steps"]:
            if step.get("id") == step_id:
                return step
        raise KeyError(f"job {self.job_id} has no step with id {step_id!r}")

    def run_step(
        self,
        step_id: str,
        workspace: Path,
        runner_temp: Path,
        extra_env: dict | None = None,
        *,
        as_root: bool = False,
    ):
        """A ``run:`` step as the runner's user (``as_root``: as this process's user, for a step that
        needs this host's Python, which may live where the runner's user cannot reach), in the
        workspace; ``GITHUB_ENV`` lines carried over."""
        step = self.step(step_id)
        github_env = runner_temp / f"github_env_{step_id}"
        github_env.write_text("")
        os.chown(github_env, RUNNER_UID, RUNNER_UID)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(runner_temp / "home"),
            "RUNNER_TEMP": str(runner_temp),
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_ENV": str(github_env),
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            **self.env_file_values,
            **{k: self.expression(str(v)) for k, v in (step.get("env") or {}).items()},
            **(extra_env or {}),
        }
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=workspace,
            env=env,
            **(
                {} if as_root else {"user": RUNNER_UID, "group": RUNNER_UID, "extra_groups": [docker_group()]}
            ),
            capture_output=True,
            text=True,
            timeout=1200,
        )
        for line in github_env.read_text().splitlines():
            key, sep, val = line.partition("=")
            if sep:
                self.env_file_values[key] = val
        if result.returncode != 0:
            raise RuntimeError(
                f"step {step_id} failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    # ---- a job that runs in a container (``container:``) -------------------------------------------

    #: Where the runner mounts its work directory in a job container (workspace: /__w/<repo>/<repo>).
    CONTAINER_WORK = "/__w"

    def start_job_container(self, work: Path, extra_volumes: list[tuple[str, str, str]] = ()) -> str:
        """The job container, as the runner makes it: the ``container:`` image, env and volumes, the
        runner's work directory at /__w, on the services' network, kept alive by ``tail -f /dev/null``
        (the runner overrides the entrypoint the same way). ``extra_volumes``: what the emulation needs
        besides (this host's Python for the steps that need one)."""
        spec = self.spec["container"]
        envs = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        envs.update(GITHUB_ACTIONS="true", CI="true")
        container = self.docker.container.create(
            self._image(spec["image"]),
            ["-f", "/dev/null"],
            entrypoint="tail",
            name=f"{self.prefix}-job",
            envs=envs,
            volumes=[
                (str(work), self.CONTAINER_WORK),
                *[tuple(self._volume(v).split(":", 2)) for v in spec.get("volumes") or []],
                *extra_volumes,
            ],
            networks=[self.network],
            labels={"hci.emulated-runner": self.prefix},
            **create_arguments(spec.get("options", "")),
        )
        self.containers["<job>"] = container.id
        self.docker.container.start(container.id)
        return container.id

    def run_step_in_container(self, step_id: str, workspace: str, extra_env: dict | None = None) -> str:
        """A ``run:`` step inside the job container (``docker exec``, the container's user, in the
        workspace), with ``GITHUB_ENV`` lines carried over; returns its stdout."""
        step = self.step(step_id)
        github_env = f"{self.CONTAINER_WORK}/_temp/github_env_{step_id}"
        env = {
            "RUNNER_TEMP": f"{self.CONTAINER_WORK}/_temp",
            "GITHUB_WORKSPACE": workspace,
            "GITHUB_ENV": github_env,
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            **self.env_file_values,
            **{k: self.expression(str(v)) for k, v in (step.get("env") or {}).items()},
            **(extra_env or {}),
        }
        job = self.containers["<job>"]
        self.docker.execute(job, ["bash", "-c", f"mkdir -p {self.CONTAINER_WORK}/_temp && : > {github_env}"])
        exec_env = [f"--env={k}={v}" for k, v in env.items()]
        shell = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]]
        result = subprocess.run(
            ["docker", "exec", "-w", workspace, *exec_env, job, *shell],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        for line in self.docker.execute(job, ["cat", github_env]).splitlines():
            key, sep, val = line.partition("=")
            if sep:
                self.env_file_values[key] = val
        if result.returncode != 0:
            raise RuntimeError(
                f"step {step_id} failed in the job container (exit {result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def remove(self) -> None:
        """Everything this run made: containers (with their anonymous volumes), network, named volumes."""
        if self.containers:
            self.docker.container.remove(list(self.containers.values()), force=True, volumes=True)
        if self.network:
            self.docker.network.remove(self.network)
        if self.volumes:
            self.docker.volume.remove(sorted(self.volumes))


def docker_group() -> int:
    return os.stat("/var/run/docker.sock").st_gid


def make_runner_dirs(root: Path) -> tuple[Path, Path]:
    """The runner's workspace (exists, empty, the runner's user's) and RUNNER_TEMP, before services start."""
    workspace, temp = root / "work" / "repo" / "repo", root / "work" / "_temp"
    for path in (workspace, temp, temp / "home"):
        path.mkdir(parents=True, exist_ok=True)
    for path in (root / "work", root / "work" / "repo", workspace, temp, temp / "home"):
        os.chown(path, RUNNER_UID, RUNNER_UID)
    root.chmod(0o755)
    return workspace, temp


def checkout(repo: Path, workspace: Path) -> None:
    """actions/checkout: empty the workspace (keep the directory), then write the repository's files
    into it, both as the runner's user. A root-owned file left by a service in the workspace makes the
    emptying fail as on GitHub ("Permission denied")."""
    subprocess.run(
        ["find", str(workspace), "-mindepth", "1", "-delete"], user=RUNNER_UID, group=RUNNER_UID, check=True
    )
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    archive = workspace.parent / f"checkout-{uuid.uuid4().hex[:6]}.tar"
    with tarfile.open(archive, "w") as tar:
        for name in filter(None, (n.decode() for n in listed)):
            if (repo / name).exists():
                tar.add(repo / name, arcname=name, recursive=False)
    os.chown(archive, RUNNER_UID, RUNNER_UID)
    try:
        subprocess.run(
            ["tar", "-xf", str(archive), "-C", str(workspace), "--no-same-owner"],
            user=RUNNER_UID,
            group=RUNNER_UID,
            check=True,
        )
    finally:
        archive.unlink()
