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


def test_a_pytest_session_that_starts_no_stack_never_imports_the_docker_and_ssh_clients(tmp_path):
    """The kit's plugin loads in every pytest process of an environment that has the kit (the fast tier's
    controller, its workers, the sessions its tests start): the Docker and SSH client libraries (~0.4 s of
    imports) wait for the first test that needs the cluster."""
    import subprocess
    import sys

    (tmp_path / "test_plain.py").write_text(
        "import sys\n\n"
        "def test_plain():\n"
        "    heavy = sorted({name.partition('.')[0] for name in sys.modules} & {'python_on_whales', 'paramiko'})\n"
        "    assert heavy == [], heavy\n"
    )
    run = subprocess.run(
        # No hypothesis plugin: it imports neither client, and importing hypothesis at the session's end
        # costs ~0.7 CPU-s, most of this test.
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "-q",
            "test_plain.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
