"""Results out: JSON (merged with earlier runs, per figure), a PNG, and the table of the docs' Benchmarks page
(docs/benchmarks.md; the docs build fills it in from results.json through docs/hooks/bench_table.py)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from bench.env import REPO_ROOT, RESULTS_DIR
from bench.machine import one_line

RESULTS_JSON = RESULTS_DIR / "results.json"
QUICK_JSON = RESULTS_DIR / "results-quick.json"
FIGURES_PNG = REPO_ROOT / "bench" / "figures.png"


def merge(
    path: Path,
    machine: dict[str, Any],
    figures: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    order: list[str],
) -> dict:
    """Figures of this run replace the same figures of earlier runs; others (e.g. a --cold run) stay.
    Figures are kept in ``order`` (the run order), whenever they were measured."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = {}
    stamped = {name: fig | {"machine": machine, "settings": settings} for name, fig in figures.items()}
    combined = previous.get("figures", {}) | stamped
    rank = {name: index for index, name in enumerate(order)}
    merged = {
        "machine": machine,
        "figures": dict(sorted(combined.items(), key=lambda item: rank.get(item[0], len(rank)))),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2) + "\n")
    return merged


# ---- text ------------------------------------------------------------------------------------------


def _num(value: float, unit: str) -> str:
    if unit == "×":
        return f"{value:.2f}×"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "RPCs":
        return f"{value:.0f} RPCs"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _summary(stats: dict[str, Any], unit: str) -> str:
    text = _num(stats["median"], unit)
    if stats["n"] > 1:
        text += f" ({_num(stats['min'], unit).split()[0].rstrip('×')}–{_num(stats['max'], unit)})"
    return text


def result_cell(fig: dict[str, Any]) -> str:
    parts = [f"{label}: {_summary(stats, fig['unit'])}" for label, stats in fig["series"].items()]
    parts += [f"**{label}: {_summary(stats, '×')}**" for label, stats in fig["ratios"].items()]
    return "<br>".join(parts)


def caveats_cell(fig: dict[str, Any]) -> str:
    """What the figure compares and what to keep in mind, beside the numbers (its notes)."""
    return "<br>".join(note.replace("|", "\\|") for note in fig.get("notes", [])) or "—"


def table(results: dict[str, Any]) -> str:
    """The Benchmarks page's table: a pure function of ``results.json`` (what ``--table`` prints and the docs
    build inserts)."""
    rows = [
        "| Figure | Result: median (min–max) | Target | Met | What it compares; caveats |",
        "|---|---|---|---|---|",
    ]
    for fig in results["figures"].values():
        target = fig["target"]["text"] if fig["target"] else "—"
        met = {True: "yes", False: "**no**", None: "—"}[fig["met"]]
        n = max((s["n"] for s in fig["series"].values()), default=0)
        load = fig["details"].get("host load (1-min average) before, after")
        context = f"n={n}" + (f", host load {min(load):.1f}–{max(load):.1f}" if load else "")
        context += f", {fig['machine']['date']}"
        rows.append(
            f"| {fig['title']} ({context}) | {result_cell(fig)} | {target} | {met} | {caveats_cell(fig)} |"
        )
    machines = sorted({one_line(fig["machine"]).rsplit(", ", 1)[0] for fig in results["figures"].values()})
    lines = [
        *rows,
        "",
        f"Machine: {'; '.join(machines)}. Each row says when it was measured and how busy the host was "
        "(1-minute load average before and after). Ratios are per round of interleaved runs (A, B, A, "
        "B, ...). This table is generated from `bench/results/results.json` (committed) when the docs are "
        "built: `python -m bench` (or `--only a,b`) measures and merges into that file; `python -m bench "
        "--table` prints the table from the file without measuring.",
        "",
        "![benchmark figures](figures.png)",
    ]
    return "\n".join(lines)


# ---- picture ---------------------------------------------------------------------------------------


def plot(results: dict[str, Any], path: Path = FIGURES_PNG) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = list(results["figures"].values())
    columns = 2
    rows = (len(figures) + columns - 1) // columns
    canvas, axes = plt.subplots(rows, columns, figsize=(13, 2.9 * rows), squeeze=False)
    for ax, fig in zip(axes.flat, figures, strict=False):
        _panel(ax, fig)
    for ax in list(axes.flat)[len(figures) :]:
        ax.axis("off")
    canvas.suptitle(f"slurm-sdk benchmarks — {one_line(results['machine'])}", fontsize=9)
    canvas.tight_layout(rect=(0, 0, 1, 0.985))  # room for the suptitle
    canvas.savefig(path, dpi=110)
    plt.close(canvas)


def _panel(ax: Any, fig: dict[str, Any]) -> None:
    labels = list(fig["series"])
    stats = [fig["series"][label] for label in labels]
    medians = [s["median"] for s in stats]
    errors = [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]
    positions = range(len(labels))
    ax.barh(positions, medians, xerr=errors, color="#4c72b0", capsize=3)
    ax.set_yticks(list(positions), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(fig["unit"], fontsize=8)
    target = fig["target"]
    if target and target["key"] in fig["series"]:
        ax.axvline(target["value"], color="#c44e52", linestyle="--", linewidth=1)
    ratios = "; ".join(f"{k} {v['median']:.2f}×" for k, v in fig["ratios"].items())
    verdict = "" if fig["met"] is None else (" — target met" if fig["met"] else " — target MISSED")
    title = fig["title"] + (f"\n{ratios}" if ratios else "")
    if target:
        title += f" (target {target['text']}{verdict})"
    ax.set_title("\n".join(textwrap.fill(line, 75) for line in title.splitlines()), fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
