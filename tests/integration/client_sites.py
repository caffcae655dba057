"""Third-party Slurm clients installed for user sdk on the dev cluster, as a user without an index would:
wheels downloaded on the host (which reaches the index) for the nodes' Python, into a git-ignored directory
of the repo (mounted read-only on every node), then `pip install --no-index --target` on the login node.
/home is shared, so every node imports what the login node installed.

When the host cannot download them, the calling test is skipped with pip's reason."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from filelock import FileLock

from slurm_dev_cluster.kit import PROJECT_MOUNT
from slurm_dev_cluster.stack import REPO_ROOT

SUBMITIT = "submitit>=1.5"  # as the `bench` extra
PLATFORM = "manylinux2014_x86_64"  # the node image's platform (Debian trixie, x86_64)
COMPLETE = ".downloaded"  # written after the last wheel: a download cut short is not mistaken for a whole one


def client_site(
    transport, name: str, requirements: tuple[str, ...], module: str, sdists: tuple[str, ...] = ()
) -> str:
    """The --target directory (PYTHONPATH) where ``requirements`` and their dependencies are installed for
    the nodes' python3; ``module`` is imported to tell whether they already are. ``sdists``: pure-Python
    dependencies published without a wheel, built into one on the host first (a download for another
    Python's platform takes wheels only)."""
    site = f"{transport.home()}/.{name}-site"
    check = f"PYTHONPATH={site} python3 -c {shlex.quote(f'import {module}')}"
    if transport.run(check, check=False).returncode == 0:
        return site
    wheels = REPO_ROOT / ".slurm-sdk" / f"{name}-wheels"
    wheels.parent.mkdir(parents=True, exist_ok=True)
    # Each xdist worker sets up the calling module's fixture: one download at a time on the host, and one
    # `pip install --target` at a time on the login node (two into one directory collide: "File exists").
    with FileLock(wheels.parent / f"{name}-wheels.lock"):
        _download(transport, wheels, requirements, sdists)
    in_stack = f"{PROJECT_MOUNT}/{wheels.relative_to(REPO_ROOT)}"
    quoted = " ".join(shlex.quote(requirement) for requirement in requirements)
    # pip builds a --target install under TMPDIR, then moves it in: with TMPDIR beside the target (the
    # same filesystem) that move is a rename. From /tmp into the /home volume a run failed with
    # "Invalid cross-device link".
    install = (
        f"mkdir -p {site}.tmp && TMPDIR={site}.tmp python3 -m pip install --quiet --disable-pip-version-check "
        f"--no-index --find-links {in_stack} --target {site} {quoted}; status=$?; rm -rf {site}.tmp; exit $status"
    )
    transport.run(f"flock {site}.lock sh -c {shlex.quote(f'{check} 2>/dev/null || {install}')}", timeout=600)
    transport.run(check)
    return site


def _download(transport, wheels, requirements: tuple[str, ...], sdists: tuple[str, ...]) -> None:
    """The wheels of ``requirements`` for the nodes' python3 into ``wheels`` (once: a marker file says so)."""
    if not (wheels / COMPLETE).exists():
        version = transport.run(
            "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"
        ).stdout.strip()
        download = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        target = [
            "--only-binary=:all:",
            "--python-version",
            version,
            "--platform",
            PLATFORM,
            "-d",
            str(wheels),
        ]
        build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps"]
        try:
            for sdist in sdists:
                subprocess.run(
                    [*build, "-w", str(wheels), sdist],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
            found = ["--find-links", str(wheels)]  # the wheels just built
            subprocess.run(
                [*download, *target, *found, *requirements],
                check=True,
                capture_output=True,
                text=True,
                timeout=600,
            )
        except subprocess.CalledProcessError as exc:
            errors = [line for line in exc.stderr.splitlines() if line.startswith("ERROR")] or [
                exc.stderr.strip()
            ]
            reason = "; ".join(error[:300] for error in errors)
            pytest.skip(f"cannot download {' '.join(requirements)} for Python {version}: {reason}")
        except subprocess.TimeoutExpired:
            pytest.skip(f"downloading {' '.join(requirements)} took over 600 s: no usable package index")
        (wheels / COMPLETE).write_text("")
