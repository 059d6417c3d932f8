"""Walk-forward splits, metrics on degenerate parts, threshold choice, fold summaries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from tasks.core.evaluation import (
    FoldResult,
    SplitError,
    average_precision,
    bootstrap_pr_auc,
    choose_threshold,
    classifier_metrics,
    epoch_seconds,
    expected_calibration_error,
    ranking_metrics,
    summarize_folds,
    tail_split,
    threshold_metrics,
    time_blocks,
    walk_forward_splits,
)


def _times(seconds: int, products: int = 2) -> np.ndarray:
    return np.repeat(np.arange(seconds, dtype=float), products) + 1.7e9


def test_epoch_seconds_ignores_timestamp_resolution():
    ts = pd.Series(pd.to_datetime(["2026-01-01T00:00:01.000Z", "2026-01-01T00:00:02.500Z"]))
    for unit in ("ns", "us", "ms"):
        assert epoch_seconds(ts.astype(f"datetime64[{unit}, UTC]")).tolist() == [
            1767225601.0,
            1767225602.5,
        ]


def test_walk_forward_folds_are_ordered_and_embargoed():
    times = _times(7200)
    plan = walk_forward_splits(times, n_folds=4, test_fraction=0.2, embargo_s=360)
    assert len(plan.folds) == 4
    test_times = times[plan.test]
    assert times[plan.dev].max() < test_times.min() - 360
    previous_valid_end = -math.inf
    for fold in plan.folds:
        train, valid = times[fold.train], times[fold.valid]
        assert train.max() < valid.min() - 360, "embargo between training and validation"
        assert valid.min() >= previous_valid_end, "validation blocks move forward in time"
        assert valid.max() < test_times.min()
        assert not set(fold.train) & set(fold.valid)
        previous_valid_end = valid.max()
    sizes = [len(f.train) for f in plan.folds]
    assert sizes == sorted(sizes), "expanding window"


def test_rows_of_one_second_never_straddle_parts():
    times = _times(3600, products=3)
    plan = walk_forward_splits(times, n_folds=3, test_fraction=0.25, embargo_s=360)
    for fold in plan.folds:
        assert not set(times[fold.train]) & set(times[fold.valid])
    assert not set(times[plan.dev]) & set(times[plan.test])


def test_too_short_data_is_refused_with_a_reason():
    with pytest.raises(SplitError, match="too short"):
        walk_forward_splits(_times(600), n_folds=4, embargo_s=360)
    with pytest.raises(SplitError):
        walk_forward_splits(np.array([]), n_folds=2)


@pytest.mark.parametrize("labels", [np.zeros(50), np.ones(50)])
def test_one_class_part_is_degenerate_not_nan_or_one(labels):
    scores = np.linspace(0, 1, 50)
    metrics = classifier_metrics(labels, scores, 0.5)
    assert metrics["degenerate"] is True
    assert metrics["pr_auc"] is None and metrics["roc_auc"] is None
    assert metrics["brier"] is not None and math.isfinite(metrics["brier"])


def test_ranking_metrics_on_known_cases():
    y = np.array([0, 0, 0, 1, 0, 1, 0, 0, 1, 0], dtype=float)
    assert ranking_metrics(y, y)["pr_auc"] == pytest.approx(1.0)
    assert ranking_metrics(y, y)["roc_auc"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    big_y = (rng.random(20000) < 0.1).astype(float)
    random_metrics = ranking_metrics(big_y, rng.random(20000))
    assert random_metrics["pr_auc"] == pytest.approx(0.1, abs=0.02)
    assert random_metrics["roc_auc"] == pytest.approx(0.5, abs=0.03)
    assert random_metrics["positive_rate"] == pytest.approx(big_y.mean())


def test_nan_scores_or_labels_are_refused():
    with pytest.raises(ValueError, match="scores"):
        ranking_metrics([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="labels"):
        ranking_metrics([0, np.nan], [0.1, 0.2])


def test_threshold_metrics_undefined_cases_are_none():
    out = threshold_metrics([0, 0, 1], [0.1, 0.2, 0.3], threshold=0.9)
    assert out["precision"] is None and out["recall"] == 0.0 and out["flagged_rate"] == 0.0
    out = threshold_metrics([0, 0, 0], [0.1, 0.2, 0.95], threshold=0.9)
    assert out["recall"] is None and out["precision"] == 0.0


def test_choose_threshold_maximises_f1_or_reaches_precision():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1], dtype=float)
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    threshold = choose_threshold(y, p)
    assert threshold == pytest.approx(0.5)  # flags 4 rows with 3 spikes: F1 = 6/7
    strict = choose_threshold(y, p, min_precision=1.0)
    assert strict == pytest.approx(0.7)
    assert choose_threshold(np.zeros(8), p) == pytest.approx(np.quantile(p, 0.9))


def test_summary_excludes_and_counts_degenerate_folds():
    folds = [
        FoldResult(1, {"pr_auc": 0.2, "degenerate": False}),
        FoldResult(2, {"pr_auc": None, "degenerate": True}),
        FoldResult(3, {"pr_auc": 0.4, "degenerate": False}),
    ]
    summary = summarize_folds(folds)
    assert summary.mean == pytest.approx(0.3)
    assert summary.n_degenerate == 1 and summary.n_used == 2
    assert summary.values == [0.2, None, 0.4]
    empty = summarize_folds([FoldResult(1, {"pr_auc": None, "degenerate": True})])
    assert empty.mean is None and empty.n_degenerate == 1


def test_expected_calibration_error():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.4, 50000)
    y = (rng.random(50000) < p).astype(float)
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, np.clip(p * 2, 0, 1)) > 0.1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=60).filter(
        lambda rows: 0 < sum(y for y, _ in rows) < len(rows)
    )
)
def test_average_precision_is_scikit_learns_ties_included(rows):
    y = np.array([float(label) for label, _ in rows])
    score = np.array([s / 3.0 for _, s in rows])  # few distinct values: many ties
    assert average_precision(y, score) == pytest.approx(average_precision_score(y, score))


def test_average_precision_is_none_on_a_degenerate_part():
    assert average_precision(np.zeros(5), np.arange(5.0)) is None


def test_the_tail_is_the_latest_rows_behind_an_embargo():
    times = _times(3600)
    fit, tail = tail_split(times, fraction=0.2, embargo_s=360)
    assert times[fit].max() < times[tail].min() - 360
    assert len(tail) == pytest.approx(0.2 * len(times), rel=0.01)
    assert not set(fit) & set(tail)
    everything, none = tail_split(times[:10], fraction=0.2, embargo_s=360)
    assert len(everything) == 10 and len(none) == 0, "too short for a tail: fit on all"


def test_time_blocks_never_span_two_groups():
    times = np.concatenate([np.arange(900.0), np.arange(900.0) + 5000])
    groups = np.repeat([0, 1], 900)
    blocks = time_blocks(times, groups, block_s=300)
    assert len(set(blocks)) == 6
    for block in set(blocks):
        assert len(set(groups[blocks == block])) == 1


def test_bootstrap_intervals_hold_the_estimate_and_are_wider_in_blocks_when_spikes_burst():
    """Spikes come in bursts, and a scorer is right or wrong about a whole burst at once:
    resampling single rows would pretend to far more independent evidence than there is."""
    rng = np.random.default_rng(3)
    times = np.arange(12000.0)
    burst = np.repeat(rng.random(200) < 0.15, 60)  # 60 s bursts
    quality = np.repeat(rng.standard_normal(200), 60)  # how well a burst is foreseen
    y = burst.astype(float)
    scores = {
        "good": y * (1 + quality) + 0.5 * rng.standard_normal(len(y)),
        "noise": rng.standard_normal(len(y)),
    }
    point = {k: average_precision(y, v) for k, v in scores.items()}
    zeros = np.zeros(len(y))
    blocks = bootstrap_pr_auc(y, scores, time_blocks(times, zeros, 300), references=("noise",))
    rows = bootstrap_pr_auc(y, scores, time_blocks(times, zeros, 1), references=("noise",))
    for name, value in point.items():
        assert blocks["pr_auc"][name].low < value < blocks["pr_auc"][name].high
    assert blocks["minus_noise"]["good"].low > 0
    width = {
        k: v["pr_auc"]["good"].high - v["pr_auc"]["good"].low
        for k, v in (("blocks", blocks), ("rows", rows))
    }
    assert width["blocks"] > 1.5 * width["rows"]
    again = bootstrap_pr_auc(y, scores, time_blocks(times, zeros, 300), references=("noise",))
    assert again == blocks, "seeded: the same intervals every time"
