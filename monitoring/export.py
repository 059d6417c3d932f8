"""A check's figures as Prometheus metrics, pushed to the Pushgateway (job ``cryptovol_monitor``).

:func:`monitor_metrics` turns a check's history entry (see :mod:`monitoring.pages`) into a
registry of gauges named as in docs/metrics.md; :func:`push` sends it. Each push replaces the
previous one's figures, so a feature or window that has no figure this time disappears.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

JOB = "cryptovol_monitor"
SCORERS = (("model", "pr_auc"), ("persistence", "persistence_pr_auc"), ("zscore", "zscore_pr_auc"))


def _epoch(iso: str | None) -> float | None:
    return None if not iso else datetime.fromisoformat(iso).timestamp()


def monitor_metrics(entry: dict, *, retrains: int, last_retrain: str | None) -> CollectorRegistry:
    """The gauges of one check; ``retrains`` and ``last_retrain`` come from the history."""
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=registry)

    drift = entry["drift"]
    gauge("cryptovol_drift_share", "Share of features drifted from the reference").set(
        drift["share"]
    )
    score = gauge(
        "cryptovol_drift_feature_score", "Drift score of a feature", ("feature", "method")
    )
    drifted = gauge("cryptovol_drift_feature_drifted", "1 when the feature drifted", ("feature",))
    for feature in drift["features"]:
        score.labels(feature["feature"], feature["method"]).set(feature["score"])
        drifted.labels(feature["feature"]).set(1.0 if feature["drifted"] else 0.0)
    prediction = drift.get("prediction")
    if prediction:
        gauge(
            "cryptovol_drift_prediction_score", "Drift score of the model's scores", ("method",)
        ).labels(prediction["method"]).set(prediction["score"])
        gauge("cryptovol_drift_prediction_drifted", "1 when the scores drifted").set(
            1.0 if prediction["drifted"] else 0.0
        )
    rows = gauge("cryptovol_drift_rows", "Rows compared", ("dataset",))
    starts = gauge("cryptovol_drift_span_start_seconds", "First event time", ("dataset",))
    ends = gauge("cryptovol_drift_span_end_seconds", "Last event time", ("dataset",))
    for dataset in ("reference", "current"):
        part = entry[dataset]
        rows.labels(dataset).set(part["rows"])
        for metric, key in ((starts, "start"), (ends, "end")):
            value = _epoch(part.get(key))
            if value is not None:
                metric.labels(dataset).set(value)
    model = entry.get("model")
    if model and str(model.get("version", "")).isdigit():
        gauge("cryptovol_drift_model_version", "Model version judged").set(int(model["version"]))
    gauge(
        "cryptovol_drift_last_report_timestamp_seconds", "Wall clock of the last drift report"
    ).set(_epoch(entry["time"]))

    live = entry.get("live") or {}
    pr_auc = gauge("cryptovol_live_pr_auc", "Live PR-AUC on labelled rows", ("window", "scorer"))
    singles = {
        key: gauge(f"cryptovol_live_{key}", doc, ("window",))
        for key, doc in (
            ("precision", "Precision at the served threshold"),
            ("recall", "Recall at the served threshold"),
            ("spike_rate", "Realized spike rate"),
            ("mean_score", "Mean served score"),
            ("positives", "Realized spikes"),
            ("rows", "Labelled prediction rows"),
        )
    }
    for window, figures in live.items():
        for scorer, key in SCORERS:
            if figures.get(key) is not None:
                pr_auc.labels(window, scorer).set(figures[key])
        for key, metric in singles.items():
            if figures.get(key) is not None:
                metric.labels(window).set(figures[key])

    gauge("cryptovol_retrain_triggered_total", "Retraining runs the monitor started").set(retrains)
    if last_retrain:
        gauge("cryptovol_retrain_last_timestamp_seconds", "Wall clock of the last one").set(
            _epoch(last_retrain)
        )
    return registry


def push(gateway_url: str, registry: CollectorRegistry, timeout: float = 10.0) -> None:
    """Replace the monitor's group on the Pushgateway with ``registry``."""
    push_to_gateway(gateway_url, job=JOB, registry=registry, timeout=timeout)
