"""Presentation: the table (rich, 80 columns) and the plot (matplotlib, Agg)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from pipelines.bench.measures import spread
from pipelines.bench.report import BenchReport
from videoprep.atomic import atomic_path


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def render_table(report: BenchReport) -> Any:
    """Rich tables, one per file set and view, of every measure: clips/s median [min-max], frames/s, ratios.

    Reads at 80 columns: the file set, view and bytes per second head each table, so a
    row is only the measure's short label (see Measure.label) and its figures.
    """
    from rich.console import Group
    from rich.table import Table

    seq = int(report.config["seq_length"])
    groups: dict[tuple[str, str], list] = {}
    for m in report.measures:
        groups.setdefault((m.encoding, m.view), []).append(m)
    tables = []
    for (encoding, view), measures in groups.items():
        bps = report.encodings.get(encoding, {}).get("bytes_per_s")
        title = f"{encoding}, {view} view" + (f", {bps / 1000:.0f} KB/s of video" if bps else "")
        table = Table(title=title, title_justify="left", show_lines=False)
        for col in ("measure", "clips/s", "min-max", "frames/s", "x limit", "x tc"):
            table.add_column(col, justify="left" if col == "measure" else "right", no_wrap=True)
        for m in measures:
            s = spread(m.runs)
            table.add_row(
                m.label, _fmt(s["median"]) if m.status == "ok" else m.status,
                f"{_fmt(s['min'])}-{_fmt(s['max'])}" if m.runs else "",
                _fmt(s["median"] * seq if s["median"] is not None else None, 0), _fmt(report.ratio(m), 2),
                _fmt(report.peer_ratio(m), 2),
            )
        tables.append(table)
    return Group(*tables)


def write_plot(report: BenchReport, path: Path) -> None:
    """PNG of train-view clips/s by encoding (one panel each), backend and worker count, with min-max bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = "train" if "train" in report.config["views"] else report.config["views"][0]
    encodings = list(report.encodings)
    fig, axes = plt.subplots(len(encodings), 1, figsize=(9, 1.2 + 0.32 * 14 * len(encodings) / 2.2), squeeze=False)
    colours = {"reader": "tab:blue", "loader": "tab:green", "dali": "tab:olive", "peer": "tab:gray",
               "reference": "tab:red", "limit": "black"}
    for ax, enc in zip(axes[:, 0], encodings, strict=True):
        ms = [m for m in report.measures if m.encoding == enc and m.view == view and m.runs]
        labels = [m.label for m in ms]
        med = [statistics.median(m.runs) for m in ms]
        lo = [v - min(m.runs) for v, m in zip(med, ms, strict=True)]
        hi = [max(m.runs) - v for v, m in zip(med, ms, strict=True)]
        ax.barh(range(len(ms)), med, xerr=[lo, hi], color=[colours[m.kind] for m in ms], capsize=2)
        ax.set_yticks(range(len(ms)), labels, fontsize=7)
        ax.invert_yaxis()
        bps = report.encodings[enc].get("bytes_per_s") or 0
        ax.set_title(f"{enc} ({bps / 1000:.0f} KB per s of video), view {view}", fontsize=9)
        ax.set_xlabel("clips/s", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
