"""Honest evaluation: time-ordered splits with an embargo, metrics that hold on degenerate data.

Pure: numpy, pandas and scikit-learn metrics only.

Rows are product-seconds whose feature windows (up to 300 s back) and label window (60 s ahead)
overlap their neighbours, so a random split leaks. Every split here is ordered by event time over
all products, and an embargo of at least the longest window plus the horizon separates the rows a
model learns from and the rows it is judged on.

A part without a single spike (short recordings make those likely) has no PR-AUC or ROC-AUC: the
metrics are ``None`` and the part is flagged ``degenerate``, counted, and left out of means. Nothing
turns silently into NaN or 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from tasks.core.features import WINDOWS_S

EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def embargo_for(horizon_s: float) -> float:
    """The one embargo rule: the longest window over which features see returns plus the label
    horizon, in seconds.

    No row a model learns from may have a label window, or a return in a feature window, that
    overlaps a row it is judged on. The 900 s regime window of tick counts and spreads
    (``REGIME_WINDOW_S``) sees no return, and it restarts, like every window, after a 30 s gap:
    it cannot carry a held-out session's ticks into the rows of another.
    """
    return float(max(WINDOWS_S) + horizon_s)


def epoch_seconds(ts: pd.Series) -> np.ndarray:
    """Seconds since the epoch as float, whatever the timestamp resolution (ns, us, ms)."""
    stamps = ts if isinstance(ts.dtype, pd.DatetimeTZDtype) else pd.to_datetime(ts, utc=True)
    return ((stamps - EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)


# --------------------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: row positions to learn from and to validate on."""

    index: int
    train: np.ndarray
    valid: np.ndarray
    train_end: float  # epoch seconds: no training row at or after this
    valid_start: float
    valid_end: float


@dataclass(frozen=True)
class SplitPlan:
    """Walk-forward folds over the development part, then one final held-out test part."""

    folds: list[Fold]
    dev: np.ndarray  # everything the final model may learn from (embargoed before test)
    test: np.ndarray
    test_start: float
    embargo_s: float

    def describe(self) -> dict:
        return {
            "embargo_s": self.embargo_s,
            "test_start": self.test_start,
            "dev_rows": len(self.dev),
            "test_rows": len(self.test),
            "folds": [
                {
                    "fold": f.index,
                    "train_rows": len(f.train),
                    "valid_rows": len(f.valid),
                    "train_end": f.train_end,
                    "valid_start": f.valid_start,
                    "valid_end": f.valid_end,
                }
                for f in self.folds
            ],
        }


class SplitError(ValueError):
    """The data is too short to split the way asked."""


def walk_forward_splits(
    times: np.ndarray,
    *,
    n_folds: int = 4,
    test_fraction: float = 0.2,
    embargo_s: float = 360.0,
) -> SplitPlan:
    """Expanding-window folds ordered by event time, with an embargo before every judged part.

    ``times`` are epoch seconds of the labelled rows (any order, several products may share a
    second). The last ``test_fraction`` of rows (by time) is the test part; the rest, minus an
    embargo, is cut into ``n_folds + 1`` blocks of equal row counts. Fold ``k`` validates on block
    ``k`` and trains on every earlier row that ends ``embargo_s`` before the block starts, so no
    training row's features or label window reaches into the validation block.
    """
    times = np.asarray(times, dtype=float)
    if len(times) == 0:
        raise SplitError("no labelled rows to split")
    if not 0.0 < test_fraction < 1.0:
        raise SplitError("test_fraction must be in (0, 1)")
    if n_folds < 1:
        raise SplitError("n_folds must be at least 1")
    positions = np.arange(len(times))
    test_start = float(np.quantile(times, 1.0 - test_fraction))
    test = positions[times >= test_start]
    dev = positions[times < test_start - embargo_s]
    if len(dev) == 0 or len(test) == 0:
        raise SplitError(
            f"span of {times.max() - times.min():.0f} s is too short for a test part "
            f"behind an embargo of {embargo_s:.0f} s"
        )
    dev_times = times[dev]
    edges = np.quantile(dev_times, np.linspace(0.0, 1.0, n_folds + 2))
    folds = []
    for k in range(1, n_folds + 1):
        start, end = float(edges[k]), float(edges[k + 1])
        last = k == n_folds
        in_valid = (dev_times >= start) & ((dev_times <= end) if last else (dev_times < end))
        train = dev[dev_times < start - embargo_s]
        valid = dev[in_valid]
        if len(train) == 0 or len(valid) == 0:
            raise SplitError(
                f"fold {k}: {len(train)} training and {len(valid)} validation rows; the span is "
                f"too short for {n_folds} folds with an embargo of {embargo_s:.0f} s"
            )
        folds.append(Fold(k, train, valid, start - embargo_s, start, end))
    return SplitPlan(folds, dev, test, test_start, embargo_s)


def tail_split(
    times: np.ndarray, *, fraction: float = 0.2, embargo_s: float = 360.0
) -> tuple[np.ndarray, np.ndarray]:
    """Positions to fit on and the embargoed tail to stop early or tune on, by time.

    The tail is the last ``fraction`` of the rows; rows within ``embargo_s`` before it are in
    neither part. The tail belongs to the training part it is cut from, never to the part the
    candidates are ranked on. With too few rows for both parts, everything is fit on and the
    tail is empty (callers then train without early stopping).
    """
    times = np.asarray(times, dtype=float)
    positions = np.arange(len(times))
    if len(times) == 0 or not 0.0 < fraction < 1.0:
        return positions, positions[:0]
    start = float(np.quantile(times, 1.0 - fraction))
    fit, tail = positions[times < start - embargo_s], positions[times >= start]
    if len(fit) == 0 or len(tail) == 0:
        return positions, positions[:0]
    return fit, tail


# -------------------------------------------------------------------------------------- metrics


def _clean(y: Sequence[float], score: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    if y.shape != score.shape:
        raise ValueError(f"labels {y.shape} and scores {score.shape} differ in shape")
    if np.isnan(y).any():
        raise ValueError("labels contain NaN: drop unlabelled rows first")
    if not np.isfinite(score).all():
        raise ValueError("scores contain NaN or inf: every scorer must return finite scores")
    return y, score


def is_degenerate(y: Sequence[float]) -> bool:
    """True when ranking metrics are undefined: no rows, no positives, or no negatives."""
    y = np.asarray(y, dtype=float)
    positives = int((y == 1).sum())
    return positives == 0 or positives == len(y)


def ranking_metrics(y: Sequence[float], score: Sequence[float]) -> dict:
    """PR-AUC (average precision) and ROC-AUC for any score; ``None`` on a degenerate part."""
    y, score = _clean(y, score)
    positives = int((y == 1).sum())
    out = {
        "rows": len(y),
        "positives": positives,
        "positive_rate": positives / len(y) if len(y) else None,
        "degenerate": is_degenerate(y),
        "pr_auc": None,
        "roc_auc": None,
    }
    if not out["degenerate"]:
        out["pr_auc"] = float(average_precision_score(y, score))
        out["roc_auc"] = float(roc_auc_score(y, score))
    return out


def average_precision(y: np.ndarray, score: np.ndarray) -> float | None:
    """PR-AUC (average precision) as scikit-learn computes it, ties included; fast enough for
    bootstrap replicates. ``None`` on a degenerate part."""
    y, score = _clean(y, score)
    positives = float(y.sum())
    if is_degenerate(y):
        return None
    order = np.argsort(-score, kind="mergesort")
    ranked, hits = score[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(hits)[last_of_tie]
    precision = tps / (last_of_tie + 1)
    recall_steps = np.diff(np.r_[0.0, tps]) / positives
    return float(np.sum(recall_steps * precision))


def probability_metrics(y: Sequence[float], p: Sequence[float]) -> dict:
    """Brier score and log loss of probabilities (defined even with one class present)."""
    y, p = _clean(y, p)
    if len(y) == 0:
        return {"brier": None, "log_loss": None}
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    log_loss = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    return {"brier": float(np.mean((p - y) ** 2)), "log_loss": float(log_loss)}


def threshold_metrics(y: Sequence[float], p: Sequence[float], threshold: float) -> dict:
    """Precision and recall when flagging ``p >= threshold``; ``None`` where undefined."""
    y, p = _clean(y, p)
    flagged = p >= threshold
    n_flagged = int(flagged.sum())
    positives = int((y == 1).sum())
    hits = int((flagged & (y == 1)).sum())
    return {
        "threshold": float(threshold),
        "flagged_rate": n_flagged / len(y) if len(y) else None,
        "precision": hits / n_flagged if n_flagged else None,
        "recall": hits / positives if positives else None,
    }


def classifier_metrics(y: Sequence[float], p: Sequence[float], threshold: float) -> dict:
    """Everything reported for a probability model on one part."""
    return {
        **ranking_metrics(y, p),
        **probability_metrics(y, p),
        **threshold_metrics(y, p, threshold),
    }


def choose_threshold(
    y: Sequence[float], p: Sequence[float], *, min_precision: float | None = None
) -> float:
    """The operating threshold: the one maximising F1, or the lowest reaching ``min_precision``.

    Chosen on validation predictions only. Falls back to the 90th percentile of ``p`` when the
    labels have no positives (no F1 exists then).
    """
    y, p = _clean(y, p)
    if len(y) == 0:
        raise ValueError("no rows to choose a threshold on")
    if is_degenerate(y):
        return float(np.quantile(p, 0.9))
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]
    if min_precision is not None:
        ok = np.flatnonzero(precision >= min_precision)
        if len(ok):
            return float(thresholds[ok[0]])
    f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall + 1e-12), 0)
    return float(thresholds[int(np.argmax(f1))])


def calibration_table(y: Sequence[float], p: Sequence[float], n_bins: int = 10) -> pd.DataFrame:
    """Rows per quantile bin of ``p``: mean predicted probability, observed spike rate, count."""
    y, p = _clean(y, p)
    frame = pd.DataFrame({"y": y, "p": p})
    if len(frame) == 0:
        return pd.DataFrame(columns=["mean_pred", "frac_pos", "count"])
    ranks = frame["p"].rank(method="first")
    frame["bin"] = pd.qcut(ranks, q=min(n_bins, len(frame)), labels=False)
    table = frame.groupby("bin").agg(
        mean_pred=("p", "mean"), frac_pos=("y", "mean"), count=("y", "size")
    )
    return table.reset_index(drop=True)


def expected_calibration_error(
    y: Sequence[float], p: Sequence[float], n_bins: int = 10
) -> float | None:
    """Count-weighted mean gap between predicted and observed rates over quantile bins."""
    table = calibration_table(y, p, n_bins)
    if table.empty:
        return None
    gaps = (table["mean_pred"] - table["frac_pos"]).abs()
    return float((gaps * table["count"]).sum() / table["count"].sum())


# ---------------------------------------------------------------------------- uncertainty


def time_blocks(times: np.ndarray, groups: np.ndarray, block_s: float = 300.0) -> np.ndarray:
    """A block number per row: consecutive ``block_s`` stretches of time within each group."""
    times = np.asarray(times, dtype=float)
    groups = np.asarray(groups)
    blocks = np.empty(len(times), dtype=np.int64)
    offset = 0
    for group in np.unique(groups):
        rows = groups == group
        local = np.floor((times[rows] - times[rows].min()) / block_s).astype(np.int64)
        _, dense = np.unique(local, return_inverse=True)
        blocks[rows] = dense + offset
        offset += int(dense.max()) + 1
    return blocks


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None

    def to_list(self) -> list[float | None]:
        return [self.low, self.high]


def bootstrap_pr_auc(
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    blocks: np.ndarray,
    strata: np.ndarray | None = None,
    *,
    references: tuple[str, ...] = (),
    n_boot: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> dict[str, dict[str, Interval]]:
    """Block-bootstrap intervals of every scorer's PR-AUC (and of its gap to each reference).

    Rows are resampled in whole time blocks (labels of neighbouring rows are not independent),
    within each stratum (a session keeps its share of the rows), and every scorer is judged on
    the same resampled rows. Replicates without a spike are skipped. Returns
    ``{"pr_auc": {name: Interval}, "minus_<reference>": {name: Interval}, ...}``.
    """
    y = np.asarray(y, dtype=float)
    blocks = np.asarray(blocks)
    strata = np.zeros(len(y), dtype=np.int64) if strata is None else np.asarray(strata)
    members = {}
    for block in np.unique(blocks):
        members[block] = np.flatnonzero(blocks == block)
    by_stratum = [np.unique(blocks[strata == s]) for s in np.unique(strata)]
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {name: [] for name in scores}
    gaps = {ref: {name: [] for name in scores if name != ref} for ref in references}
    for _ in range(n_boot if len(y) else 0):
        picks = [rng.choice(found, size=len(found), replace=True) for found in by_stratum]
        rows = np.concatenate([members[b] for chosen in picks for b in chosen])
        if is_degenerate(y[rows]):
            continue
        replicate = {name: average_precision(y[rows], s[rows]) for name, s in scores.items()}
        for name, value in replicate.items():
            values[name].append(value)
            for ref in references:
                if name != ref:
                    gaps[ref][name].append(value - replicate[ref])
    tail = (1.0 - level) / 2.0

    def interval(samples: list[float]) -> Interval:
        if len(samples) < 20:
            return Interval(None, None)
        low, high = np.quantile(samples, [tail, 1.0 - tail])
        return Interval(float(low), float(high))

    out = {"pr_auc": {name: interval(v) for name, v in values.items()}}
    for ref in references:
        out[f"minus_{ref}"] = {name: interval(v) for name, v in gaps[ref].items()}
    return out


# ---------------------------------------------------------------------------- fold reporting


@dataclass
class FoldResult:
    """One scorer on one fold's validation part."""

    fold: int
    metrics: dict

    @property
    def degenerate(self) -> bool:
        return bool(self.metrics.get("degenerate"))


@dataclass
class FoldSummary:
    """Mean, spread and range of a metric over the non-degenerate folds, and how many were not."""

    metric: str
    values: list[float | None] = field(default_factory=list)
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    n_used: int = 0
    n_degenerate: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_folds(results: Sequence[FoldResult], metric: str = "pr_auc") -> FoldSummary:
    """Aggregate ``metric`` over folds; degenerate folds are counted and excluded, not averaged."""
    values = [None if r.degenerate else r.metrics.get(metric) for r in results]
    used = [v for v in values if v is not None and math.isfinite(v)]
    summary = FoldSummary(metric, values=values, n_used=len(used))
    summary.n_degenerate = sum(1 for r in results if r.degenerate)
    if used:
        arr = np.asarray(used)
        summary.mean = float(arr.mean())
        summary.std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        summary.min = float(arr.min())
        summary.max = float(arr.max())
    return summary
