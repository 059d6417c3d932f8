"""The model earns its place on the real Coinbase recordings: time-split, it beats both baselines
on the same held-out rows. Skips when ../shared/data is absent."""

from __future__ import annotations

import math

import pytest

from tasks.core.training import train
from tasks.stages.data import load_frame

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


@pytest.fixture(scope="module")
def result(shared_recordings, tmp_path_factory):
    frame, _ = load_frame([str(p) for p in shared_recordings], tmp_path_factory.mktemp("cache"))
    return train(frame)


def test_model_beats_both_baselines_on_the_same_held_out_rows(result):
    test = result.summary()["test"]
    assert not test["degenerate"]
    assert 0.05 < test["positive_rate"] < 0.3
    assert test["pr_auc"] > test["persistence_pr_auc"]
    assert test["pr_auc"] > test["baseline_pr_auc"]
    # every scorer was judged on the very same rows
    scores = result.test_scores
    assert {"y", "model", "zscore", "persistence"} <= set(scores.columns)
    assert scores[["model", "zscore", "persistence"]].notna().all().all()


def test_split_is_in_time_with_an_embargo_and_folds_never_fake_a_metric(result):
    split = result.summary()["split"]
    assert split["embargo_s"] >= 300 + 60
    for report in result.reports.values():
        for fold in report.folds:
            value = fold.metrics["pr_auc"]
            if fold.metrics["degenerate"]:
                assert value is None
            else:
                assert value is not None and math.isfinite(value) and value < 1.0
