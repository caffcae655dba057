"""What a stack is called and where its state lives, derived from the checkout and the environment.

The compose project name is derived from the checkout's absolute path, so two checkouts never share a
stack and a checkout always finds its own stack again. Per-project state (locks, copied SSH key,
``state.json``, ``events.log``, ``build.log``) lives in ``~/.cache/slurm-sdk-dev/<project>/``.
Nothing here imports another module of the kit: every module may use it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

#: The Debian release the images are built from when DEBIAN_RELEASE is unset (compose.yaml says the same).
DEFAULT_RELEASE = "trixie"


def project_name_for(repo_root: Path) -> str:
    """``slurmsdk-<dir>-<sha1(path)[:8]>``: stable per checkout, distinct between checkouts."""
    resolved = repo_root.resolve()
    slug = re.sub(r"[^a-z0-9]+", "-", resolved.name.lower()).strip("-")[:30] or "repo"
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
    return f"slurmsdk-{slug}-{digest}"


def project_root_of(directory: Path) -> Path:
    """The nearest directory at or above ``directory`` that holds a project (pyproject.toml, setup.py or
    .git), else ``directory``: the CLI serves the same project from any of its subdirectories."""
    directory = directory.resolve()
    for candidate in (directory, *directory.parents):
        if any((candidate / marker).exists() for marker in ("pyproject.toml", "setup.py", ".git")):
            return candidate
    return directory


def debian_release() -> str:
    """The Debian release the nodes are built from ($DEBIAN_RELEASE), which decides the Slurm version."""
    return os.environ.get("DEBIAN_RELEASE") or DEFAULT_RELEASE


def default_project(repo_root: Path) -> str:
    """The checkout's project, plus ``-<release>`` for a release other than the default: slurmctld's state
    and the accounting database are kept in volumes in a Slurm version's own format (an older slurmctld
    cannot read a newer one's), so each release's stack has its own volumes, state dir and containers."""
    if os.environ.get("SLURM_SDK_PROJECT"):
        return os.environ["SLURM_SDK_PROJECT"]
    release = debian_release()
    suffix = "" if release == DEFAULT_RELEASE else f"-{release}"
    return project_name_for(repo_root) + suffix


def alone_project(project: str, defaults: str = "dev") -> str:
    """The Compose project of a stack a test session under ``-n 2 --dist loadgroup`` starts beside its own for
    the tests that take the cluster alone (``slurm_dev_cluster.plugin_harness``): ``<project>-alone`` for the
    fault tests on the dev defaults, ``<project>-alone-<defaults>`` for the tests run with other Slurm
    defaults (``production``)."""
    return f"{project}-alone" if defaults == "dev" else f"{project}-alone-{defaults}"


def state_root() -> Path:
    """Where every project's state directory lives: $SLURM_SDK_STATE_HOME, else the user's cache."""
    if os.environ.get("SLURM_SDK_STATE_HOME"):
        return Path(os.environ["SLURM_SDK_STATE_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "slurm-sdk-dev"
