"""Build hook: ship the dev cluster's definition (compose.yaml, images/, the SDK's pyproject.toml) inside
the kit as ``slurm_dev_cluster/cluster/``.

Those files have one home, the repository root, where ``docker compose up`` by hand finds them. Built from
the checkout, this hook adds them to the sdist and the wheel; built from the sdist (as ``python -m build``
does), they are already in the package directory and nothing needs adding.
"""

from __future__ import annotations

from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: Files and directories of the repository root that define the cluster (paths relative to the root).
CLUSTER_FILES = ("compose.yaml", ".dockerignore", "pyproject.toml", "images")
#: Never shipped: host-specific or generated (site CAs are gathered on the user's host, wheels per build).
NOT_SHIPPED = ("images/site-ca/", "images/wheelhouse/")
KEPT = ".keep"  # the empty directories' placeholders are shipped: the Dockerfile COPYs those directories


class ClusterFilesHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if version == "editable":
            return  # an editable kit reads the checkout's files in place (slurm_dev_cluster.kit)
        repo = Path(self.root).resolve().parent
        if not (repo / "compose.yaml").is_file() or not (repo / "src" / "slurm").is_dir():
            return  # built from an sdist: the files are in src/slurm_dev_cluster/cluster/ already
        prefix = (
            "src/slurm_dev_cluster/cluster" if self.target_name == "sdist" else "slurm_dev_cluster/cluster"
        )
        for path in cluster_files(repo):
            build_data["force_include"][str(path)] = f"{prefix}/{path.relative_to(repo).as_posix()}"


def cluster_files(repo: Path) -> list[Path]:
    files: list[Path] = []
    for name in CLUSTER_FILES:
        path = repo / name
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for candidate in candidates:
            relative = candidate.relative_to(repo).as_posix()
            if "__pycache__" in relative:
                continue
            if relative.startswith(NOT_SHIPPED) and candidate.name != KEPT:
                continue
            files.append(candidate)
    return files
