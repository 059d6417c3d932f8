"""The model earns its place on the real Coinbase recordings: left out of a whole session (a
market regime it never saw), it ranks spikes better than persistence and the z-score on the same
rows, pooled and inside every session with enough spikes, and it keeps scoring when an input
family goes missing. Skips when ../shared/data is absent."""

from __future__ import annotations

import math

import pytest

from tasks.core.models import BASELINES, INPUT_FAMILIES
from tasks.core.training import TrainConfig, train
from tasks.stages.data import load_frame

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


@pytest.fixture(scope="module")
def frame(shared_recordings, tmp_path_factory):
    frame, _ = load_frame([str(p) for p in shared_recordings], tmp_path_factory.mktemp("cache"))
    return frame


@pytest.fixture(scope="module")
def result(frame):
    return train(frame)


def test_the_sessions_of_the_recordings_are_each_left_out(result):
    sessions = result.sessions
    # Dec 5 evening, Dec 6 night, Dec 6 morning (up to the test part)
    assert len(sessions["sessions"]) == 3
    for fold in sessions["folds"]:
        assert fold["train_rows"] > 1000 and fold["test_rows"] >= 600


def test_a_model_beats_persistence_on_sessions_it_never_saw(result):
    assert result.selected not in BASELINES
    pooled = result.sessions["pooled"]
    pr = pooled["pr_auc"]
    assert pr[result.selected] >= pr["persistence"] + 0.03
    assert pr[result.selected] > pr["zscore"]
    low, _ = pooled["minus_persistence"][result.selected]
    assert low > 0, "the lead over persistence holds in every block-bootstrap resample"
    for figures in result.sessions["sessions"]:
        if figures["enough"]:
            for baseline in BASELINES:
                assert figures["pr_auc"][result.selected] >= figures["pr_auc"][baseline]


def test_on_the_held_out_test_hour_it_beats_both_baselines(result):
    test = result.summary()["test"]
    assert not test["degenerate"]
    assert 0.05 < test["positive_rate"] < 0.3
    assert test["pr_auc"] > test["persistence_pr_auc"]
    assert test["pr_auc"] > test["baseline_pr_auc"]
    scores = result.test_scores
    assert {"y", "model", "zscore", "persistence"} <= set(scores.columns)
    assert scores[["model", "zscore", "persistence"]].notna().all().all()


def test_it_scores_as_well_as_the_remaining_inputs_allow(result):
    report = result.sessions["missing_inputs"]
    selected = result.selected
    assert set(report) == {"intact", *INPUT_FAMILIES}
    for family in INPUT_FAMILIES:
        figures = report[family]
        # within 0.05 of a model retrained without the family, and never below persistence
        assert figures["pr_auc"][selected] >= figures["retrained_without"] - 0.05, family
        assert figures["pr_auc"][selected] >= report["intact"]["persistence"], family
    # a feed without best bid/ask quantities (no imbalance) costs nothing
    assert abs(report["imbalance"]["drop"][selected]) < 0.01


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


def test_with_the_relative_label_it_beats_the_z_score(frame):
    relative = train(frame, TrainConfig(label_mode="relative", k=1.5, missing_report=False))
    assert relative.selected not in BASELINES
    pr = relative.sessions["pooled"]["pr_auc"]
    assert pr[relative.selected] >= pr["zscore"] + 0.03
    assert pr[relative.selected] >= pr["persistence"] + 0.03
