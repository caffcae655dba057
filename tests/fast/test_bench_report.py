"""bench.report: the README table is a function of results.json, and `--table` writes exactly what it prints."""

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


def test_the_table_command_writes_exactly_what_it_prints(tmp_path, monkeypatch, capsys):
    results, readme = tmp_path / "results.json", tmp_path / "README.md"
    results.write_text(json.dumps(RESULTS))
    readme.write_text(f"# x\n\n{report.START}\nold table\n{report.END}\n\nafter\n")
    monkeypatch.setattr(report, "RESULTS_JSON", results)
    monkeypatch.setattr(report, "README", readme)
    monkeypatch.setattr(report, "plot", lambda results: None)
    assert run.main(["--table"]) == 0
    printed = capsys.readouterr().out
    assert report.readme_table() == report.table(RESULTS) and report.table(RESULTS) in printed
    assert readme.read_text().endswith(f"{report.END}\n\nafter\n")


def test_rpc_counts_are_shown_as_counts():
    assert report._num(27.0, "RPCs") == "27 RPCs"
