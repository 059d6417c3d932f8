"""Live model quality: joining served predictions with labels, windows, figures; the label grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from synthetic_frames import START, synthetic_dataset

from tasks.core.evaluation import ranking_metrics, threshold_metrics
from tasks.core.labels import LabelSpec
from tasks.core.live_quality import (
    labelled_predictions,
    on_label_grid,
    quality,
    windowed_quality,
)
from tasks.core.models import ranking_baselines


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_dataset(seconds=7200, products=("BTC-USD", "ETH-USD"), seed=3)


@pytest.fixture(scope="module")
def label(frame) -> LabelSpec:
    return LabelSpec().fit(frame)


def served(frame: pd.DataFrame, threshold: float = 0.5, version: str = "3") -> pd.DataFrame:
    """One prediction per row, a score that tracks the label's input with noise."""
    rng = np.random.default_rng(0)
    signal = np.log(frame["realized_vol_60"].to_numpy()) + rng.normal(0, 1.0, len(frame))
    score = 1 / (1 + np.exp(-(signal - np.nanmedian(signal))))
    return pd.DataFrame(
        {
            "record_id": frame["record_id"],
            "product_id": frame["product_id"],
            "ts": frame["ts"],
            "score": score,
            "spike": score >= threshold,
            "threshold": threshold,
            "model_version": version,
        }
    )


def test_only_scored_rows_with_a_known_label_are_judged(frame, label):
    predictions = served(frame)
    unscored = frame["record_id"].iloc[::7]
    kept = predictions[~predictions["record_id"].isin(unscored)]
    duplicated = pd.concat([kept, kept.iloc[:50]])  # at-least-once delivery
    rows = labelled_predictions(frame, duplicated, label)
    labelled = frame[frame["fwd_vol_60"].notna()]
    assert len(rows) == (~labelled["record_id"].isin(unscored)).sum()
    assert not rows["record_id"].duplicated().any()
    assert rows["y"].isin([0.0, 1.0]).all()
    assert (rows["y"] == (rows["fwd_vol_60"] >= label.tau)).all()


def test_figures_are_the_offline_metrics_on_the_same_rows(frame, label):
    rows = labelled_predictions(frame, served(frame, threshold=0.6), label)
    figures = quality(rows)
    y, score = rows["y"].to_numpy(), rows["score"].to_numpy()
    baselines = ranking_baselines(rows)
    assert figures["pr_auc"] == ranking_metrics(y, score)["pr_auc"]
    assert figures["persistence_pr_auc"] == ranking_metrics(y, baselines["persistence"])["pr_auc"]
    assert figures["zscore_pr_auc"] == ranking_metrics(y, baselines["zscore"])["pr_auc"]
    at_threshold = threshold_metrics(y, score, 0.6)
    assert figures["precision"] == pytest.approx(at_threshold["precision"])
    assert figures["recall"] == pytest.approx(at_threshold["recall"])
    assert figures["spike_rate"] == pytest.approx(y.mean())
    assert figures["mean_score"] == pytest.approx(score.mean())
    assert figures["positives"] == int(y.sum()) and figures["rows"] == len(rows)
    assert figures["model_versions"] == ["3"]


def test_a_window_without_a_spike_has_no_pr_auc(frame, label):
    rows = labelled_predictions(frame, served(frame), label)
    calm = rows[rows["y"] == 0].head(500)
    figures = quality(calm)
    assert figures["pr_auc"] is None and figures["persistence_pr_auc"] is None
    assert figures["recall"] is None and figures["positives"] == 0


def test_windows_end_at_the_newest_labelled_row(frame, label):
    rows = labelled_predictions(frame, served(frame), label)
    windows = windowed_quality(rows)
    assert set(windows) == {"15m", "1h", "24h"}
    end = rows["ts"].max()
    assert windows["24h"]["rows"] == len(rows)  # two hours of data: all of it
    assert windows["1h"]["rows"] == (rows["ts"] > end - pd.Timedelta(hours=1)).sum()
    assert windows["15m"]["rows"] == (rows["ts"] > end - pd.Timedelta(minutes=15)).sum()
    assert windows["15m"]["end"] == windows["24h"]["end"] == end.isoformat()
    assert windowed_quality(rows.iloc[0:0]) == {}


def test_stream_records_go_on_the_label_grid():
    """The last record at or before each whole second, per product; nothing across a gap."""
    times = [0.2, 0.7, 1.0, 2.5, 2.6, 20.0, 21.5]  # 17.4 s of silence: a gap
    records = pd.DataFrame(
        {
            "product_id": ["BTC-USD"] * len(times) + ["ETH-USD"],
            "ts": [START + pd.Timedelta(seconds=t) for t in [*times, 0.5]],
            "record_id": [f"b{i}" for i in range(len(times))] + ["e0"],
        }
    ).iloc[::-1]  # in any order
    grid = on_label_grid(records)
    btc = grid[grid["product_id"] == "BTC-USD"]
    seconds = ((btc["ts"] - START) / pd.Timedelta(seconds=1)).tolist()
    assert seconds == [1.0, 2.0, 20.0, 21.0]  # no grid second inside the gap
    assert btc["record_id"].tolist() == ["b2", "b2", "b5", "b5"]
    assert grid[grid["product_id"] == "ETH-USD"].empty  # one tick never reaches a whole second
    assert on_label_grid(records.iloc[0:0]).empty
