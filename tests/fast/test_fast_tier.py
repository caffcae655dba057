"""The fast tier stands alone: no module of it, of the slow tier (tests/slow, which needs no Docker either), nor
a helper in tests/ they share with the integration tier imports from tests/integration, so the tiers can
change, move or run apart without breaking each other."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported_modules(source: str, package: tuple[str, ...]) -> set[str]:
    """Absolute names of every module ``source`` imports, and of every name it imports from one (a name
    may be a submodule), relative imports resolved against ``package`` (the module's own package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(filter(None, [base, node.module or ""]))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_no_fast_module_imports_the_integration_tier():
    modules = sorted([*TESTS.glob("*.py"), *(TESTS / "fast").rglob("*.py"), *(TESTS / "slow").rglob("*.py")])
    assert len(modules) > 20  # the scan found the tier
    offenders = {
        str(path.relative_to(TESTS.parent)): sorted(
            name
            for name in imported_modules(path.read_text(), path.relative_to(TESTS.parent).parts[:-1])
            if name.split(".")[:2] == ["tests", "integration"]
        )
        for path in modules
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_relative_and_absolute_imports_of_the_integration_tier_are_seen():
    source = "from ..integration import jobs\nfrom ..integration.rank_jobs import item\nimport tests.integration.x\n"
    assert imported_modules(source, ("tests", "fast")) >= {
        "tests.integration.jobs",
        "tests.integration.rank_jobs",
        "tests.integration.x",
    }
    assert imported_modules("from .integration import jobs\n", ("tests",)) >= {"tests.integration.jobs"}
