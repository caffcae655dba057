"""Slurm's defaults as files: ``images/slurm/defaults/<name>.conf`` (``dev``, ``production``), baked into the
image as ``/etc/slurm/defaults/`` (where a fresh container takes ``dev.conf`` from), and the
``/etc/slurm/faults.conf`` text that puts one of them, with overrides, in force."""

from __future__ import annotations

from slurm_dev_cluster.kit import definition_dir

DEFAULTS_DIR = definition_dir() / "images" / "slurm" / "defaults"
DEV = "dev"
FAULTS_CONF = "/etc/slurm/faults.conf"
#: Slurm's smallest sensible MinJobAge: a finished job is forgotten seconds after it ends.
FORGET_AFTER_SECONDS = 2
#: Settings read back from slurmctld after a reconfigure, with Slurm's value when a file leaves them out.
CHECKED_SETTINGS = {"MinJobAge": "300", "DependencyParameters": "(null)", "MaxArraySize": "1001"}


def defaults_names() -> list[str]:
    return sorted(path.stem for path in DEFAULTS_DIR.glob("*.conf"))


def defaults(name: str) -> dict[str, str]:
    """The settings of ``images/slurm/defaults/<name>.conf`` (``dev`` or ``production``)."""
    path = DEFAULTS_DIR / f"{name}.conf"
    if not path.is_file():
        raise ValueError(
            f"unknown Slurm defaults {name!r}: choose one of {', '.join(defaults_names())} "
            f"(files in {DEFAULTS_DIR})"
        )
    settings = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def render(name: str, overrides: dict[str, str]) -> str:
    settings = defaults(name) | overrides
    lines = [
        f"# written by slurm_dev_cluster.fault_slurm (text: slurm_dev_cluster.slurm_defaults): {name} defaults"
        + (f" + {overrides}" if overrides else "")
    ]
    return "\n".join(lines + [f"{key}={value}" for key, value in settings.items()]) + "\n"
