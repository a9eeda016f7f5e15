"""The monitor's HTML report: tables of what was measured and inline-SVG plots."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shared.monitor import svg


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "<p><em>none</em></p>"

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape(json.dumps(v) if isinstance(v, (dict, list)) else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(plot_id: str, caption: str, chart: str) -> str:
    return f'<figure id="{html.escape(plot_id)}">{chart}<figcaption>{html.escape(caption)}</figcaption></figure>'


def render(report: Mapping[str, Any], distributions: Mapping[str, tuple[np.ndarray, np.ndarray]],
           timelines: Mapping[str, tuple[list[float], list[float]]],
           history: Mapping[str, tuple[list[str], list[float | None], list[float | None]]]) -> str:
    """The report page.

    ``distributions``: feature -> (reference sample, recent values);
    ``timelines``: target -> (predicted, actual) in time order;
    ``history``: target -> (versions, holdout MAPE, live MAPE).
    """
    figures = [_figure(f"plot-distribution-{name}", f"{name}: training reference vs recent inputs",
                       svg.histogram_chart(f"{name} distribution", ref, recent))
               for name, (ref, recent) in distributions.items()]
    figures += [_figure(f"plot-accuracy-{target}", f"{target}: predicted vs actual over the window",
                        svg.line_chart(f"{target} predicted vs actual", [("predicted", p), ("actual", a)]))
                for target, (p, a) in timelines.items()]
    figures += [_figure(f"plot-history-{target}", f"{target}: MAPE per model version (holdout and live)",
                        svg.bar_chart(f"{target} MAPE per version", versions,
                                      [("holdout MAPE %", holdout), ("live MAPE %", live)]))
                for target, (versions, holdout, live) in history.items()]
    alerts = report.get("alerts", {})
    return "".join([
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Monitor report {html.escape(report['run_id'])}</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:"
        "collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;font-size:.9em}"
        "figure{display:inline-block;margin:.5em}</style></head><body>",
        f"<h1>Monitor report {html.escape(report['run_id'])}</h1>",
        f"<p>cause: {html.escape(str(report['cause']))}; window: {html.escape(json.dumps(report['window']))}</p>",
        "<h2>Alert changes</h2>", _table(alerts.get("events", []), ["event", "alert_id", "severity", "value",
                                                                    "threshold", "detail"]),
        "<h2>Conditions</h2>", _table(report.get("conditions", []), ["key", "firing", "severity", "value",
                                                                     "threshold", "detail"]),
        "<h2>Accuracy against actuals</h2>", _table(report.get("accuracy", []), [
            "target", "model_version", "rows", "mape", "rmse", "holdout_mape", "production"]),
        "<h2>Operations</h2>", _table([report.get("operations", {})], [
            "requests", "errors", "error_rate", "client_errors", "latency_p50_ms", "latency_p95_ms",
            "latency_p99_ms", "predictions", "cost_daily_usd"]),
        "<h2>Data drift</h2>", _table(report.get("drift", []), ["source", "feature", "psi", "ks_statistic",
                                                                "ks_pvalue", "recent_n", "level"]),
        "<h2>Plots</h2>", "".join(figures), "</body></html>"])
