"""Running the Python blocks of the docs (docs/*.md, README.md) with Sybil: shared by the fast tier
(tests/fast/test_docs.py) and the integration tier (tests/integration/test_docs_on_cluster.py).

A page's ```python blocks run in order in one namespace, so a later block may use what an earlier one
defined. Markers, as HTML comments the rendered page does not show:

- ``<!-- invisible-code-block: python ... -->``: setup the reader does not need to see (runs first).
- ``<!-- skip: next "reason" -->``: an illustrative block that is never run (it needs a real site); the
  reason is required and the number of such blocks is kept small.
- ``<!-- skip: next if(not dev_cluster, reason="...") -->``: runs on the dev cluster only (integration tier;
  the fast tier skips it). There ``Cluster.from_env()`` finds the dev cluster through $SLURM_SDK_CONFIG.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from unittest import SkipTest

from sybil import Sybil
from sybil.evaluators.skip import Skipper
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEV_CLUSTER_MARK = "if(not dev_cluster"

SYBIL = Sybil(parsers=[PythonCodeBlockParser(), SkipParser()])


@dataclass
class Outcome:
    ran: int = 0
    skipped: list[str] = field(default_factory=list)  # reasons
    illustrative: list[str] = field(default_factory=list)  # unconditional skips: "line N: reason"


def skip_directives(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, action, reason) of every skip directive on the page."""
    document = SYBIL.parse(path)
    return [
        (example.line, *example.parsed)
        for example in document.examples()
        if isinstance(example.region.evaluator, Skipper)
    ]


def run_page(path: Path, *, dev_cluster: bool) -> Outcome:
    document = SYBIL.parse(path)
    document.namespace.update({"__name__": "docs_example", "dev_cluster": dev_cluster})
    outcome = Outcome()
    for example in document.examples():
        if isinstance(example.region.evaluator, Skipper):
            _action, reason = example.parsed
            if reason and not reason.lstrip().startswith("if"):
                outcome.illustrative.append(f"{path.name}:{example.line}: {reason.strip()}")
            example.evaluate()
            continue
        try:
            example.evaluate()
        except SkipTest as skipped:
            outcome.skipped.append(str(skipped))
        else:
            outcome.ran += 1
    return outcome
