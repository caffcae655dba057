"""The test kit's settings: which project a dev cluster serves, and from where.

The cluster's definition (compose.yaml, images/, the SDK's pyproject.toml) is the kit's own: shipped in
the wheel as ``slurm_dev_cluster/cluster/`` and copied to a writable directory before its first build, or
read in place from the slurm-sdk checkout an editable kit is installed from. Every node imports the SDK
the host has installed (its package directory is mounted read-only at ``/opt/slurm_sdk_dev/src/slurm``).
The project under test, by default the pytest rootdir (or the current directory for the CLI), is set by:

- ``project_dir``: its source tree, bind-mounted read-only at ``/opt/project`` on every node;
- ``project``: the Compose project name (default: derived from ``project_dir``'s path), hence its own
  stack and state directory;
- ``import_roots``: directories of ``project_dir`` put on the nodes' ``PYTHONPATH`` (task modules);
- ``compose_files``: extra Compose files layered over the kit's ``compose.yaml`` (e.g. an extra mount);
- ``existing_cluster``: an SDK config file: the fixtures use that cluster and bring nothing up.

Each setting comes from (first wins) a pytest command-line option, a pytest ini option, an environment
variable, else the default; ``slurm-dev-cluster`` reads the environment variables only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from slurm_dev_cluster.naming import project_root_of, state_root

#: The cluster's definition as shipped in the kit's wheel (absent in an editable install).
PACKAGED_CLUSTER = Path(__file__).resolve().with_name("cluster")
#: The slurm-sdk checkout an editable kit is installed from (harness/src/slurm_dev_cluster/ -> the root).
CHECKOUT_ROOT = Path(__file__).resolve().parents[3]
#: Where every node sees the SDK's source root (the image's editable install points at its ``src``).
SDK_MOUNT = "/opt/slurm_sdk_dev"
#: Where every node sees the project under test.
PROJECT_MOUNT = "/opt/project"

ENV_KIT_DIR = "SLURM_SDK_KIT_DIR"
ENV_PROJECT_DIR = "SLURM_SDK_PROJECT_DIR"
ENV_PROJECT = "SLURM_SDK_PROJECT"
ENV_IMPORT_ROOTS = "SLURM_SDK_IMPORT_ROOTS"
ENV_COMPOSE_FILES = "SLURM_SDK_COMPOSE_FILES"
ENV_EXISTING_CLUSTER = "SLURM_SDK_EXISTING_CLUSTER"
#: A downstream project's default import roots, those of them that exist ("src" layout, or flat).
DEFAULT_IMPORT_ROOTS = ("src", ".")


class KitError(ValueError):
    """A kit setting is unusable; the message names the setting, the cause and the fix."""


@dataclass(frozen=True)
class KitSettings:
    kit_root: Path
    project_dir: Path
    project: str | None = None  # None: derived from project_dir (slurm_dev_cluster.stack.project_name_for)
    import_roots: tuple[str, ...] = ()
    compose_files: tuple[Path, ...] = ()
    existing_cluster: Path | None = None
    origin: dict[str, str] = field(default_factory=dict, compare=False)  # setting -> where it came from

    @property
    def project_mount(self) -> str:
        """Where the nodes see the project under test."""
        return PROJECT_MOUNT

    def node_path(self, host_path: Path) -> str | None:
        """``host_path`` (inside the project) as the nodes see it; None when it is outside the project."""
        try:
            relative = host_path.resolve().relative_to(self.project_dir)
        except ValueError:
            return None
        return self.project_mount if str(relative) == "." else f"{self.project_mount}/{relative}"

    def _roots(self) -> tuple[str, ...]:
        if self.import_roots:
            return self.import_roots
        return tuple(r for r in DEFAULT_IMPORT_ROOTS if (self.project_dir / r).is_dir())

    def node_import_roots(self) -> list[str]:
        """The import roots as the nodes see them."""
        paths = [self.node_path(self.project_dir / root) for root in self._roots()]
        return [p for p in paths if p]

    def host_import_roots(self) -> list[str]:
        """The import roots on this host (for the local backend, whose jobs run here)."""
        return [str((self.project_dir / root).resolve()) for root in self._roots()]


def resolve(
    *,
    project_dir: str | None = None,
    project: str | None = None,
    import_roots: list[str] | None = None,
    compose_files: list[str] | None = None,
    existing_cluster: str | None = None,
    base_dir: Path | None = None,
    environ: dict[str, str] | None = None,
) -> KitSettings:
    """Settings from explicit values (pytest options), else the environment, else the defaults.

    Relative paths given explicitly are taken from ``base_dir`` (pytest's rootdir), those from the
    environment from the current directory. Every path is checked here, so a typo fails before any
    Docker call, naming the setting and the fix.
    """
    environ = os.environ if environ is None else environ
    base = (base_dir or Path.cwd()).resolve()
    origin: dict[str, str] = {}

    def pick(name: str, given: object, env: str) -> tuple[object, Path]:
        if given not in (None, "", [], ()):
            origin[name] = "pytest option"
            return given, base
        if environ.get(env):
            origin[name] = f"${env}"
            return environ[env], Path.cwd()
        return None, base

    kit_value, kit_base = pick("kit_dir", None, ENV_KIT_DIR)
    if kit_value:
        kit_root = _existing_dir(kit_value, kit_base, "kit_dir", ENV_KIT_DIR)
        if not (kit_root / "compose.yaml").is_file():
            raise KitError(
                f"{ENV_KIT_DIR}={kit_root}: no compose.yaml there; fix: point it at a slurm-sdk checkout, "
                f"or unset it to use the cluster shipped with the kit"
            )
    else:
        kit_root = cluster_root()
    value, where = pick("project_dir", project_dir, ENV_PROJECT_DIR)
    if value:
        source = _existing_dir(value, where, "slurm_sdk_project_dir", ENV_PROJECT_DIR)
    else:
        source = base if base_dir else project_root_of(base)
    name, _ = pick("project", project, ENV_PROJECT)
    roots, _ = pick("import_roots", import_roots, ENV_IMPORT_ROOTS)
    files, files_base = pick("compose_files", compose_files, ENV_COMPOSE_FILES)
    existing, existing_base = pick("existing_cluster", existing_cluster, ENV_EXISTING_CLUSTER)
    settings = KitSettings(
        kit_root=kit_root,
        project_dir=source,
        project=str(name) if name else None,
        import_roots=tuple(_split(roots)),
        compose_files=tuple(
            _existing_file(f, files_base, "slurm_sdk_compose_files", ENV_COMPOSE_FILES) for f in _split(files)
        ),
        existing_cluster=(
            _existing_file(str(existing), existing_base, "--existing-cluster", ENV_EXISTING_CLUSTER)
            if existing
            else None
        ),
        origin=origin,
    )
    for root in settings.import_roots:
        if not (settings.project_dir / root).is_dir():
            raise KitError(
                f"import root {root!r} is not a directory of {settings.project_dir} "
                f"(slurm_sdk_import_roots / {ENV_IMPORT_ROOTS}); fix: name directories relative to the project"
            )
    return settings


def definition_dir() -> Path:
    """Where the cluster's definition is read from (never written): the checkout of an editable kit, else
    the package data of an installed one."""
    if (CHECKOUT_ROOT / "compose.yaml").is_file() and (CHECKOUT_ROOT / "src" / "slurm").is_dir():
        return CHECKOUT_ROOT
    return PACKAGED_CLUSTER


def cluster_root() -> Path:
    """The directory holding compose.yaml, images/ and pyproject.toml that build and run the cluster.

    An editable kit reads its checkout in place (where a developer edits images/). An installed kit copies
    its packaged definition once per content into a writable directory (builds write the nodes' wheelhouse
    and the host's site CAs beside the images), named by that content, so two kit versions never mix.
    """
    source = definition_dir()
    if source == CHECKOUT_ROOT:
        return source
    if not (PACKAGED_CLUSTER / "compose.yaml").is_file():
        raise KitError(
            f"the dev cluster's definition is missing from {PACKAGED_CLUSTER} (a broken install of "
            "slurm-dev-cluster); fix: `pip install --force-reinstall slurm-dev-cluster`"
        )
    return staged_cluster(PACKAGED_CLUSTER)


def staged_cluster(packaged: Path) -> Path:
    """``packaged`` copied to ``<state root>/cluster-<content hash>/`` (once; later calls only hash)."""
    files = sorted(p for p in packaged.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(packaged).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    target = state_root() / f"cluster-{digest.hexdigest()[:12]}"
    if (target / "compose.yaml").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".cluster-", dir=target.parent))
    try:
        shutil.copytree(packaged, scratch, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        gather_site_cas(scratch / "images" / "site-ca")
        try:
            scratch.rename(target)  # atomic: a concurrent session sees all of it or none
        except OSError:
            if not (target / "compose.yaml").is_file():
                raise  # not another session's copy that won the race
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def gather_site_cas(directory: Path) -> None:
    """The host's extra CA certificates into ``directory``, for the images to trust (bootstrap-host.sh
    decides which: its ``site-ca`` step, the one home of that rule; needs no root)."""
    script = Path(__file__).with_name("bootstrap-host.sh")
    environ = {**os.environ, "SLURM_SDK_SITE_CA_DIR": str(directory)}
    done = subprocess.run(["bash", str(script), "site-ca"], env=environ, capture_output=True, text=True)
    if done.returncode != 0:
        raise KitError(f"gathering the host's CA certificates for the images failed: {done.stderr.strip()}")


def _split(value: object) -> list[str]:
    """A list from an ini linelist, a CLI list, or an environment value separated by os.pathsep or ','."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.replace(",", os.pathsep).split(os.pathsep) if p.strip()]
    return [str(v).strip() for v in value if str(v).strip()]  # type: ignore[attr-defined]


def _existing_dir(value: object, base: Path, option: str, env: str) -> Path:
    path = (base / str(value)).resolve()
    if not path.is_dir():
        raise KitError(f"{option} / {env}: {path} is not a directory; fix: point it at the project's source")
    return path


def _existing_file(value: str, base: Path, option: str, env: str) -> Path:
    path = (base / value).expanduser().resolve()
    if not path.is_file():
        raise KitError(f"{option} / {env}: {path} does not exist; fix: give the path of an existing file")
    return path
