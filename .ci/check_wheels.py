"""Check the built wheels' file lists: each installs exactly its one top-level package (plus its
dist-info), nothing from tests/ or bench/, and the kit carries the cluster's definition."""

from __future__ import annotations

import sys
import zipfile

EXPECTED_TOP = {"slurm_sdk": "slurm", "slurm_dev_cluster": "slurm_dev_cluster"}
KIT_MUST_HAVE = (
    "slurm_dev_cluster/cluster/compose.yaml",
    "slurm_dev_cluster/cluster/pyproject.toml",
    "slurm_dev_cluster/cluster/images/Dockerfile",
    "slurm_dev_cluster/cluster/images/entrypoint.sh",
    "slurm_dev_cluster/bootstrap-host.sh",
)


def check(path: str) -> list[str]:
    names = zipfile.ZipFile(path).namelist()
    dist = path.rsplit("/", 1)[-1].split("-")[0]
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    problems = []
    if tops != {EXPECTED_TOP[dist]}:
        problems.append(f"{dist}: top-level entries {sorted(tops)}, want only {EXPECTED_TOP[dist]!r}")
    stray = [n for n in names if "/tests/" in n or "/bench/" in n or "__pycache__" in n or n.endswith(".crt")]
    problems += [f"{dist}: ships {n}" for n in stray]
    wheelhouse = [n for n in names if "/wheelhouse/" in n and not n.endswith("/.keep")]
    problems += [f"{dist}: ships a built wheelhouse file {n}" for n in wheelhouse]
    if dist == "slurm_dev_cluster":
        problems += [f"{dist}: missing {n}" for n in KIT_MUST_HAVE if n not in names]
    print(f"    {dist}: {len(names)} files, top level {sorted(tops)}")
    return problems


if __name__ == "__main__":
    found = [p for wheel in sys.argv[1:] for p in check(wheel)]
    for problem in found:
        print(f"    problem: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
