"""What a stack's images and containers are made from, as hashes a running stack is compared with, and
the environment settings that shape it (image registry, accounting, compose profiles)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from slurm_dev_cluster import wheelhouse
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.kit import KitSettings, definition_dir

#: Where the cluster's definition is read from: the slurm-sdk checkout for an editable kit (this repo's
#: tests), else the installed package's data. Builds use ``cluster_root()``, a writable copy of it.
REPO_ROOT = definition_dir()
#: Files whose content decides the images and containers (the Dockerfile COPYs pyproject.toml).
INPUT_FILES = ("compose.yaml", "pyproject.toml")
INPUT_DIRS = ("images",)
#: Derived from pyproject.toml and the release (both inputs already) and rewritten by builds, so it is not
#: hashed itself: a session's expected hash must not move when the harness refreshes it before a build.
INPUT_EXCLUDED = (wheelhouse.WHEELHOUSE_DIR,)
INPUT_ENV = ("DEBIAN_RELEASE", "SLURM_SDK_COMPOSE_PROFILES")
#: 1: the login node's sshd allows TCP and agent forwarding (default: none; images/sshd_config).
SSH_FORWARDING_VAR = "SLURM_SDK_SSH_FORWARDING"
IMAGE_REPOSITORY = "slurm-sdk-dev"  # compose.yaml's image name (without a registry)
#: Registry (``HOST:PORT`` or ``ghcr.io/owner``) to pull the images from instead of building them.
IMAGE_REGISTRY_ENV = "SLURM_SDK_IMAGE_REGISTRY"
ACCOUNTING_VAR = "SLURM_SDK_ACCOUNTING"  # compose.yaml: slurmdbd's replicas, 1 (default) or 0


def inputs_hash(repo_root: Path) -> str:
    """sha256 over compose.yaml, pyproject.toml, every file under images/ and the build env vars."""
    digest = hashlib.sha256()
    paths = [repo_root / name for name in INPUT_FILES]
    for directory in INPUT_DIRS:
        paths += sorted(
            p for p in (repo_root / directory).rglob("*") if p.is_file() and not _excluded(p, repo_root)
        )
    for path in paths:
        digest.update(str(path.relative_to(repo_root)).encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
        digest.update(b"\0")
    for name in INPUT_ENV:
        digest.update(f"{name}={os.environ.get(name, '')}\0".encode())
    return digest.hexdigest()


def containers_inputs(repo_root: Path, project_source: Path, compose_files: Sequence[Path] = ()) -> str:
    """The image inputs, plus what the containers mount (the project's source, the SDK package) and the
    extra compose files: a change to any of them recreates the containers."""
    images = inputs_hash(repo_root)
    # The login node reads its forwarding setting at start (images/entrypoint.sh): a change recreates it.
    forwarding = os.environ.get(SSH_FORWARDING_VAR, "0")
    digest = hashlib.sha256(
        f"{images}\0project={project_source.resolve()}\0sdk={sdk_package_dir()}\0{SSH_FORWARDING_VAR}={forwarding}".encode()
    )
    for path in compose_files:
        digest.update(f"\0{path}\0".encode() + Path(path).read_bytes())
    return digest.hexdigest()


def sdk_package_dir() -> Path:
    """The directory of the ``slurm`` package this host imports: the nodes import the same files (it is
    mounted read-only over the image's editable install), so the SDK on both sides is one version."""
    import slurm  # the SDK (a dependency of the kit); imported only when a stack is configured

    return Path(slurm.__file__).resolve().parent


def stack_inputs(settings: KitSettings) -> str:
    """``containers_inputs`` of the stack serving ``settings`` (computed without touching its state)."""
    return containers_inputs(settings.kit_root, settings.project_dir, settings.compose_files)


def _excluded(path: Path, repo_root: Path) -> bool:
    return any(path.is_relative_to(repo_root / excluded) for excluded in INPUT_EXCLUDED)


def image_repository() -> str:
    """``slurm-sdk-dev``, or ``<registry>/slurm-sdk-dev`` when $SLURM_SDK_IMAGE_REGISTRY names a registry."""
    registry = os.environ.get(IMAGE_REGISTRY_ENV, "").strip().rstrip("/")
    return f"{registry}/{IMAGE_REPOSITORY}" if registry else IMAGE_REPOSITORY


def accounting_enabled() -> bool:
    """Accounting (slurmdbd + MariaDB, so sacct works) is on unless SLURM_SDK_ACCOUNTING=0."""
    value = os.environ.get(ACCOUNTING_VAR, "1").strip() or "1"
    if value not in ("0", "1"):
        raise StackError(f"{ACCOUNTING_VAR}={value!r}: use 1 (accounting, the default) or 0 (none)")
    return value == "1"


def compose_profiles() -> list[str]:
    """Extra compose profiles, e.g. SLURM_SDK_COMPOSE_PROFILES=a,b (accounting is not one: it is on by default)."""
    return [p.strip() for p in os.environ.get("SLURM_SDK_COMPOSE_PROFILES", "").split(",") if p.strip()]


#: The compose profile that adds slurmrestd (compose.yaml service ``slurmrestd``; docs/rest.md).
REST_PROFILE = "rest"


def rest_enabled() -> bool:
    """slurmrestd runs in the stack: SLURM_SDK_COMPOSE_PROFILES names the ``rest`` profile."""
    return REST_PROFILE in compose_profiles()
