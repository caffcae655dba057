"""mkdocs hook: the Benchmarks page's table and figure, generated from bench/results/results.json at build.

The page holds a marker; this fills it with ``bench.report.table`` (the same text ``python -m bench``
prints), so the committed results file is the one source of the numbers. ``bench/figures.png`` is added
to the site beside the page.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- bench:table -->"
PAGE = "benchmarks.md"


def _report():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench import report

    return report


def on_files(files: Files, config) -> Files:
    figures = _report().FIGURES_PNG
    if figures.exists():
        files.append(File.generated(config, "figures.png", abs_src_path=str(figures)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} has lost its {MARKER} marker: the benchmark table has nowhere to go")
    report = _report()
    results = json.loads(report.RESULTS_JSON.read_text())
    return markdown.replace(MARKER, report.table(results))
