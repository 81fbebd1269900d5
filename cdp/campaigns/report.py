"""The campaign report: one self-contained static HTML file (inline SVG plots, no scripts, no network)
per warehouse, from the analytics models: per campaign its members, conversion rates, the lift of each
treated split over the holdout with its 95% interval, the sample-ratio check, the cumulative
conversions per group over the goal window and the lift with its interval as plots."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import duckdb
import polars as pl

from cdp.audiences.report import STYLE, _pyplot, _svg
from cdp.warehouse import open_warehouse

TABLES = ("campaigns", "campaign_lift", "campaign_conversion_curve")


def _has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    found = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'analytics' and table_name in ?",
        [list(TABLES)],
    ).fetchone()[0]
    return found == len(TABLES)


def read_analytics(con: duckdb.DuckDBPyConnection) -> dict[str, pl.DataFrame] | None:
    """The analytics tables the report shows, or None when the pipeline has not built them yet."""
    if not _has_tables(con):
        return None
    return {
        "campaigns": con.execute("select * from analytics.campaigns order by campaign_name").pl(),
        "lift": con.execute(
            "select * from analytics.campaign_lift order by campaign_name, is_holdout, split_name"
        ).pl(),
        "curve": con.execute(
            "select * from analytics.campaign_conversion_curve order by campaign_name, split_name, days_since_assignment"
        ).pl(),
    }


def _percent(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _points(value: float | None) -> str:
    return "" if value is None else f"{100 * value:+.1f} pts"


def _interval(low: float | None, high: float | None, scale: float = 100, unit: str = " pts") -> str:
    if low is None or high is None:
        return ""
    return f"[{scale * low:+.1f}, {scale * high:+.1f}]{unit}"


def verdict(row: dict) -> str:
    """One phrase for a treated split's lift."""
    if row["absolute_lift"] is None:
        return "no comparison yet (no member with a complete goal window in a group)"
    if row["has_sample_ratio_mismatch"]:
        return "sample ratio mismatch: the groups are not comparable, do not trust the lift"
    if row["is_significant"]:
        return "significant " + ("increase" if row["absolute_lift"] > 0 else "decrease")
    return "no significant difference (the interval covers 0)"


def campaign_summary_lines(warehouse: Path) -> list[str]:
    """A line per treated split of every campaign, for `cdp demo` and `cdp campaigns list`."""
    if not Path(warehouse).exists():
        return []
    with open_warehouse(warehouse, read_only=True) as con:
        tables = read_analytics(con)
    if tables is None:
        return []
    lines = []
    for row in tables["lift"].filter(~pl.col("is_holdout")).iter_rows(named=True):
        if row["absolute_lift"] is None:
            lines.append(f"campaign {row['campaign_name']:<22} {row['split_name']}: {verdict(row)}")
            continue
        lines.append(
            f"campaign {row['campaign_name']:<22} {row['split_name']} {row['members']:,} vs holdout "
            f"{row['holdout_members']:,}: conversion {_percent(row['conversion_rate'])} vs "
            f"{_percent(row['holdout_conversion_rate'])}, lift {_points(row['absolute_lift'])} "
            f"95% CI {_interval(row['absolute_lift_low'], row['absolute_lift_high'])}: {verdict(row)}"
        )
    return lines


def conversions_plot(curve: pl.DataFrame, campaign: str) -> str:
    """Cumulative conversion rate per split over the days since assignment."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.6))
    rows = curve.filter(pl.col("campaign_name") == campaign)
    for index, split in enumerate(rows["split_name"].unique().sort().to_list()):
        series = rows.filter(pl.col("split_name") == split).sort("days_since_assignment")
        holdout = bool(series["is_holdout"][0])
        axes.plot(
            series["days_since_assignment"].to_list(),
            [100 * (rate or 0.0) for rate in series["cumulative_conversion_rate"].to_list()],
            marker="o",
            markersize=3,
            linestyle="--" if holdout else "-",
            color="#777777" if holdout else plt.get_cmap("tab10").colors[index % 10],
            label=f"{split} ({'holdout' if holdout else 'treated'}, {series['members'][0]:,} members)",
        )
    axes.set_xlabel("days since exposure (holdout: since held out)")
    axes.set_ylabel("converted members (%)")
    axes.set_title(f"{campaign}: cumulative conversions per group")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    return _svg(figure)


def lift_plot(lift: pl.DataFrame, campaign: str) -> str:
    """Absolute lift of each treated split (percentage points) with its 95% interval, against 0."""
    plt = _pyplot()
    rows = lift.filter(
        (pl.col("campaign_name") == campaign) & ~pl.col("is_holdout") & pl.col("absolute_lift").is_not_null()
    )
    figure, axes = plt.subplots(figsize=(7, 0.9 + 0.6 * max(rows.height, 1)))
    for position, row in enumerate(rows.iter_rows(named=True)):
        low, point, high = (100 * row[key] for key in ("absolute_lift_low", "absolute_lift", "absolute_lift_high"))
        colour = "#1b7f3b" if row["is_significant"] else "#555555"
        axes.errorbar(
            [point],
            [position],
            xerr=[[point - low], [high - point]],
            fmt="o",
            color=colour,
            capsize=6,
            gid=f"lift-{campaign}-{row['split_name']}",
        )
        axes.annotate(
            f"{point:+.1f} pts [{low:+.1f}, {high:+.1f}]",
            (point, position),
            textcoords="offset points",
            xytext=(0, 9),
            ha="center",
            fontsize=8,
            color=colour,
        )
    axes.axvline(0, color="#b22222", linewidth=1)
    axes.set_yticks(range(rows.height), rows["split_name"].to_list())
    axes.set_ylim(-0.8, max(rows.height, 1) - 0.2)
    axes.set_xlabel("lift of the conversion rate over the holdout (percentage points, 95% interval)")
    axes.set_title(f"{campaign}: lift with its 95% confidence interval")
    axes.grid(axis="x", alpha=0.3)
    return _svg(figure)


def _campaign_section(campaign: dict, lift: pl.DataFrame, curve: pl.DataFrame) -> str:
    name = campaign["campaign_name"]
    rows = lift.filter(pl.col("campaign_name") == name)
    dates = f"{campaign['starts_on'] or 'first exposure'} to {campaign['ends_on'] or 'still running'}"
    cells = []
    for row in rows.iter_rows(named=True):
        split = html.escape(row["split_name"]) + (" (holdout)" if row["is_holdout"] else "")
        values = [
            split,
            f"{row['members']:,}",
            f"{row['members_pending']:,}",
            f"{row['conversions']:,}",
            _percent(row["conversion_rate"]),
            _number(row["revenue_per_member"], ".2f"),
            _points(row["absolute_lift"]),
            _interval(row["absolute_lift_low"], row["absolute_lift_high"]),
            _percent(row["relative_lift"], 0),
            _interval(row["relative_lift_low"], row["relative_lift_high"], unit="%"),
            _number(row["p_value"], ".4f"),
            _number(row["revenue_lift"], "+.2f"),
            _interval(row["revenue_lift_low"], row["revenue_lift_high"], scale=1, unit=""),
            "" if row["is_holdout"] else html.escape(verdict(row)),
        ]
        cells.append("<tr>" + "".join(f"<td>{value}</td>" for value in values) + "</tr>")
    srm = rows.row(0, named=True) if rows.height else None
    srm_note = ""
    if srm is not None and srm["sample_ratio_p_value"] is not None:
        shares = ", ".join(
            f"{r['split_name']} {_percent(r['observed_share'])} (expected {_percent(r['expected_share'], 0)})"
            for r in rows.iter_rows(named=True)
        )
        srm_note = f"Sample ratio: {shares}; chi-square p = {srm['sample_ratio_p_value']:.4f}: " + (
            "<strong>mismatch</strong>, the groups are not comparable."
            if srm["has_sample_ratio_mismatch"]
            else "as expected."
        )
    has_lift = rows.filter(~pl.col("is_holdout") & pl.col("absolute_lift").is_not_null()).height > 0
    has_curve = curve.filter((pl.col("campaign_name") == name) & (pl.col("members") > 0)).height > 0
    return "\n".join(
        [
            f'<section id="campaign-{html.escape(name)}">',
            f"<h2>{html.escape(name)}</h2>",
            f"<p>{html.escape(campaign['description'] or '')}</p>",
            f'<p class="note">Audience {html.escape(campaign["audience_name"])}, sent by '
            f"{html.escape(campaign['sync_names'])}; {html.escape(dates)}; {campaign['campaign_status']}. Goal: "
            f"{html.escape(campaign['goal_description'] or campaign['goal_aggregate'])} "
            f"({campaign['goal_window_days']} days). Members: {campaign['members_counted']:,} counted, "
            f"{campaign['members_pending']:,} pending, {campaign['crossover_members']:,} in both groups (left out).</p>",
            "<table><tr><th>split</th><th>members</th><th>pending</th><th>conversions</th><th>rate</th>"
            "<th>revenue / member</th><th>lift</th><th>95% CI</th><th>relative lift</th><th>95% CI</th>"
            "<th>p-value</th><th>revenue lift / member</th><th>95% CI</th><th>verdict</th></tr>"
            + "".join(cells)
            + "</table>",
            f'<p class="note">{srm_note}</p>',
            f'<figure id="conversions-{html.escape(name)}">{conversions_plot(curve, name)}</figure>'
            if has_curve
            else '<p class="note">No member has a complete goal window yet.</p>',
            f'<figure id="lift-{html.escape(name)}">{lift_plot(rows, name)}</figure>' if has_lift else "",
            "</section>",
        ]
    )


def build_report(warehouse: Path, out: Path) -> Path:
    with open_warehouse(warehouse, read_only=True) as con:
        tables = read_analytics(con)
    if tables is None or not tables["campaigns"].height:
        body = (
            '<p class="note">No campaign results yet: declare campaigns in dbt_project/campaigns/*.yml and run the '
            "pipeline (`cdp run`).</p>"
        )
    else:
        body = "\n".join(
            _campaign_section(campaign, tables["lift"], tables["curve"])
            for campaign in tables["campaigns"].iter_rows(named=True)
        )
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Campaign report</title>'
        f"<style>{STYLE}</style></head><body>\n<h1>Campaign report</h1>\n"
        f'<p class="note">Warehouse {html.escape(str(warehouse))}, generated {generated}. Treated members are '
        "compared with the holdout of their audience over each goal window; lift intervals are 95% confidence "
        "intervals (README, Campaigns).</p>\n" + body + "\n</body></html>\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    return out
