"""The ``evaluate`` stage: any model version on any data, with the model's own stored label
(tau included): PR-AUC beside the z-score and persistence baselines on the same rows, overall,
per session (stretches separated by long gaps, each its own market regime) with block-bootstrap
intervals, per product and per file."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.core.evaluation import epoch_seconds
from tasks.core.labels import LabelSpec
from tasks.core.models import ranking_baselines
from tasks.core.scoring import grouped_metrics, scored_metrics, time_span
from tasks.core.sessions import judge_by_session
from tasks.io import model_store, registry
from tasks.settings import Settings
from tasks.stages.data import load_frame


def evaluate_model(settings: Settings, model_uri: str, data_paths: list[str]) -> dict:
    """PR-AUC of the model and both baselines on the same labelled rows, overall and by group."""
    registry.connect(settings)
    predictor = model_store.load_predictor(model_uri)
    frame, load_info = load_frame(data_paths, settings.backfill_cache_dir)
    rows, y = LabelSpec.from_dict(predictor.label).labelled(frame)
    scores = {"model": predictor.predict_proba(rows), **ranking_baselines(rows)}
    out = {
        "model_uri": model_uri,
        "model_kind": predictor.kind,
        "label": predictor.label,
        "threshold": predictor.threshold,
        **scored_metrics(y, scores),
        **time_span(rows),
    }
    train_start, train_end = predictor.info.get("train_start"), predictor.info.get("train_end")
    if train_start and train_end and len(rows):
        ts = rows["ts"]
        inside = (ts >= pd.Timestamp(train_start)) & (ts <= pd.Timestamp(train_end))
        out["rows_in_training_span"] = int(inside.sum())
    times = epoch_seconds(rows["ts"]) if len(rows) else np.empty(0)
    out["sessions"] = judge_by_session(times, y, scores)
    for key, column in (("per_product", "product_id"), ("per_file", "source")):
        out[key] = grouped_metrics(rows, y, scores, column)
    out["data"] = load_info.to_dict()
    return out
