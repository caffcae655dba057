"""Fail, naming each one, when a module of the SDK (src/slurm) or the test kit
(harness/src/slurm_dev_cluster) is over MAX_LINES lines: a module should be small enough to read in one
sitting. Run by .ci/lint; `python .ci/module_size.py [root]` alone."""

from __future__ import annotations

import sys
from pathlib import Path

MAX_LINES = 400
PACKAGES = ("src/slurm", "harness/src/slurm_dev_cluster")


def oversized(root: Path) -> list[tuple[Path, int]]:
    """Every module of PACKAGES under ``root`` over MAX_LINES lines, with its line count, largest first."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                found.append((path.relative_to(root), lines))
    return sorted(found, key=lambda item: -item[1])


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    found = oversized(root)
    for path, lines in found:
        print(
            f"{path}: {lines} lines, over the {MAX_LINES}-line limit. Fix: split it by role (one module per "
            "kind of work, e.g. reading a command's output apart from running it), each part under the "
            "limit, and name the new modules in docs/architecture.md",
            file=sys.stderr,
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
