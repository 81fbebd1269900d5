"""The model report: per training run, how each model did where it runs, as one static HTML page with
PNG figures (data/reports/models.html and data/reports/models/*.png, next to the audience report).

For the CLV model, the figures of Fader, Hardie and Lee (2005): expected vs actual repeat purchases in
the holdout by calibration-period frequency, and the cumulative repeat purchases over calibration and
holdout against the unconditional E[X(t)]; plus the reliability of the repurchase probability before and
after calibration. Then parameters with standard errors, the holdout totals of every compared model,
and the propensity and look-alike figures of the same run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import duckdb


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def clv_figures(validation: dict, out_dir: Path, prefix: str = "clv") -> list[Path]:
    """Write the CLV validation figures as PNG; return their paths."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    trained = {n: c for n, c in validation["candidates"].items() if c["status"] == "trained"}

    figure, axes = plt.subplots(figsize=(7, 4))
    first = next(iter(trained.values()))
    labels = [row["frequency"] for row in first["by_frequency"]]
    axes.plot(labels, [row["actual"] for row in first["by_frequency"]], "k-o", label="actual")
    for name, candidate in trained.items():
        axes.plot(labels, [row["expected"] for row in candidate["by_frequency"]], "--o", label=name)
    axes.set_xlabel("repeat purchases in the calibration period")
    axes.set_ylabel(f"mean repeat purchases in the {validation['horizon_days']}-day holdout")
    axes.set_title("Conditional expectations: holdout by calibration frequency")
    axes.legend()
    axes.grid(alpha=0.3)
    written.append(out_dir / f"{prefix}_by_frequency.png")
    figure.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 4))
    weeks = [w / 7 for w in validation["week_ends"]]
    axes.plot(weeks, validation["cumulative_actual"], "k-", label="actual")
    for name, candidate in trained.items():
        axes.plot(weeks, candidate["cumulative_expected"], "--", label=f"{name} E[X(t)]")
    axes.axvline(validation["calibration_end_day"] / 7, color="grey", linestyle=":", label="end of calibration")
    axes.set_xlabel("week")
    axes.set_ylabel("cumulative repeat purchases")
    axes.set_title("Tracking cumulative repeat purchases")
    axes.legend()
    axes.grid(alpha=0.3)
    written.append(out_dir / f"{prefix}_cumulative.png")
    figure.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(5, 5))
    for key, label in (("reliability_model", "model"), ("reliability_calibrated", "calibrated (cross-fitted)")):
        rows = validation[key]
        axes.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], "-o", label=label)
    axes.plot([0, 1], [0, 1], "k:", label="perfect")
    axes.set_xlabel(f"predicted P(purchase in {validation['horizon_days']} days)")
    axes.set_ylabel("observed share who purchased")
    axes.set_title(f"Reliability of {validation['chosen']}'s repurchase probability")
    axes.legend()
    axes.grid(alpha=0.3)
    written.append(out_dir / f"{prefix}_reliability.png")
    figure.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close(figure)
    return written


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fit_rows(fit: dict) -> list[list]:
    return [[k, f"{v:.4g}", f"{fit['standard_errors'][k]:.3g}"] for k, v in fit["params"].items()]


def clv_section(validation: dict, figures: list[Path], base: Path) -> str:
    parts = [
        f"<h2>CLV: {html.escape(validation['chosen'])} (chosen by holdout Brier score)</h2>",
        f"<p>Calibration up to {validation['calibration_end'][:10]}, holdout of {validation['horizon_days']} days to "
        f"{validation['as_of'][:10]}; {validation['customers']:,} customers.</p>",
    ]
    rows = []
    for name, c in validation["candidates"].items():
        if c["status"] != "trained":
            rows.append([name, c["status"], c["message"], "", "", "", ""])
            continue
        rows.append(
            [
                name,
                "converged",
                f"{c['fit']['log_likelihood']:.2f}",
                f"{c['holdout_actual']:,}",
                f"{c['holdout_expected_conditional']:,.0f}",
                f"{c['holdout_expected_unconditional']:,.0f}",
                f"{c['brier']:.4f}",
            ]
        )
    parts.append(
        _table(
            [
                "model",
                "fit",
                "log-likelihood",
                "holdout repeat purchases",
                "expected (conditional)",
                "expected (E[X(t)])",
                "Brier",
            ],
            rows,
        )
    )
    if "final_fit" in validation:
        parts.append("<h3>Refitted on the whole history (scores)</h3>")
        parts.append(_table(["parameter", "estimate", "standard error"], _fit_rows(validation["final_fit"])))
        parts.append("<h3>Gamma-Gamma spend per purchase</h3>")
        parts.append(_table(["parameter", "estimate", "standard error"], _fit_rows(validation["gamma_gamma"])))
    parts.append(
        f"<p>Brier score of the repurchase probability after isotonic calibration (cross-fitted): "
        f"{validation['brier_calibrated']:.4f}.</p>"
    )
    for figure in figures:
        parts.append(f'<p><img src="{html.escape(str(figure.relative_to(base)))}" alt="{figure.stem}"></p>')
    return "\n".join(parts)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Model report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:72em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:0.3em 0.6em;text-align:right}}th{{background:#f4f4f4}}</style></head>
<body><h1>Model report</h1><p>Training run {run_id}, as of {as_of}.</p>{body}</body></html>"""


def write_model_report(con: duckdb.DuckDBPyConnection, reports_dir: Path | None = None) -> Path | None:
    """Render the latest training run's reports to <reports_dir>/models.html (+ models/*.png)."""
    if reports_dir is None:
        from cdp.settings import current_paths

        reports_dir = current_paths().data_dir / "reports"
    latest = con.execute(
        "select run_id, as_of from predictions.model_reports where model_name <> 'lookalike_high_value' "
        "order by trained_at desc limit 1"
    ).fetchone()
    if latest is None:
        return None
    run_id, as_of = latest
    rows = con.execute(
        "select model_name, status, message, auc, lift_top_decile, train_rows, holdout_rows, parameters "
        "from predictions.model_reports where run_id = ? order by model_name",
        [run_id],
    ).fetchall()
    sections, summary = [], []
    for name, status, message, auc, lift, train_rows, holdout_rows, parameters in rows:
        summary.append(
            [
                name,
                status,
                message or "",
                f"{auc:.3f}" if auc is not None else "",
                f"{lift:.2f}" if lift is not None else "",
                train_rows if train_rows is not None else "",
                holdout_rows if holdout_rows is not None else "",
            ]
        )
        if name == "clv" and status == "trained" and parameters:
            validation = json.loads(parameters)
            figures = clv_figures(validation, reports_dir / "models")
            sections.append(clv_section(validation, figures, reports_dir))
        elif status == "trained" and parameters:
            details = json.loads(parameters)
            sections.append(
                f"<h2>{html.escape(name)}</h2><pre>{html.escape(json.dumps(details, indent=2, default=str))}</pre>"
            )
    body = _table(["model", "status", "message", "AUC", "top-decile lift", "train rows", "holdout rows"], summary)
    reports_dir.mkdir(parents=True, exist_ok=True)
    out = reports_dir / "models.html"
    out.write_text(PAGE.format(run_id=html.escape(str(run_id)), as_of=as_of, body=body + "\n".join(sections)))
    return out
