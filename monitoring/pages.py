"""HTML of the drift report folder: the index of every check, newest first, and the summary section
written at the top of each Evidently report. Pure: history entries in, HTML text out.

A history entry is the JSON :func:`monitoring.check.run_check` records per check (see
docs/monitoring.md): time, report file, model judged, reference and current spans, drift figures,
live-quality figures per window, and the retraining decision with its reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
STYLE = """
body { font-family: Liberation Sans, Arial, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 20px 0 8px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.drifted { color: #b00020; font-weight: bold; } .ok { color: #1b7f3b; }
.muted { color: #777; } .charts { display: flex; flex-wrap: wrap; gap: 16px; }
section.cryptovol { border-bottom: 2px solid #ddd; padding-bottom: 12px; margin-bottom: 12px; }
"""


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _epoch(iso: str | None) -> float | None:
    return None if not iso else datetime.fromisoformat(iso).timestamp()


def line_chart(
    title: str,
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    width: int = 560,
    height: int = 220,
    y_min: float = 0.0,
    y_max: float | None = None,
    limit: float | None = None,
) -> str:
    """An SVG line chart of (epoch seconds, value) series, with an optional dashed limit line."""
    points = [p for values in series.values() for p in values if math.isfinite(p[1])]
    left, right, top, bottom = 48, 12, 28, 36
    svg = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    if not points:
        svg.append(f'<text x="{left}" y="{height / 2}" fill="#777">no data yet</text></svg>')
        return "".join(svg)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    top_value = max([p[1] for p in points] + ([limit] if limit is not None else []))
    y1 = y_max if y_max is not None else (top_value * 1.1 or 1.0)
    span_x = (x1 - x0) or 1.0
    span_y = (y1 - y_min) or 1.0

    def sx(x: float) -> float:
        return left + (x - x0) / span_x * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y_min) / span_y * (height - top - bottom)

    svg.append(
        f'<line x1="{left}" y1="{sy(y_min)}" x2="{width - right}" y2="{sy(y_min)}" '
        'stroke="#999"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{sy(y_min)}" stroke="#999"/>'
    )
    for tick in (y_min, (y_min + y1) / 2, y1):
        svg.append(
            f'<text x="{left - 6}" y="{sy(tick) + 4}" font-size="11" text-anchor="end">'
            f"{tick:.2f}</text>"
        )
    for x, anchor in ((x0, "start"), (x1, "end")):
        label = datetime.fromtimestamp(x, UTC).strftime("%m-%d %H:%M")
        svg.append(
            f'<text x="{sx(x)}" y="{height - 14}" font-size="11" text-anchor="{anchor}">'
            f"{label}</text>"
        )
    if limit is not None:
        svg.append(
            f'<line x1="{left}" y1="{sy(limit)}" x2="{width - right}" y2="{sy(limit)}" '
            'stroke="#b00020" stroke-dasharray="5,4"/>'
            f'<text x="{width - right}" y="{sy(limit) - 4}" font-size="11" fill="#b00020" '
            f'text-anchor="end">limit {limit:g}</text>'
        )
    for i, (name, values) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        finite = sorted(p for p in values if math.isfinite(p[1]))
        if not finite:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in finite)
        svg.append(
            f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" '
            f'points="{path}"/>'
        )
        for x, y in finite:
            svg.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}">'
                f"<title>{escape(name)}: {y:.3f}</title></circle>"
            )
        svg.append(
            f'<text x="{left + 8 + 150 * i}" y="{height - 2}" font-size="11" fill="{color}">'
            f"&#9632; {escape(name)}</text>"
        )
    svg.append("</svg>")
    return "".join(svg)


def _span(part: dict | None) -> str:
    if not part:
        return "n/a"
    return f"{fmt(part.get('start'))} to {fmt(part.get('end'))} ({fmt(part.get('rows'))} rows)"


def _live_rows(live: dict | None) -> str:
    if not live:
        return '<p class="muted">No live predictions with known labels in this check.</p>'
    head = (
        "<tr><th>window</th><th>rows</th><th>spikes</th><th>PR-AUC model</th>"
        "<th>persistence</th><th>z-score</th><th>precision</th><th>recall</th>"
        "<th>spike rate</th><th>mean score</th><th>flagged rate</th><th>ECE</th></tr>"
    )
    rows = []
    for window, w in live.items():
        below = (
            w.get("pr_auc") is not None
            and w.get("persistence_pr_auc") is not None
            and w["pr_auc"] < w["persistence_pr_auc"]
        )
        model_class = ' class="num drifted"' if below else ' class="num"'
        if w.get("tau_degenerate"):
            rows.append(
                f"<tr><td>{escape(window)}</td><td class='num'>{fmt(w.get('rows'))}</td>"
                f"<td class='num'>{fmt(w.get('positives'))}</td>"
                f"<td colspan='9' class='drifted'>The label's tau separates nothing here: "
                f"{escape(w['tau_degenerate'])}; no PR-AUC is reported.</td></tr>"
            )
            continue
        rows.append(
            f"<tr><td>{escape(window)}</td><td class='num'>{fmt(w.get('rows'))}</td>"
            f"<td class='num'>{fmt(w.get('positives'))}</td>"
            f"<td{model_class}>{fmt(w.get('pr_auc'))}</td>"
            f"<td class='num'>{fmt(w.get('persistence_pr_auc'))}</td>"
            f"<td class='num'>{fmt(w.get('zscore_pr_auc'))}</td>"
            f"<td class='num'>{fmt(w.get('precision'))}</td>"
            f"<td class='num'>{fmt(w.get('recall'))}</td>"
            f"<td class='num'>{fmt(w.get('spike_rate'))}</td>"
            f"<td class='num'>{fmt(w.get('mean_score'))}</td>"
            f"<td class='num'>{fmt(w.get('flagged_rate'))}</td>"
            f"<td class='num'>{fmt(w.get('calibration_error'))}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def summary_section(entry: dict) -> str:
    """The section written above the Evidently widgets of a report: what was judged against
    what, the headline drift figures, live model quality and the retraining decision."""
    drift = entry["drift"]
    model = entry.get("model") or {}
    top = sorted(drift["features"], key=lambda f: -f["score"])[:8]
    top_rows = "".join(
        f"<tr><td>{escape(f['feature'])}</td><td class='num'>{f['score']:.3f}</td>"
        f"<td>{escape(f['method'])}</td>"
        f"<td class='{'drifted' if f['drifted'] else 'ok'}'>"
        f"{'drifted' if f['drifted'] else 'ok'}</td></tr>"
        for f in top
    )
    prediction = drift.get("prediction")
    prediction_line = (
        f"Prediction drift (score distribution): {prediction['score']:.3f} "
        f"({'drifted' if prediction['drifted'] else 'ok'})."
        if prediction
        else "Prediction drift: not measured (no model to score the rows)."
    )
    retrain = entry.get("retrain") or {}
    retrain_line = (
        f"<p class='drifted'>Retraining started: {escape(retrain.get('why', ''))}</p>"
        if retrain.get("triggered")
        else f"<p>No retraining: {escape(retrain.get('why', 'not evaluated'))}</p>"
    )
    share_class = "drifted" if drift["share"] >= entry.get("limit", 0.5) else "ok"
    fallback = entry.get("fallback") or {}
    if fallback.get("done"):
        retrain_line = (
            f"<p class='drifted'>Fell back to persistence: version {escape(fallback['version'])} "
            f"is champion instead of {escape(fallback['from_version'])} "
            f"({escape(fallback['why'])}).</p>{retrain_line}"
        )
    elif fallback:
        retrain_line = (
            f"<p class='drifted'>Fall-back to persistence due but not done: "
            f"{escape(fallback.get('error', ''))}</p>{retrain_line}"
        )
    notes = "".join(f"<li>{escape(n)}</li>" for n in entry.get("notes", []))
    return (
        '<section class="cryptovol">'
        f"<style>{STYLE}</style>"
        f"<h1>Drift report {escape(entry['time'])}</h1>"
        f"{fallback_banner(entry.get('serving_fallback'))}"
        f"<p>Model judged: {escape(model.get('name', 'none'))} version "
        f"{escape(str(model.get('version', 'n/a')))}. "
        f"Reference: {escape(entry['reference'].get('source', ''))}, "
        f"{_span(entry['reference'])}. "
        f"Current: {escape(entry['current'].get('source', ''))}, {_span(entry['current'])}.</p>"
        f"<p>Share of drifted features: <span class='{share_class}'>{drift['share']:.2f}</span> "
        f"({drift['drifted']} of {len(drift['features'])}; limit {entry.get('limit', 0.5):g}). "
        f"{prediction_line} Missing cells in the current features: "
        f"{fmt(drift.get('missing_share_current'))}.</p>"
        f"<table><tr><th>feature</th><th>drift score</th><th>method</th><th></th></tr>"
        f"{top_rows}</table>"
        "<h2>Live model quality (labels known 60 s after each prediction)</h2>"
        f"{_live_rows(entry.get('live'))}"
        f"{retrain_line}"
        f"{'<ul>' + notes + '</ul>' if notes else ''}"
        '<p><a href="index.html">All drift reports</a></p>'
        "</section>"
    )


def fallback_banner(state: dict | None) -> str:
    """A line saying the persistence fall-back is being served, since when and why."""
    if not state:
        return ""
    return (
        f"<p class='drifted'><strong>Serving the persistence fall-back</strong> (version "
        f"{escape(state.get('version', '?'))}) since {escape(state.get('since', '?'))}, instead of "
        f"version {escape(state.get('from_version', '?'))}: {escape(state.get('reason', ''))}. "
        "A retrained model that passes its gates takes over; `cryptovol rollback` undoes it.</p>"
    )


def _live_cell(figures: dict, key: str) -> str:
    if figures.get("tau_degenerate"):
        return "<td class='drifted'>tau separates nothing</td>"
    return f"<td class='num'>{fmt(figures.get(key))}</td>"


def _decision_cell(entry: dict) -> str:
    retrain = entry.get("retrain") or {}
    fallback = entry.get("fallback") or {}
    fell_back = (
        f"fell back to persistence v{escape(fallback['version'])}; " if fallback.get("done") else ""
    )
    return (
        f"<td class='{'drifted' if retrain.get('triggered') or fell_back else ''}'>{fell_back}"
        f"{'started: ' if retrain.get('triggered') else ''}"
        f"{escape(retrain.get('why', ''))}</td>"
    )


def _report_link(entry: dict, available: set[str] | None) -> str:
    if available is not None and entry["report"] not in available:
        return f"{escape(entry['time'])} <span class='muted'>(report pruned)</span>"
    return f"<a href='{escape(entry['report'])}'>{escape(entry['time'])}</a>"


def index_page(
    entries: Sequence[dict],
    *,
    limit: float,
    available: set[str] | None = None,
    window: str = "1h",
) -> str:
    """The report index: charts of the drift share and the live PR-AUC over time (UTC), then one
    row per check, newest first, with its headline figures and retraining decision. A report
    not in ``available`` (pruned) is listed without a link."""
    ordered = sorted(entries, key=lambda e: e["time"], reverse=True)
    share_series = {"drift share": [(_epoch(e["time"]), e["drift"]["share"]) for e in ordered]}
    live_series: dict[str, list[tuple[float, float]]] = {}
    for entry in ordered:
        figures = (entry.get("live") or {}).get(window) or {}
        for key, name in (
            ("pr_auc", "model"),
            ("persistence_pr_auc", "persistence"),
            ("zscore_pr_auc", "z-score"),
        ):
            if figures.get(key) is not None:
                live_series.setdefault(name, []).append((_epoch(entry["time"]), figures[key]))
    rows = []
    for e in ordered:
        drift = e["drift"]
        model = e.get("model") or {}
        figures = (e.get("live") or {}).get(window) or {}
        top = ", ".join(
            escape(f["feature"])
            for f in sorted(drift["features"], key=lambda f: -f["score"])[:3]
            if f["drifted"]
        )
        share_class = "drifted" if drift["share"] >= limit else "ok"
        rows.append(
            "<tr>"
            f"<td>{_report_link(e, available)}</td>"
            f"<td>{escape(str(model.get('version', 'n/a')))}</td>"
            f"<td class='num {share_class}'>{drift['share']:.2f}</td>"
            f"<td class='num'>{drift['drifted']}/{len(drift['features'])}</td>"
            f"<td>{top or '<span class=muted>none</span>'}</td>"
            f"<td class='num'>{fmt((drift.get('prediction') or {}).get('score'))}</td>"
            f"<td>{_span(e['current'])}</td>"
            f"{_live_cell(figures, 'pr_auc')}"
            f"{_live_cell(figures, 'persistence_pr_auc')}"
            f"{_live_cell(figures, 'zscore_pr_auc')}"
            f"{_decision_cell(e)}"
            "</tr>"
        )
    charts = line_chart(
        "Share of drifted features", share_series, y_max=1.0, limit=limit
    ) + line_chart(f"Live PR-AUC over {window} (same rows)", live_series, y_max=1.0)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>cryptovol drift reports</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>cryptovol drift reports</h1>"
        f"{fallback_banner(ordered[0].get('serving_fallback') if ordered else None)}"
        f"<p>{len(ordered)} checks, newest first. A feature drifts when its distribution moved "
        "0.5 reference standard deviations or more (Wasserstein distance) from the judged "
        f"model's training sample; alert and retraining at a share of {limit:g}.</p>"
        f"<div class='charts'>{charts}</div>"
        "<h2>Checks</h2><table><tr><th>time (report)</th><th>model</th><th>drift share</th>"
        "<th>drifted</th><th>top drifted</th><th>score drift</th><th>current data</th>"
        f"<th>live PR-AUC {window}</th><th>persistence</th><th>z-score</th>"
        "<th>retraining</th></tr>"
        f"{''.join(rows)}</table></body></html>"
    )
