"""The Grafana dashboards, written as JSON into ``monitoring/grafana/dashboards/``.

Three dashboards on the Prometheus data source provisioned as uid ``prometheus``:

- **Service**: /predict requests/s, latency quantiles, errors, rows scored, served model version,
  reloads and registry checks (the BentoML service's metrics);
- **Pipeline**: ticks/s per product, gaps, reconnects, features/s, event lag, latency and DLQ of
  capture, featurizer and scorer;
- **Model**: served score distribution, spike rate, live PR-AUC beside both baselines, calibration,
  whether the persistence fall-back is served and since when,
  drift share and per-feature drift, time of the last drift report (linked to the report index),
  retraining runs.

``python -m monitoring.grafana.dashboards`` rewrites the JSON files; a test checks they match this
module, and runs every panel's query against a real Prometheus. Queries use fixed ranges, not
Grafana's ``$__rate_interval``, so they mean the same in Grafana and through Prometheus's API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
REPORTS_URL = "http://127.0.0.1:8090"  # `cryptovol reports` (Settings.reports_port)


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # timeseries | stat | bargauge | heatmap
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    thresholds: tuple[tuple[str, float | None], ...] = ()  # (color, from value)
    options: dict = field(default_factory=dict)


def _q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


def _quantiles(metric: str, selector: str = "", by: str = "") -> tuple[Query, ...]:
    group = f"sum by ({by + ', ' if by else ''}le)"
    return tuple(
        _q(
            f"histogram_quantile({q}, {group} (rate({metric}_bucket{selector}[1m])))",
            f"p{int(q * 100)}" + (f" {{{{{by}}}}}" if by else ""),
        )
        for q in (0.5, 0.9, 0.99)
    )


SERVICE = (
    Panel(
        "Requests/s by route and status",
        (
            _q(
                "sum by (route, status) (rate(cryptovol_service_requests_total[1m]))",
                "{{route}} {{status}}",
            ),
        ),
        unit="reqps",
    ),
    Panel(
        "/predict latency (server side)",
        _quantiles("cryptovol_service_request_seconds", '{route="/predict"}'),
        unit="s",
        description="Objective: p99 under 50 ms (alert PredictLatencyHigh).",
        thresholds=(("green", None), ("red", 0.05)),
    ),
    Panel(
        "Errors: share of requests answered 4xx and 5xx",
        (
            _q(
                'sum(rate(cryptovol_service_requests_total{status=~"4.."}[5m]) or vector(0))'
                " / sum(rate(cryptovol_service_requests_total[5m]))",
                "4xx (bad input)",
            ),
            _q(
                'sum(rate(cryptovol_service_requests_total{status=~"5.."}[5m]) or vector(0))'
                " / sum(rate(cryptovol_service_requests_total[5m]))",
                "5xx",
            ),
        ),
        unit="percentunit",
        description="Bad input is a 4xx by contract; any 5xx is a fault (alert ServiceErrors).",
    ),
    Panel(
        "Rows scored/s and spikes flagged/s",
        (
            _q(
                "sum by (variant, version) (rate(cryptovol_service_predictions_total[1m]))",
                "rows {{variant}} v{{version}}",
            ),
            _q(
                "sum by (variant, version) (rate(cryptovol_service_spikes_total[1m]))",
                "spikes {{variant}} v{{version}}",
            ),
        ),
    ),
    Panel(
        "Loaded model version",
        (_q("cryptovol_service_model_version", "{{variant}}"),),
        kind="stat",
        width=6,
        height=5,
    ),
    Panel(
        "Alias version at the last registry check",
        (_q("cryptovol_service_alias_version", "{{variant}}"),),
        kind="stat",
        width=6,
        height=5,
        description="Differs from the loaded version for long: alert ModelNotReloaded.",
    ),
    Panel(
        "Registry reachable",
        (_q("cryptovol_service_registry_up", "{{variant}}"),),
        kind="stat",
        width=6,
        height=5,
        thresholds=(("red", None), ("green", 1)),
    ),
    Panel(
        "Seconds since the last registry check",
        (_q("cryptovol_service_registry_check_age_seconds", "{{variant}}"),),
        kind="stat",
        unit="s",
        width=6,
        height=5,
    ),
    Panel(
        "Model reloads and reload failures (1 h)",
        (
            _q("increase(cryptovol_service_model_reloads_total[1h])", "reloads {{variant}}"),
            _q(
                "increase(cryptovol_service_model_reload_failures_total[1h])",
                "failures {{variant}}",
            ),
        ),
        width=24,
    ),
)

PIPELINE = (
    Panel(
        "Ticks/s per product (capture)",
        (
            _q(
                "sum by (product) (rate(cryptovol_capture_tickers_total[1m]))",
                "{{product}}",
            ),
        ),
        unit="ops",
        description="A product silent for a minute: alert NoTicks.",
    ),
    Panel(
        "Exchange messages/s by channel",
        (
            _q(
                "sum by (channel) (rate(cryptovol_capture_messages_total[1m]))",
                "{{channel}}",
            ),
        ),
        unit="ops",
    ),
    Panel(
        "Sequence gaps, reconnects and idle timeouts (15 min)",
        (
            _q("sum(increase(cryptovol_capture_sequence_gaps_total[15m]))", "gaps"),
            _q("sum(increase(cryptovol_capture_missing_messages_total[15m]))", "missing"),
            _q("sum(increase(cryptovol_capture_reconnects_total[15m]))", "reconnects"),
            _q("sum(increase(cryptovol_capture_idle_timeouts_total[15m]))", "idle timeouts"),
        ),
    ),
    Panel(
        "Seconds since the last exchange message",
        (_q("cryptovol_capture_seconds_since_last_message", "{{instance}}"),),
        unit="s",
        thresholds=(("green", None), ("red", 60)),
    ),
    Panel(
        "Featurizer: ticks in and features out per second",
        (
            _q("sum(rate(cryptovol_featurize_ticks_in_total[1m]))", "ticks in"),
            _q("sum(rate(cryptovol_featurize_features_out_total[1m]))", "features out"),
            _q("sum(rate(cryptovol_featurize_duplicates_total[1m]))", "duplicates dropped"),
            _q("sum(rate(cryptovol_featurize_late_dropped_total[1m]))", "late dropped"),
        ),
        unit="ops",
    ),
    Panel(
        "Scorer: features in and predictions out per second",
        (
            _q("sum(rate(cryptovol_scorer_features_in_total[1m]))", "features in"),
            _q("sum(rate(cryptovol_scorer_predictions_out_total[1m]))", "predictions out"),
            _q("sum by (product) (rate(cryptovol_scorer_spikes_total[1m]))", "spikes {{product}}"),
        ),
        unit="ops",
    ),
    Panel(
        "Event lag (wall clock minus event time of the last output)",
        (
            _q("cryptovol_featurize_event_lag_seconds", "featurizer {{instance}}"),
            _q("cryptovol_scorer_event_lag_seconds", "scorer {{instance}}"),
        ),
        unit="s",
        description="Objective: under 10 s (alert StreamLagHigh). Replays of old data lag by "
        "their age.",
    ),
    Panel(
        "Featurizer latency, poll to acknowledged features",
        _quantiles("cryptovol_featurize_latency_seconds"),
        unit="s",
        description="Objective: p99 under 100 ms (alert ProcessingLatencyHigh).",
    ),
    Panel(
        "Scorer latency, poll to acknowledged prediction",
        _quantiles("cryptovol_scorer_latency_seconds"),
        unit="s",
        description="Objective: p99 under 100 ms (alert ProcessingLatencyHigh).",
    ),
    Panel(
        "Dead letters (15 min)",
        (
            _q("sum(increase(cryptovol_featurize_dlq_total[15m]))", "featurizer"),
            _q("sum(increase(cryptovol_scorer_dlq_total[15m]))", "scorer"),
            _q("sum(increase(cryptovol_capture_malformed_messages_total[15m]))", "capture"),
        ),
    ),
    Panel(
        "Partitions assigned to the featurizer",
        (_q("cryptovol_featurize_assigned_partitions", "{{instance}}"),),
        kind="stat",
        width=12,
        height=5,
    ),
    Panel(
        "Records awaiting delivery (capture)",
        (_q("cryptovol_capture_in_flight", "{{instance}}"),),
        kind="stat",
        width=12,
        height=5,
    ),
)

MODEL = (
    Panel(
        "Served score distribution (15 min)",
        (
            _q(
                "sum by (le) (increase(cryptovol_service_score_bucket[15m]))",
                "{{le}}",
            ),
        ),
        kind="bargauge",
        options={"displayMode": "basic", "orientation": "vertical"},
        description="Spike probabilities the service returned, in buckets of 0.05.",
    ),
    Panel(
        "Flagged spike rate (stream) and realized spike rate (labels)",
        (
            _q(
                "sum(rate(cryptovol_scorer_spikes_total[15m]))"
                " / sum(rate(cryptovol_scorer_predictions_out_total[15m]))",
                "flagged by the scorer",
            ),
            _q("cryptovol_live_spike_rate", "realized {{window}}"),
        ),
        unit="percentunit",
    ),
    Panel(
        "Live PR-AUC beside the baselines (same rows)",
        (_q("cryptovol_live_pr_auc", "{{scorer}} {{window}}"),),
        unit="percentunit",
        description="Labels are known 60 s after each prediction. Model below persistence over "
        "a window with enough spikes: alert LivePrAucBelowPersistence.",
    ),
    Panel(
        "Precision and recall at the served threshold",
        (
            _q("cryptovol_live_precision", "precision {{window}}"),
            _q("cryptovol_live_recall", "recall {{window}}"),
        ),
        unit="percentunit",
    ),
    Panel(
        "Calibration: mean score vs realized spike rate",
        (
            _q("cryptovol_live_mean_score", "mean score {{window}}"),
            _q("cryptovol_live_spike_rate", "spike rate {{window}}"),
        ),
        unit="percentunit",
    ),
    Panel(
        "Labelled rows and spikes per window",
        (
            _q("cryptovol_live_rows", "rows {{window}}"),
            _q("cryptovol_live_positives", "spikes {{window}}"),
        ),
    ),
    Panel(
        "Share of drifted features",
        (_q("cryptovol_drift_share", "drift share"),),
        unit="percentunit",
        thresholds=(("green", None), ("red", 0.5)),
        description="Against the champion's training sample; over 0.5: alert DriftShareHigh, "
        "and retraining after consecutive checks.",
    ),
    Panel(
        "Drift score per feature",
        (_q("cryptovol_drift_feature_score", "{{feature}} ({{method}})"),),
        kind="bargauge",
        options={"displayMode": "gradient", "orientation": "horizontal"},
    ),
    Panel(
        "Features drifted, of those compared",
        (
            _q("sum(cryptovol_drift_feature_drifted)", "drifted"),
            _q("count(cryptovol_drift_feature_drifted)", "compared"),
        ),
        kind="stat",
        width=12,
        height=6,
    ),
    Panel(
        "Rows compared (reference, current)",
        (_q("cryptovol_drift_rows", "{{dataset}}"),),
        kind="stat",
        width=6,
        height=6,
    ),
    Panel(
        "Model version judged",
        (_q("cryptovol_drift_model_version", "version"),),
        kind="stat",
        width=6,
        height=6,
    ),
    Panel(
        "Time of the last drift report",
        (_q("cryptovol_drift_last_report_timestamp_seconds * 1000", "last report"),),
        kind="stat",
        unit="dateTimeAsIso",
        width=8,
        height=5,
        description="Open the report index from the dashboard link 'Drift reports'.",
    ),
    Panel(
        "Spans compared (end)",
        (_q("cryptovol_drift_span_end_seconds * 1000", "{{dataset}}"),),
        kind="stat",
        unit="dateTimeAsIso",
        width=8,
        height=5,
    ),
    Panel(
        "Retraining runs started by the monitor",
        (_q("cryptovol_retrain_triggered_total", "runs"),),
        kind="stat",
        width=8,
        height=5,
    ),
    Panel(
        "Serving the persistence fall-back",
        (
            _q("max(cryptovol_service_serving_fallback)", "service"),
            _q("max(cryptovol_scorer_serving_fallback)", "scorer"),
        ),
        kind="stat",
        width=12,
        height=5,
        thresholds=(("green", None), ("red", 1.0)),
        description="1 while the monitor serves a persistence version because the champion "
        "ranked below persistence over the last hour (docs/runbook.md).",
    ),
    Panel(
        "Persistence fall-back served since",
        (_q("max(cryptovol_service_fallback_since_timestamp_seconds) * 1000", "since"),),
        kind="stat",
        unit="dateTimeAsIso",
        width=12,
        height=5,
        description="When the fall-back became champion; 1970 (zero) when none is served.",
    ),
)

DASHBOARDS: dict[str, tuple[str, tuple[Panel, ...]]] = {
    "service": ("cryptovol / Service", SERVICE),
    "pipeline": ("cryptovol / Pipeline", PIPELINE),
    "model": ("cryptovol / Model", MODEL),
}


def _panel_json(panel_id: int, panel: Panel, x: int, y: int) -> dict[str, Any]:
    steps = [{"color": color, "value": value} for color, value in panel.thresholds] or [
        {"color": "green", "value": None}
    ]
    out: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": q.expr,
                "legendFormat": q.legend or "__auto",
                "range": panel.kind == "timeseries",
                "instant": panel.kind != "timeseries",
            }
            for i, q in enumerate(panel.queries)
        ],
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": dict(panel.options),
    }
    if panel.description:
        out["description"] = panel.description
    if panel.kind == "timeseries":
        out["options"].setdefault("legend", {"displayMode": "list", "placement": "bottom"})
    return out


def dashboard_json(key: str) -> dict[str, Any]:
    """The Grafana dashboard model of ``key`` (panels laid out left to right, row by row)."""
    title, panels = DASHBOARDS[key]
    laid_out = []
    x = y = row_height = 0
    for i, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append(_panel_json(i, panel, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    links = [
        {
            "title": "cryptovol dashboards",
            "type": "dashboards",
            "tags": ["cryptovol"],
            "asDropdown": False,
        }
    ]
    if key == "model":
        links.append(
            {
                "title": "Drift reports",
                "type": "link",
                "url": "${reports_url}/drift/index.html",
                "targetBlank": True,
                "icon": "doc",
                "tooltip": "The drift report index (`cryptovol reports` serves it)",
            }
        )
    return {
        "uid": f"cryptovol-{key}",
        "title": title,
        "tags": ["cryptovol"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h" if key == "model" else "now-1h", "to": "now"},
        "links": links,
        "templating": {
            "list": [
                {
                    "name": "reports_url",
                    "label": "Report server",
                    "type": "textbox",
                    "query": REPORTS_URL,
                    "current": {"text": REPORTS_URL, "value": REPORTS_URL},
                    "hide": 2 if key != "model" else 0,
                }
            ]
        },
        "panels": laid_out,
    }


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(panel title, refId, PromQL) of every target of a dashboard model."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["refId"], target["expr"]


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard, as written to :data:`DASHBOARD_DIR`."""
    return {f"{key}.json": json.dumps(dashboard_json(key), indent=2) + "\n" for key in DASHBOARDS}


def main() -> None:
    DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (DASHBOARD_DIR / name).write_text(text)
        print(DASHBOARD_DIR / name)


if __name__ == "__main__":
    main()
