"""Scoring a model beside the baselines on the same rows: the figures ``evaluate`` and
``validate`` report. Pure: scores in, figures out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.core.evaluation import epoch_seconds, ranking_metrics


def format_metric(value: float | None, digits: int = 4) -> str:
    """A figure for reports and the console: fixed digits, ``n/a`` when there is none."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def time_span(frame: pd.DataFrame) -> dict:
    """First and last ``ts`` of the rows, ISO formatted (None when there are none)."""
    if frame.empty:
        return {"start": None, "end": None}
    return {
        "start": pd.Timestamp(frame["ts"].min()).isoformat(),
        "end": pd.Timestamp(frame["ts"].max()).isoformat(),
    }


def scored_metrics(y: np.ndarray, scores: dict[str, np.ndarray]) -> dict:
    """The model's PR-AUC and ROC-AUC beside both baselines' PR-AUC, on the same labelled rows."""
    model = ranking_metrics(y, scores["model"])
    return {
        "pr_auc": model["pr_auc"],
        "baseline_pr_auc": ranking_metrics(y, scores["zscore"])["pr_auc"],
        "persistence_pr_auc": ranking_metrics(y, scores["persistence"])["pr_auc"],
        "roc_auc": model["roc_auc"],
        "positive_rate": model["positive_rate"],
        "positives": model["positives"],
        "rows": model["rows"],
        "degenerate": model["degenerate"],
    }


def grouped_metrics(
    rows: pd.DataFrame, y: np.ndarray, scores: dict[str, np.ndarray], column: str
) -> dict[str, dict]:
    """:func:`scored_metrics` and the time span of each group of rows (by product, by file...)."""
    groups = {}
    for name, positions in rows.groupby(column, sort=True).indices.items():
        part = {k: v[positions] for k, v in scores.items()}
        span = time_span(rows.iloc[positions])
        groups[str(name)] = {**scored_metrics(y[positions], part), **span}
    return groups


def unseen_window(
    frame: pd.DataFrame, train_ends: list[str], embargo_s: float, window_s: float | None
) -> pd.DataFrame:
    """Rows from ``embargo_s`` after the latest training end on; the last ``window_s`` of them.

    With no training end known, every row (the caller says so).
    """
    seconds = epoch_seconds(frame["ts"]) if len(frame) else np.array([])
    keep = np.ones(len(seconds), dtype=bool)
    if train_ends:
        keep = seconds >= max(pd.Timestamp(t).timestamp() for t in train_ends) + embargo_s
    if window_s is not None and keep.any():
        keep &= seconds >= seconds.max() - window_s
    return frame[keep]
