"""bench.report: the Benchmarks table is a function of results.json; `--table` prints it, the docs build shows it."""

from __future__ import annotations

import json

from bench import report, run

MACHINE = {
    "cores": 2,
    "ram_gib": 23.5,
    "os": "Debian",
    "docker": "20.10",
    "compose": "2.26",
    "python": "3.11",
    "date": "2026-11-26 01:50 UTC",
}


def figure(title: str, median: float, notes: list[str], date: str) -> dict:
    stats = {"median": median, "min": median, "max": median, "n": 1, "samples": [median]}
    return {
        "title": title,
        "unit": "s",
        "series": {"total": stats},
        "ratios": {},
        "target": None,
        "met": None,
        "notes": notes,
        "details": {"host load (1-min average) before, after": [1.0, 2.0]},
        "machine": {**MACHINE, "date": date},
        "settings": {},
    }


RESULTS = {
    "machine": MACHINE,
    "figures": {
        "a": figure("Round trip", 0.31, ["raw polls squeue | on the SDK's cadence"], "2026-11-26 01:50 UTC"),
        "b": figure("Cold start", 55.9, [], "2026-11-25 15:11 UTC"),
    },
}


def test_each_row_carries_its_date_load_and_caveats():
    rows = [line for line in report.table(RESULTS).splitlines() if line.startswith("| ") and "(n=" in line]
    assert rows[0].startswith("| Round trip (n=1, host load 1.0–2.0, 2026-11-26 01:50 UTC) | total: 0.31 s |")
    assert rows[0].endswith("| raw polls squeue \\| on the SDK's cadence |")  # a | in a note is escaped
    assert rows[1].endswith("| — |") and "2026-11-25 15:11 UTC" in rows[1]


def test_the_table_command_prints_the_table_the_docs_show(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    monkeypatch.setattr(report, "RESULTS_JSON", results)
    monkeypatch.setattr(report, "plot", lambda results: None)
    assert run.main(["--table"]) == 0
    assert report.table(RESULTS) in capsys.readouterr().out


def test_the_docs_benchmarks_page_is_generated_from_results_json():
    """The page holds only the marker; the mkdocs hook puts report.table(results.json) there."""
    import sys

    sys.path.insert(0, str(report.REPO_ROOT / "docs" / "hooks"))
    try:
        import bench_table
    finally:
        sys.path.pop(0)

    class Page:
        class file:
            src_uri = "benchmarks.md"

    page = (report.REPO_ROOT / "docs" / "benchmarks.md").read_text()
    assert "| Figure |" not in page  # no stale copy of the table in the source
    rendered = bench_table.on_page_markdown(page, Page, None, None)
    assert report.table(json.loads(report.RESULTS_JSON.read_text())) in rendered


def test_rpc_counts_are_shown_as_counts():
    assert report._num(27.0, "RPCs") == "27 RPCs"
