"""The test kit's settings: which project a dev cluster serves, and from where.

By default the kit serves this repository (its own tests): the compose file and images are this
checkout's, the stack is named after it, and test modules import from its mount. Another project that
depends on ``slurm-sdk[testing]`` points the same harness at its own source instead:

- ``project_dir``: its source tree, bind-mounted read-only at ``/opt/project`` on every node;
- ``project``: the Compose project name (default: derived from ``project_dir``'s path), hence its own
  stack and state directory;
- ``import_roots``: directories of ``project_dir`` put on the nodes' ``PYTHONPATH`` (task modules);
- ``compose_files``: extra Compose files layered over the kit's ``compose.yaml`` (e.g. an extra mount);
- ``existing_cluster``: an SDK config file: the fixtures use that cluster and bring nothing up.

Each setting comes from (first wins) a pytest command-line option, a pytest ini option, an environment
variable, else the default; ``python -m harness`` reads the environment variables only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: The checkout whose compose.yaml and images/ build the cluster (this repository).
KIT_ROOT = Path(__file__).resolve().parents[1]
#: Where every node sees the SDK checkout (the image's editable install points here).
SDK_MOUNT = "/opt/slurm_sdk_dev"
#: Where every node sees the project under test, when it is not this repository.
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
    kit_root: Path = KIT_ROOT
    project_dir: Path = KIT_ROOT
    project: str | None = None  # None: derived from project_dir (harness.stack.project_name_for)
    import_roots: tuple[str, ...] = ()
    compose_files: tuple[Path, ...] = ()
    existing_cluster: Path | None = None
    origin: dict[str, str] = field(default_factory=dict, compare=False)  # setting -> where it came from

    @property
    def is_downstream(self) -> bool:
        """True when the cluster serves another project than the kit's own checkout."""
        return self.project_dir != self.kit_root

    @property
    def project_mount(self) -> str:
        """Where the nodes see the project under test."""
        return PROJECT_MOUNT if self.is_downstream else SDK_MOUNT

    def node_path(self, host_path: Path) -> str | None:
        """``host_path`` (inside the project) as the nodes see it; None when it is outside the project."""
        try:
            relative = host_path.resolve().relative_to(self.project_dir)
        except ValueError:
            return None
        return self.project_mount if str(relative) == "." else f"{self.project_mount}/{relative}"

    def _roots(self) -> tuple[str, ...]:
        if self.import_roots or not self.is_downstream:
            return self.import_roots  # this repository's own default: none (tests map their own roots)
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
    kit_root = _existing_dir(kit_value, kit_base, "kit_dir", ENV_KIT_DIR) if kit_value else KIT_ROOT
    if not (kit_root / "compose.yaml").is_file():
        raise KitError(
            f"the dev cluster's compose.yaml is not in {kit_root}: the kit needs a slurm-sdk checkout "
            f"(compose.yaml, images/). fix: install it editable (`pip install -e '/path/to/slurm-sdk[testing]'`) "
            f"or set {ENV_KIT_DIR}=/path/to/slurm-sdk"
        )
    value, where = pick("project_dir", project_dir, ENV_PROJECT_DIR)
    source = _existing_dir(value, where, "slurm_sdk_project_dir", ENV_PROJECT_DIR) if value else kit_root
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
