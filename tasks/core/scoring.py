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


def _with_interval(value: float | None, interval: list | None) -> str:
    if interval is None or interval[0] is None:
        return format_metric(value, 3)
    return f"{format_metric(value, 3)} [{interval[0]:.3f}, {interval[1]:.3f}]"


def session_table(judged: dict, names: list[str]) -> list[str]:
    """Markdown rows of :func:`tasks.core.sessions.judge_sessions` figures: every session and
    the pooled rows, spike rate, spikes and bursts, each scorer's PR-AUC [bootstrap interval]."""
    header = ["session", "span (UTC)", "rows", "spike rate", "spikes (bursts)", *names]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    rows = [(str(f["session"]), f) for f in judged["sessions"]]
    if judged.get("pooled"):
        rows.append(("pooled", judged["pooled"]))
    for label, f in rows:
        span = f"{f['start'][:16]} to {f['end'][11:16]}" if f.get("start") else ""
        intervals = f.get("interval", {})
        cells = [
            label if label == "pooled" or not f.get("enough") else f"{label} (judged)",
            span,
            str(f["rows"]),
            format_metric(f["positive_rate"], 3),
            f"{f['positives']} ({f['episodes']})",
            *(_with_interval(f["pr_auc"].get(n), intervals.get(n)) for n in names),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def missing_input_table(report: dict, selected: str) -> list[str]:
    """Markdown rows of a missing-input report: each input family blanked in the held-out rows."""
    lines = [
        f"| inputs blanked | {selected} | drop | retrained without them | persistence | z-score |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    intact = report["intact"]
    lines.append(
        f"| none | {format_metric(intact[selected], 3)} | | | "
        f"{format_metric(intact['persistence'], 3)} | {format_metric(intact['zscore'], 3)} |"
    )
    for family, figures in report.items():
        if family == "intact":
            continue
        pr, drop = figures["pr_auc"], figures["drop"]
        lines.append(
            f"| {family} | {format_metric(pr[selected], 3)} | {drop[selected]:+.3f} | "
            f"{format_metric(figures['retrained_without'], 3)} | "
            f"{format_metric(pr['persistence'], 3)} | {format_metric(pr['zscore'], 3)} |"
        )
    return lines
