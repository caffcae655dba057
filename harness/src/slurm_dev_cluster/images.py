"""The stack's images: built here unless present, or pulled from a registry; pushed to one.

Tags (in ``<registry>/slurm-sdk-dev``):

- ``<debian release>-<inputs hash>`` (e.g. ``trixie-54e81727a940``): exactly the images these inputs build,
  the tag a stack looks for when ``$SLURM_SDK_IMAGE_REGISTRY`` is set (``Stack.build`` pulls it);
- ``<debian release>-<version>`` (e.g. ``trixie-v0.1.0``): the release they were published for.

The accounting image (slurmdbd + MariaDB; on by default, ``SLURM_SDK_ACCOUNTING=0`` leaves it out) gets the
same tags with ``-accounting``: every image ``Stack.images()`` lists is pushed and pulled.
"""

from __future__ import annotations

import re
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout
from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run as docker_run

from slurm_dev_cluster import docker_deadline, wheelhouse
from slurm_dev_cluster.compose_project import ComposeProject
from slurm_dev_cluster.errors import Say, StackError
from slurm_dev_cluster.inputs import (
    IMAGE_REGISTRY_ENV,
    IMAGE_REPOSITORY,
    accounting_enabled,
    image_repository,
    inputs_hash,
)
from slurm_dev_cluster.locks import SETUP_WAIT_SECONDS, EventLog
from slurm_dev_cluster.naming import debian_release, state_root

#: Docker's tag grammar.
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
#: ``HOST[:PORT][/path]``: no scheme, no tag.
REGISTRY = re.compile(r"[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?")


class Images:
    """The images of the stack defined in ``repo_root``, built or pulled through ``compose``."""

    def __init__(self, compose: ComposeProject, repo_root: Path, state_dir: Path) -> None:
        self.compose = compose
        self.repo_root = repo_root
        self.state_dir = state_dir
        self.say: Say = compose.say
        self.events: EventLog = compose.events
        self.project = compose.project

    @property
    def release(self) -> str:
        return debian_release()

    @property
    def tag(self) -> str:
        """``<release>-<inputs hash>``: an image with this tag was built from exactly these inputs."""
        return f"{self.release}-{inputs_hash(self.repo_root)[:12]}"

    def names(self, repository: str | None = None) -> list[str]:
        """The images compose runs (``repository`` default: ``image_repository()``)."""
        suffixes = [""] + (["-accounting"] if accounting_enabled() else [])
        return [f"{repository or image_repository()}:{self.tag}{suffix}" for suffix in suffixes]

    def missing(self) -> list[str]:
        """Which of ``names()`` this host lacks, in one `docker image ls` (not a call per image)."""
        wanted = self.names()
        references = [arg for image in wanted for arg in ("--filter", f"reference={image}")]
        with self.compose.bounded(docker_deadline.INSPECT_SECONDS, "docker image ls") as docker:
            listed = docker_run(
                [*docker.docker_cmd, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", *references]
            )
        present = set(str(listed).split())
        return [image for image in wanted if image not in present]

    def build(self, pull: bool = True) -> None:
        """Build the images unless images tagged with these inputs exist (a warm start then skips even
        the cached build); echoes step headers, full log in build.log. With $SLURM_SDK_IMAGE_REGISTRY
        set (and ``pull``), the images published for these inputs are pulled instead when the registry
        has them."""
        if not self.missing():
            return
        # Stacks of other projects (the second stack of a test session) want the same images: one builds,
        # the others wait for it and then find them.
        lock = FileLock(str(state_root() / f"images-{self.tag}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self.say(f"another stack is building images {self.tag}; waiting for it (lock {lock.lock_file})")
            try:
                lock.acquire(timeout=SETUP_WAIT_SECONDS)
            except Timeout:
                raise StackError(
                    f"waited {SETUP_WAIT_SECONDS:.0f} s for {lock.lock_file} (another stack building these "
                    "images); check `docker ps` for a stuck build, and delete the lock file only if no "
                    "harness process runs"
                ) from None
        try:
            missing = self.missing()
            if not missing:
                return
            if pull and image_repository() != IMAGE_REPOSITORY and _pull(self.compose, missing):
                return
            self.refresh_wheelhouse()
            self.compose.build(self.state_dir / "build.log")
        finally:
            lock.release()

    def refresh_wheelhouse(self, *, force: bool = False, strict: bool = False) -> bool:
        """Fill images/wheelhouse/<release>/ with pyproject.toml's dependencies for the nodes (no-op while
        current). A failed download only warns unless ``strict``: the Debian packages may satisfy
        everything, and if not, the image build fails naming the fix."""
        try:
            with self.compose.bounded(docker_deadline.ANSWER_SECONDS, "docker info") as docker:
                architecture = docker.system.info().architecture
            target = wheelhouse.target_for(self.release, architecture)
            return wheelhouse.ensure(self.repo_root, target, self.say, force=force)
        except wheelhouse.WheelhouseError as exc:
            if strict:
                raise StackError(str(exc)) from None
            self.say(f"warning: {exc}\nbuilding with the wheelhouse as it is")
            return False


class ImageStack(Protocol):
    """What pushing needs of a stack (``slurm_dev_cluster.stack.Stack`` is one)."""

    compose: ComposeProject
    project: str
    release: str
    image_tag: str
    events: EventLog

    def say(self, message: str) -> None: ...
    def build(self, pull: bool = True) -> None: ...
    def images(self, repository: str | None = None) -> list[str]: ...


@dataclass(frozen=True)
class Pushed:
    local: str  # slurm-sdk-dev:trixie-<hash>
    remote: list[str]  # every <registry>/slurm-sdk-dev:<tag> it was pushed as


def sdk_version() -> str:
    try:
        return installed_version("slurm-sdk")
    except PackageNotFoundError:
        return "0+unknown"


def check_registry(registry: str) -> str:
    registry = registry.strip().rstrip("/")
    if not REGISTRY.fullmatch(registry):
        raise StackError(
            f"registry {registry!r} is not HOST:PORT or HOST/PATH (no scheme, no tag); "
            "e.g. --registry 127.0.0.1:5000 or --registry ghcr.io/OWNER"
        )
    return registry


def release_tag(stack: ImageStack, version: str) -> str:
    tag = f"{stack.release}-{version}"
    if not TAG.fullmatch(tag):
        raise StackError(
            f"{tag!r} is not a valid image tag (letters, digits, '_', '.', '-'; at most 128): "
            "pass --version with a plain release name such as v0.1.0"
        )
    return tag


def push(stack: ImageStack, registry: str, version: str | None = None) -> list[Pushed]:
    """Build this checkout's images if needed (never pulls), tag and push them; returns what was pushed."""
    registry = check_registry(registry)
    release = release_tag(stack, version or sdk_version())
    stack.build(pull=False)
    pushed = []
    for local in stack.images(IMAGE_REPOSITORY):
        suffix = local.rpartition(":")[2].removeprefix(stack.image_tag)  # "" or "-accounting"
        remote = [f"{registry}/{IMAGE_REPOSITORY}:{tag}{suffix}" for tag in (stack.image_tag, release)]
        for ref in remote:
            with stack.compose.bounded(docker_deadline.INSPECT_SECONDS, f"docker tag {ref}") as docker:
                docker.image.tag(local, ref)
            stack.say(f"pushing {ref}")
            started = time.monotonic()
            fix = (
                f"fix: check that the registry answers (curl http://{registry.split('/')[0]}/v2/) and that "
                "you are logged in (`docker login`) where it needs it"
            )
            try:
                with _transfer(stack.compose, f"docker push {ref}") as docker:
                    docker.image.push(ref, quiet=True)
            except DockerException as exc:
                raise StackError(f"`docker push {ref}` failed: {_last_line(exc)}\n{fix}") from None
            except docker_deadline.DockerTimeout as exc:
                raise StackError(f"{_slow_registry(exc)}\n{fix}") from None
            stack.say(f"  pushed in {time.monotonic() - started:.1f} s")
        pushed.append(Pushed(local, remote))
    stack.events.record("push", project=stack.project, registry=registry, tags=f"{stack.image_tag},{release}")
    return pushed


def pull(stack: ImageStack, images: list[str]) -> bool:
    """Pull the images for these inputs; False (after saying why) when the registry lacks one of them."""
    return _pull(stack.compose, images)


def _pull(compose: ComposeProject, images: list[str]) -> bool:
    """Pull the images for these inputs; False (after saying why) when the registry lacks one of them."""
    started = time.monotonic()
    for image in images:
        compose.say(f"pulling {image}")
        try:
            with _transfer(compose, f"docker pull {image}") as docker:
                docker.image.pull(image, quiet=True)
        except DockerException as exc:
            compose.say(
                f"could not pull {image} ({_last_line(exc)}): no image was published for these inputs "
                "(`slurm-dev-cluster push --registry ...` publishes them); building instead"
            )
            return False
        except docker_deadline.DockerTimeout as exc:
            # Not a missing image: building instead could wait as long again on a wedged daemon.
            raise StackError(
                f"{_slow_registry(exc)}\nfix: retry; or unset {IMAGE_REGISTRY_ENV} to build the images here"
            ) from None
    compose.events.record("pull", project=compose.project, images=",".join(images))
    compose.say(f"images pulled in {time.monotonic() - started:.1f} s")
    return True


def _transfer(compose: ComposeProject, what: str) -> AbstractContextManager[DockerClient]:
    return compose.bounded(docker_deadline.TRANSFER_SECONDS, what)


def _last_line(exc: DockerException) -> str:
    lines = (exc.stderr or str(exc)).strip().splitlines()
    return lines[-1] if lines else f"exit {exc.return_code}"


def _slow_registry(exc: docker_deadline.DockerTimeout) -> str:
    """A push or pull that ran out of time: the registry (or the network to it) may be the slow part."""
    return (
        f"`{exc.what}` did not end within {exc.seconds:g} s: the registry or the network to it is that "
        f"slow, or dockerd is wedged (`systemctl status docker`, {docker_deadline.DOCKERD_LOG})"
    )
