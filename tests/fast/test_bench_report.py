"""bench.report: a `--only` run puts its rows into the README table without dropping the others."""

from __future__ import annotations

from bench import report

OLD = """| Figure | Result: median (min–max) | Target | Met |
|---|---|---|---|
| Warm start (n=5, host load 1.2–1.3) | 4.69 s | ≤ 5 s | yes |
| Round trip (n=5, host load 1.2–1.4) | 0.24 s | ≤ 1.5× | yes |

Measured on: 2 cores; 2026-11-25 15:11 UTC. Ratios are per round.

![benchmark figures](bench/figures.png)"""

NEW = """| Figure | Result: median (min–max) | Target | Met |
|---|---|---|---|
| Round trip (n=3, host load 9.0–9.1) | 0.31 s | ≤ 1.5× | yes |
| slurmctld RPCs (n=1, host load 2.0–2.0) | 27 RPCs | ≤ 40 | yes |

Measured on: 2 cores; 2026-11-25 22:16 UTC. Ratios are per round.

![benchmark figures](bench/figures.png)"""


def test_partial_run_replaces_its_rows_keeps_the_rest_and_says_when_each_was_measured():
    merged = report.merge_tables(OLD, NEW).splitlines()
    rows = [line for line in merged if line.startswith("| ") and "(n=" in line]
    assert rows == [
        "| Warm start (n=5, host load 1.2–1.3) | 4.69 s | ≤ 5 s | yes |",
        "| Round trip (n=3, host load 9.0–9.1) | 0.31 s | ≤ 1.5× | yes |",
        "| slurmctld RPCs (n=1, host load 2.0–2.0) | 27 RPCs | ≤ 40 | yes |",
    ]
    assert merged[:2] == OLD.splitlines()[:2]
    assert "Measured on: 2 cores; 2026-11-25 15:11 UTC. Ratios are per round." in merged
    assert "Round trip, slurmctld RPCs: measured on: 2 cores; 2026-11-25 22:16 UTC." in merged
    assert merged[-1] == "![benchmark figures](bench/figures.png)" and merged.count(merged[-1]) == 1


def test_rpc_counts_are_shown_as_counts():
    assert report._num(27.0, "RPCs") == "27 RPCs"


def test_running_the_same_subset_again_replaces_its_note():
    once = report.merge_tables(OLD, NEW)
    twice = report.merge_tables(once, NEW.replace("22:16", "23:01"))
    assert "2026-11-25 22:16 UTC" not in twice and twice.count("Round trip, slurmctld RPCs: measured on") == 1
