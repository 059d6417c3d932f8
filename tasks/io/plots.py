"""Figures logged beside a training or validation run: PR curves, calibration, importance, scores.

Matplotlib's Agg backend, chosen when a figure is drawn (never at import): no display needed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from tasks.core.evaluation import calibration_table, is_degenerate


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pr_curves(y: np.ndarray, scores: Mapping[str, np.ndarray], title: str = "Precision-recall"):
    """One precision-recall curve per scorer on the same rows, PR-AUC in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if is_degenerate(y):
        ax.text(0.5, 0.5, "no spike in these rows: no PR curve", ha="center", va="center")
    else:
        for name, score in scores.items():
            precision, recall, _ = precision_recall_curve(y, score)
            ap = average_precision_score(y, score)
            ax.step(recall, precision, where="post", label=f"{name} (PR-AUC {ap:.3f})")
        ax.axhline(
            float(np.mean(y)), color="grey", linestyle=":", label=f"spike rate {np.mean(y):.3f}"
        )
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def calibration_curve(y: np.ndarray, p: np.ndarray, title: str = "Calibration", n_bins: int = 10):
    """Observed spike rate against mean predicted probability, per quantile bin."""
    plt = _pyplot()
    table = calibration_table(y, p, n_bins)
    fig, ax = plt.subplots(figsize=(5, 5))
    top = (
        max(float(table["mean_pred"].max()), float(table["frac_pos"].max()), 0.05)
        if len(table)
        else 1
    )
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect")
    ax.plot(table["mean_pred"], table["frac_pos"], marker="o", label="model")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed spike rate")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def feature_importance(importance: Mapping[str, float], top: int = 20, title: str = "Importance"):
    """Horizontal bars of the ``top`` largest importances (normalised to sum to one)."""
    plt = _pyplot()
    series = pd.Series(dict(importance), dtype=float).sort_values(ascending=False).head(top)
    if series.sum() > 0:
        series = series / series.sum()
    fig, ax = plt.subplots(figsize=(6, max(2.0, 0.3 * len(series) + 1)))
    ax.barh(series.index[::-1], series.to_numpy()[::-1])
    ax.set_xlabel("share of importance")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def score_distribution(y: np.ndarray, p: np.ndarray, threshold: float, title: str = "Scores"):
    """Histograms of predicted probabilities for spikes and non-spikes, with the threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0.0, max(float(np.max(p)) if len(p) else 1.0, threshold) * 1.05 + 1e-9, 40)
    ax.hist(p[y == 0], bins=bins, alpha=0.6, density=True, label="no spike")
    ax.hist(p[y == 1], bins=bins, alpha=0.6, density=True, label="spike")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("predicted spike probability")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
