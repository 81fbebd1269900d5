"""The audience report: one self-contained static HTML file (inline SVG plots, no scripts, no network)
with audience sizes over time, the overlap heatmap and the RFM grid."""

from __future__ import annotations

import datetime as dt
import html
import io
from pathlib import Path

import polars as pl

from cdp.audiences.insight import audience_sizes, known_audiences, overlap_matrix, rfm_grid, size_history
from cdp.warehouse import open_warehouse


def _svg(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "cdp-audiences"})
    import matplotlib.pyplot as plt

    return plt


def sizes_plot(history: pl.DataFrame) -> str:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4))
    runs = history["evaluated_at"].unique().sort().to_list()
    position = {run: index for index, run in enumerate(runs)}
    colours = plt.get_cmap("tab20").colors
    for index, name in enumerate(sorted(history["segment_name"].unique().to_list())):
        rows = history.filter(pl.col("segment_name") == name).sort("evaluated_at")
        axes.plot(
            [position[run] for run in rows["evaluated_at"]],
            rows["members"].to_list(),
            marker="o",
            label=name,
            color=colours[index % len(colours)],
        )
    # Audiences of 5 and of 5,000 members on one chart: logarithmic above 10, linear below (0 stays visible).
    axes.set_yscale("symlog", linthresh=10)
    axes.set_xticks(range(len(runs)), [f"{run:%Y-%m-%d\n%H:%M:%S}" for run in runs], fontsize=7)
    axes.set_xlabel("run")
    axes.set_ylabel("members")
    axes.set_title("Audience sizes per run")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _svg(figure)


def overlap_plot(matrix: pl.DataFrame) -> str:
    plt = _pyplot()
    names = matrix["segment_name"].to_list()
    counts = [[matrix[column][row] for column in names] for row in range(len(names))]
    sizes = [counts[index][index] for index in range(len(names))]
    # Share of the row audience that is also in the column audience.
    shares = [[counts[r][c] / sizes[r] if sizes[r] else 0.0 for c in range(len(names))] for r in range(len(names))]
    figure, axes = plt.subplots(figsize=(1.0 + 0.75 * len(names), 0.8 + 0.6 * len(names)))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    for r in range(len(names)):
        for c in range(len(names)):
            axes.text(
                c,
                r,
                f"{counts[r][c]:,}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if shares[r][c] > 0.6 else "black",
            )
    axes.set_title("Overlap: members in both (colour: share of the row audience)")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    return _svg(figure)


def rfm_plot(grid: pl.DataFrame) -> str:
    plt = _pyplot()
    buyers = [[0] * 5 for _ in range(5)]
    revenue = [[0.0] * 5 for _ in range(5)]
    for row in grid.iter_rows(named=True):
        if 1 <= row["recency"] <= 5 and 1 <= row["frequency"] <= 5:
            buyers[row["frequency"] - 1][row["recency"] - 1] = row["buyers"]
            revenue[row["frequency"] - 1][row["recency"] - 1] = row["mean_revenue"] or 0.0
    figure, axes = plt.subplots(figsize=(6, 5))
    image = axes.imshow(revenue, cmap="viridis", origin="lower")
    axes.set_xticks(range(5), [str(score) for score in range(1, 6)])
    axes.set_yticks(range(5), [str(score) for score in range(1, 6)])
    axes.set_xlabel("recency score (5 = bought most recently)")
    axes.set_ylabel("frequency score (5 = buys most often)")
    for f in range(5):
        for r in range(5):
            axes.text(
                r,
                f,
                f"{buyers[f][r]:,}",
                ha="center",
                va="center",
                fontsize=8,
                color="white",
                gid=f"rfm-cell-{r + 1}-{f + 1}",
            )
    axes.set_title("RFM grid: buyers per cell (colour: mean lifetime revenue)")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="mean lifetime revenue")
    return _svg(figure)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1100px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.25rem 0.75rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 0; } figure svg { max-width: 100%; height: auto; }
.note { color: #666; font-size: 0.85rem; }
"""


def build_report(warehouse: Path, out: Path) -> Path:
    with open_warehouse(warehouse, read_only=True) as con:
        sizes = audience_sizes(con)
        history = size_history(con)
        names = known_audiences(con)
        matrix = overlap_matrix(con, names)
        grid = rfm_grid(con)
    rows = "\n".join(
        f"<tr><td>{html.escape(size.name)}</td><td>{size.members:,}</td>"
        f"<td>{'' if size.change is None else f'{size.change:+,}'}</td><td>{size.realized:,}</td>"
        f"<td>{size.exited:,}</td></tr>"
        for size in sizes
    )
    sections = [
        "<h2>Audiences after the last run</h2>",
        "<table><tr><th>audience</th><th>members</th><th>change</th><th>entered</th><th>exited</th></tr>"
        f"{rows}</table>",
        "<h2>Sizes over time</h2>",
        f'<figure id="sizes-over-time">{sizes_plot(history)}</figure>'
        if history.height
        else '<p class="note">No runs recorded yet.</p>',
        "<h2>Overlap</h2>",
        f'<figure id="overlap-heatmap">{overlap_plot(matrix)}</figure>'
        if names
        else '<p class="note">No audiences yet.</p>',
        "<h2>RFM grid</h2>",
        f'<figure id="rfm-grid">{rfm_plot(grid)}</figure>'
        if grid is not None and grid.height
        else '<p class="note">The traits carry no RFM scores yet (rfm_recency_score, rfm_frequency_score).</p>',
    ]
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Audience report</title>'
        f"<style>{STYLE}</style></head><body>\n<h1>Audience report</h1>\n"
        f'<p class="note">Warehouse {html.escape(str(warehouse))}, generated {generated}.</p>\n'
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    return out
