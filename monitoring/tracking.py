"""A drift check in MLflow: one run per check, tagged with the model version it judged, holding
the report, the check's figures and Evidently's results; and the version's latest drift as tags."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from tasks.io import registry
from tasks.settings import Settings


def _metric_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", text)


def log_check(settings: Settings, entry: dict, report: Path, evidently_json: dict) -> str:
    """Log the check as a run of the project's experiment; returns the run id."""
    client = registry.connect(settings)
    experiment = registry.experiment_id(settings, client)
    model = entry.get("model") or {}
    with mlflow.start_run(experiment_id=experiment, run_name=f"drift-{entry['time']}") as run:
        mlflow.set_tags(
            {
                "stage": "monitor",
                "model_name": model.get("name", ""),
                "model_version": str(model.get("version", "")),
                "report": report.name,
                "retrain": str(bool((entry.get("retrain") or {}).get("triggered"))).lower(),
                "retrain_why": (entry.get("retrain") or {}).get("why", "")[:5000],
            }
        )
        mlflow.log_params(
            {
                f"{part}.{key}": str(entry[part].get(key))
                for part in ("reference", "current")
                for key in ("source", "start", "end", "rows")
            }
        )
        drift = entry["drift"]
        metrics = {"drift_share": drift["share"], "drifted_features": drift["drifted"]}
        for feature in drift["features"]:
            metrics[_metric_key(f"drift_score.{feature['feature']}")] = feature["score"]
        if drift.get("prediction"):
            metrics["drift_score.prediction"] = drift["prediction"]["score"]
        for window, figures in (entry.get("live") or {}).items():
            for key, value in figures.items():
                if isinstance(value, int | float):
                    metrics[_metric_key(f"live_{window}.{key}")] = float(value)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(report), "drift")
        mlflow.log_dict(entry, "drift/check.json")
        mlflow.log_dict(evidently_json, "drift/evidently.json")
    if model.get("name") and model.get("version"):
        # the version may have been deleted meanwhile: the run still holds everything
        with contextlib.suppress(MlflowException):
            registry.tag_version(
                client,
                model["name"],
                str(model["version"]),
                {
                    "monitor.last_check": entry["time"],
                    "monitor.last_drift_share": f"{drift['share']:.4f}",
                    "monitor.last_run_id": run.info.run_id,
                },
            )
    return run.info.run_id
