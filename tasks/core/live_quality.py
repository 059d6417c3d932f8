"""Live model quality: served predictions judged once their future has happened. Pure.

A prediction's label is known 60 s after it is made. The labels come from the training code
itself: a feature and label data set (:func:`tasks.core.dataset.feature_frame`, the label grid of
:mod:`tasks.core.labels`, the model's stored :class:`LabelSpec` with its tau) built from the raw
ticks; each grid row is joined with the prediction of its tick by record id. So the live figures
are computed on exactly the rows, labels and baselines an offline ``cryptovol evaluate`` of the
same model on the same ticks uses, and equal its figures when every tick was scored.

The stream holds one feature record per tick; training rows are one per product and second of the
grid (the last tick at or before each whole second, no second across a gap).
:func:`on_label_grid` puts stream records on that same grid, so drift compares like with like.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.core.evaluation import choose_threshold, epoch_seconds, expected_calibration_error
from tasks.core.features import FEATURE_NAMES
from tasks.core.labels import LabelSpec, second_grid
from tasks.core.models import PersistenceBaseline, SpikePredictor, ranking_baselines
from tasks.core.scoring import scored_metrics


def on_label_grid(records: pd.DataFrame) -> pd.DataFrame:
    """The records (``product_id``, ``ts`` and anything else, one per tick) picked as training
    picks ticks: for each product and grid second, the last record at or before it."""
    if records.empty:
        return records.iloc[0:0]
    ordered = records.sort_values(["product_id", "ts"], kind="stable", ignore_index=True)
    grid = second_grid(
        pd.DataFrame(
            {
                "product_id": ordered["product_id"].to_numpy(),
                "ts": epoch_seconds(ordered["ts"]),
                "mid": np.zeros(len(ordered)),  # the grid's rows do not depend on prices
            }
        )
    )
    picked = ordered.iloc[grid["tick_row"].to_numpy()].reset_index(drop=True)
    picked["ts"] = pd.to_datetime(grid["second"].to_numpy() * 1_000_000, unit="us", utc=True)
    return picked


# Rolling windows of event time, ending at the newest labelled prediction.
WINDOWS_S: dict[str, float] = {"15m": 900.0, "1h": 3600.0, "24h": 86400.0}
PREDICTION_FIELDS = ("record_id", "score", "spike", "threshold", "model_version")


def labelled_predictions(
    frame: pd.DataFrame, predictions: pd.DataFrame, label: LabelSpec
) -> pd.DataFrame:
    """The grid rows of ``frame`` (a feature and label data set, :mod:`tasks.core.dataset`) whose
    tick was scored and whose label is known now, with ``y`` and the served prediction.

    ``predictions`` holds one row per scored feature record (:data:`PREDICTION_FIELDS`); a row's
    feature record is its grid tick's (the same ``record_id``). Rows keep ``frame``'s order.
    """
    rows, y = label.labelled(frame)
    rows = rows.assign(y=y)
    served = predictions[list(PREDICTION_FIELDS)].drop_duplicates("record_id")
    return rows.merge(served, on="record_id", how="inner", validate="many_to_one")


RANKING_FIGURES = ("pr_auc", "persistence_pr_auc", "zscore_pr_auc", "roc_auc")


def tau_separation(y: np.ndarray) -> str | None:
    """Why the label's tau separates nothing in these rows (every label a spike, or none), or
    None when the rows hold both."""
    if len(y) == 0:
        return None
    if (y == 1).all():
        return "every matured label is a spike: tau is below the whole volatility level"
    if (y == 0).all():
        return "no matured label is a spike: tau is above the whole volatility level"
    return None


def quality(rows: pd.DataFrame) -> dict:
    """Figures of served predictions on labelled rows, beside both baselines on the same rows:
    PR-AUC of each, precision and recall of the served flags, spike rate and mean score
    (calibration in the large), expected calibration error, the event-time span.

    When every label is a spike, or none is, the ranking figures are None (every ranker would
    score 1.0, or nothing) and ``tau_degenerate`` says why: the label's tau no longer separates
    anything in this window."""
    y = rows["y"].to_numpy(dtype=float)
    score = rows["score"].to_numpy(dtype=float)
    figures = scored_metrics(y, {"model": score, **ranking_baselines(rows)})
    seconds = epoch_seconds(rows["ts"]) if len(rows) else np.empty(0)
    flagged = rows["spike"].to_numpy(dtype=bool)
    hits = int((flagged & (y == 1)).sum())
    out = {
        "rows": figures["rows"],
        "positives": figures["positives"],
        "pr_auc": figures["pr_auc"],
        "persistence_pr_auc": figures["persistence_pr_auc"],
        "zscore_pr_auc": figures["baseline_pr_auc"],
        "roc_auc": figures["roc_auc"],
        "precision": hits / flagged.sum() if flagged.any() else None,
        "recall": hits / figures["positives"] if figures["positives"] else None,
        "spike_rate": figures["positive_rate"],
        "flagged_rate": float(flagged.mean()) if len(flagged) else None,
        "mean_score": float(score.mean()) if len(score) else None,
        "calibration_error": expected_calibration_error(y, score) if len(y) else None,
        "start": pd.Timestamp(rows["ts"].min()).isoformat() if len(rows) else None,
        "end": pd.Timestamp(rows["ts"].max()).isoformat() if len(rows) else None,
        "span_s": float(seconds.max() - seconds.min()) if len(seconds) else 0.0,
        "model_versions": sorted(set(rows["model_version"].astype(str))),
        "tau_degenerate": tau_separation(y),
    }
    if out["tau_degenerate"]:
        out.update(dict.fromkeys(RANKING_FIGURES))
    return out


def windowed_quality(
    rows: pd.DataFrame, windows_s: dict[str, float] = WINDOWS_S
) -> dict[str, dict]:
    """:func:`quality` over each window of event time ending at the newest row (windows
    without a row are left out)."""
    if rows.empty:
        return {}
    seconds = epoch_seconds(rows["ts"])
    end = seconds.max()
    out = {}
    for name, width in windows_s.items():
        part = rows[seconds > end - width]
        if len(part):
            out[name] = quality(part)
    return out


def fit_fallback(rows: pd.DataFrame, label: dict, info: dict) -> SpikePredictor:
    """The persistence predictor to serve instead of a champion that ranks below it: the
    persistence scorer (log 60 s realized volatility) calibrated on these labelled rows, with
    the F1-best threshold on them and the champion's label (so its tau)."""
    y = rows["y"].to_numpy(dtype=int)
    if tau_separation(y.astype(float)):
        raise ValueError(f"cannot fit a fallback: {tau_separation(y.astype(float))}")
    X = rows.reindex(columns=list(FEATURE_NAMES)).astype(float)
    scorer = PersistenceBaseline().fit(X, y)
    threshold = choose_threshold(y, scorer.predict_array(X.to_numpy()))
    return SpikePredictor("persistence", scorer, dict(label), threshold, info=dict(info))
