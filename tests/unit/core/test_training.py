"""The training pipeline on synthetic data: sessions left out, selection, final fit, test."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from synthetic_frames import synthetic_dataset, synthetic_sessions

from tasks.core.evaluation import epoch_seconds
from tasks.core.models import CANDIDATES, INPUT_FAMILIES
from tasks.core.training import (
    BLEND_WEIGHTS,
    TrainConfig,
    TrainingError,
    fit_training_part,
    select_candidate,
    select_for_worst_day,
    train,
    with_missing_inputs,
)

BASELINE_NAMES = ("persistence", "zscore")
QUICK = dict(n_folds=3, bootstrap_samples=50, missing_report=False)


@pytest.fixture(scope="module")
def sessions() -> pd.DataFrame:
    """Three sessions two hours apart; the middle one 2.5 times as volatile."""
    return synthetic_sessions(levels=(1.0, 2.5, 1.0), seconds=2400)


@pytest.fixture(scope="module")
def one_session() -> pd.DataFrame:
    return synthetic_dataset(seconds=3600)


@pytest.fixture(scope="module")
def result(sessions):
    return train(sessions, TrainConfig(n_folds=3, bootstrap_samples=50))


def test_every_session_is_left_out_and_judged_on_the_same_rows(result):
    summary = json.loads(json.dumps(result.summary()))
    loso = summary["sessions"]
    assert [f["session"] for f in loso["folds"]] == [s["session"] for s in loso["sessions"]]
    assert len(loso["sessions"]) >= 2
    for fold in loso["folds"]:
        assert fold["train_rows"] > 0 and fold["test_rows"] >= 600
    pooled = loso["pooled"]
    assert pooled["rows"] == sum(s["rows"] for s in loso["sessions"])
    assert set(pooled["pr_auc"]) == {*CANDIDATES, "persistence", "zscore"}
    for scorer, (low, high) in pooled["interval"].items():
        assert low <= pooled["pr_auc"][scorer] <= high or np.isclose(low, high)
    assert set(pooled["minus_persistence"]) == {*CANDIDATES, "zscore"}
    # each held-out session is labelled with a tau fitted on the sessions it was not in
    assert all(s["tau"] > 0 for s in loso["sessions"])


def test_the_selected_model_never_ranks_below_a_baseline_where_it_is_judged(result):
    loso = result.sessions
    assert result.selected == loso["selected"]
    assert result.selected in (*CANDIDATES, "persistence", "zscore")
    pooled = loso["pooled"]["pr_auc"]
    assert pooled[result.selected] >= max(pooled["persistence"], pooled["zscore"])
    for figures in loso["sessions"]:
        if figures["enough"]:
            for baseline in ("persistence", "zscore"):
                assert figures["pr_auc"][result.selected] >= figures["pr_auc"][baseline]


def test_a_scale_free_model_carries_over_where_levels_differ(result):
    """The volatile middle session, left out, is where a level-bound model breaks down."""
    pooled = result.sessions["pooled"]["pr_auc"]
    assert pooled["har_rv"] > pooled["persistence"]
    assert result.summary()["test"]["pr_auc"] > result.summary()["test"]["positive_rate"]


def _judged(pr_by_session: list[dict], pooled: dict, enough=(True, True)) -> dict:
    sessions = [
        {"session": i, "enough": e, "degenerate": False, "pr_auc": pr}
        for i, (pr, e) in enumerate(zip(pr_by_session, enough, strict=True))
    ]
    return {"sessions": sessions, "pooled": {"degenerate": False, "pr_auc": pooled}}


def test_selection_refuses_a_candidate_below_persistence_in_a_judged_session():
    base = {"persistence": 0.5, "zscore": 0.2}
    judged = _judged(
        [
            {**base, "har_logistic": 0.6, "har_rv": 0.7},
            {**base, "har_logistic": 0.6, "har_rv": 0.4},
        ],
        {**base, "har_logistic": 0.6, "har_rv": 0.8},
    )
    pick, why = select_candidate(judged, ("har_logistic", "har_rv"), 0.005)
    assert pick == "har_logistic"
    assert why["below_baselines"]["har_rv"][0]["where"] == "session 1"
    # the same shortfall in a session without enough spikes does not count
    lenient = _judged(
        [
            {**base, "har_logistic": 0.6, "har_rv": 0.7},
            {**base, "har_logistic": 0.6, "har_rv": 0.4},
        ],
        {**base, "har_logistic": 0.6, "har_rv": 0.8},
        enough=(True, False),
    )
    assert select_candidate(lenient, ("har_logistic", "har_rv"), 0.005)[0] == "har_rv"


def test_selection_falls_back_to_the_better_baseline_and_prefers_the_simpler_model():
    base = {"persistence": 0.5, "zscore": 0.55}
    judged = _judged([{**base, "stack": 0.4}] * 2, {**base, "stack": 0.45})
    assert select_candidate(judged, ("stack",), 0.005)[0] == "zscore"
    close = _judged(
        [{**base, "har_logistic": 0.6, "stack": 0.603}] * 2,
        {**base, "har_logistic": 0.6, "stack": 0.603},
    )
    assert select_candidate(close, ("har_logistic", "stack"), 0.005)[0] == "har_logistic"


def _days(pr_by_day: list[dict], pooled: dict) -> dict:
    days = [
        {"session": f"2025-12-0{i + 1}", "enough": True, "degenerate": False, "pr_auc": pr}
        for i, pr in enumerate(pr_by_day)
    ]
    return {"sessions": days, "pooled": {"degenerate": False, "pr_auc": pooled}}


def test_a_candidate_losing_badly_on_one_day_is_not_selected_despite_the_best_pooled():
    base = {"persistence": 0.5, "zscore": 0.3}
    judged = _days(
        [
            {**base, "har_vol": 0.52, "har_rv": 0.9},
            {**base, "har_vol": 0.51, "har_rv": 0.3},  # har_rv: -0.2 on this day
        ],
        {**base, "har_vol": 0.55, "har_rv": 0.8},
    )
    pick, why = select_for_worst_day(judged, ("har_vol", "har_rv"), 0.005)
    assert pick == "har_vol"
    assert why["worst_day_gap"]["har_rv"] == pytest.approx(-0.2)
    assert why["worst_day_gap"]["har_vol"] == pytest.approx(0.01)


def test_worst_day_selection_keeps_persistence_and_prefers_the_simpler_on_a_tie():
    base = {"persistence": 0.5, "zscore": 0.3}
    behind = _days([{**base, "har_rv": 0.6}, {**base, "har_rv": 0.45}], {**base, "har_rv": 0.7})
    assert select_for_worst_day(behind, ("har_rv",), 0.005)[0] == "persistence"
    # equal worst days: the pooled figure decides, but only by more than min_gain
    tie = _days(
        [{**base, "har_vol": 0.55, "blend": 0.553}] * 2, {**base, "har_vol": 0.6, "blend": 0.603}
    )
    assert select_for_worst_day(tie, ("har_vol", "blend"), 0.005)[0] == "har_vol"
    pooled_wins = _days(
        [{**base, "har_vol": 0.55, "blend": 0.553}] * 2, {**base, "har_vol": 0.6, "blend": 0.65}
    )
    assert select_for_worst_day(pooled_wins, ("har_vol", "blend"), 0.005)[0] == "blend"


def test_days_are_left_out_with_a_tau_from_the_other_days_and_select_the_model():
    days = synthetic_sessions(levels=(1.0, 2.5, 1.0), seconds=2400, gap_s=86400)
    result = train(days, TrainConfig(**QUICK, candidates=("har_vol", "har_rv", "blend")))
    summary = json.loads(json.dumps(result.summary()))["days"]
    names = ["2026-01-01", "2026-01-02", "2026-01-03"]  # the third up to the test part
    assert [f["session"] for f in summary["folds"]] == names
    held = summary["sessions"]
    assert [d["session"] for d in held] == names
    # each day labelled by the other days' tau: the volatile day by the calm days' lower one
    assert 0 < held[1]["tau"] < min(held[0]["tau"], held[2]["tau"])
    assert set(summary["pooled"]["pr_auc"]) == {"har_vol", "har_rv", "blend", *BASELINE_NAMES}
    gaps = summary["selection"]["worst_day_gap"]
    assert result.selected == summary["selected"]
    assert gaps[result.selected] >= max(gaps.values()) - 0.005


def test_the_blend_weight_is_learned_on_held_out_days():
    days = synthetic_sessions(levels=(1.0, 2.5, 1.0), seconds=1800, gap_s=86400)
    rows = days[days["fwd_vol_60"].notna()]
    part = fit_training_part(rows, ("har_rv", "persistence", "blend"), TrainConfig(**QUICK))
    weight = part.chosen["blend.weight"]
    assert weight in BLEND_WEIGHTS and part.scorers["blend"].weight == weight
    assert part.scorers["blend"].model is part.scorers["har_rv"]


def test_the_blend_weight_skips_held_out_days_with_nothing_to_learn_from():
    """A relative label needs 15 minutes of trailing history: days without it hold no
    labelled row, and a model fitted on none of them scored NaN."""
    days = synthetic_sessions(levels=(1.0, 2.5, 1.0), seconds=1800, gap_s=86400)
    third_day = days["ts"] >= days["ts"].min() + pd.Timedelta(days=2)
    days.loc[~third_day, "trail_vol_900"] = np.nan
    config = TrainConfig(**QUICK, label_mode="relative", k=1.5)
    part = fit_training_part(days, ("har_rv", "persistence", "blend"), config)
    assert part.chosen["blend.weight"] in BLEND_WEIGHTS
    rows, _ = part.spec.labelled(days)
    assert np.isfinite(part.scorers["blend"].predict_proba(rows)).all()


def test_one_session_means_carry_over_is_not_measured_and_says_so(one_session):
    result = train(one_session, TrainConfig(**QUICK))
    assert "pooled" not in result.sessions
    assert any("fewer than two sessions" in note for note in result.notes)
    assert result.selected in (*CANDIDATES, "persistence", "zscore")


def test_tuning_and_early_stopping_use_the_training_part_only(one_session):
    config = TrainConfig(**QUICK, candidates=("har_logistic", "har_rv", "xgboost"))
    train_rows = one_session[one_session["fwd_vol_60"].notna()]
    part = fit_training_part(train_rows, ("har_logistic", "har_rv", "xgboost"), config)
    assert part.chosen["har_logistic.C"] in (0.1, 1.0, 10.0)
    assert part.chosen["har_rv.alpha"] in (1.0, 30.0, 1000.0)
    assert part.rounds["xgboost"] < config.xgboost.n_estimators
    fixed = fit_training_part(train_rows, ("har_rv",), config, hyper={"har_rv": {"alpha": 1000.0}})
    assert fixed.chosen == {"har_rv.alpha": 1000.0}


def test_missing_input_copies_blank_one_family_each():
    frame = synthetic_dataset(seconds=600)
    y = np.arange(len(frame)) % 2.0
    rows, labels = with_missing_inputs(frame, y, 0.5, seed=0)
    assert len(rows) == len(labels) > len(frame)
    extra = rows.iloc[len(frame) :]
    for columns in INPUT_FAMILIES.values():
        blank = extra[list(columns)].isna().all(axis=1)
        assert blank.sum() > 0, columns
    assert with_missing_inputs(frame, y, 0.0, seed=0)[0] is frame


def test_the_missing_input_report_blanks_each_family(sessions):
    config = TrainConfig(n_folds=3, bootstrap_samples=0, candidates=("har_rv",))
    result = train(sessions, config)
    report = result.sessions["missing_inputs"]
    assert set(report) == {"intact", *INPUT_FAMILIES}
    selected = result.selected
    assert selected == "har_rv"
    # persistence cannot score without the tick volatility it is made of: it falls to chance
    tick = report["tick_volatility"]
    assert tick["drop"]["persistence"] < 0
    for family in INPUT_FAMILIES:
        figures = report[family]
        assert figures["pr_auc"][selected] is not None
        assert figures["retrained_without"] is not None


def test_training_reports_folds_without_spikes_instead_of_hiding_them(one_session):
    calm = one_session.copy()
    late = calm["ts"] > calm["ts"].min() + pd.Timedelta(seconds=1500)
    calm.loc[late, "fwd_vol_60"] = 1e-9  # after 25 min nothing moves: no spike can exist
    config = TrainConfig(**QUICK, tau_window_s=None, candidates=("har_logistic",))
    result = train(calm, config)
    degenerate = result.reports["har_logistic"].summaries["pr_auc"].n_degenerate
    assert degenerate >= 1
    assert any("degenerate" in note for note in result.notes)
    assert result.test_metrics["model"]["pr_auc"] is None
    assert result.summary()["test"]["degenerate"] is True


def test_shuffled_labels_give_a_degraded_model_that_is_registered_unselected(sessions):
    """The drill trains the HAR logistic, whatever the candidates: it ranks by what it learned
    from the labels (an anchored HAR-RV ranks by the volatility level whatever the labels)."""
    config = TrainConfig(**QUICK, candidates=("har_rv",), shuffle_labels=True)
    result = train(sessions, config)
    assert result.selected == "har_logistic" and result.predictor.info["degraded"] is True
    assert any("shuffled" in note for note in result.notes)
    honest = train(sessions, TrainConfig(**QUICK, candidates=("har_logistic",)))
    assert result.test_metrics["model"]["pr_auc"] < honest.test_metrics["model"]["pr_auc"]


def test_too_short_data_is_refused(one_session):
    short = one_session[one_session["ts"] < one_session["ts"].min() + pd.Timedelta(seconds=600)]
    with pytest.raises(TrainingError, match="too short"):
        train(short, TrainConfig())


def test_the_missing_input_report_of_a_selected_blend(sessions):
    """The blend is made of a model and persistence, a baseline: its retrained parts must keep
    persistence (they raised KeyError: 'persistence')."""
    from tasks.core.sessions import leave_one_session_out
    from tasks.core.training import _missing_input_report

    config = TrainConfig(n_folds=3, bootstrap_samples=0, candidates=("blend",))
    rows = sessions.sort_values(["ts", "product_id"], kind="stable").reset_index(drop=True)
    rows = rows[rows["fwd_vol_60"].notna()].reset_index(drop=True)
    times = epoch_seconds(rows["ts"])
    folds = leave_one_session_out(
        times, gap_s=config.session_gap_s, embargo_s=config.embargo, min_rows=600
    )
    kinds = ("har_rv", "persistence", "blend", "zscore")
    fitted = [fit_training_part(rows.iloc[f.train], kinds, config) for f in folds]
    report = _missing_input_report(folds, rows, fitted, "blend", config)
    assert set(report) == {"intact", *INPUT_FAMILIES}
    for family in INPUT_FAMILIES:
        assert report[family]["retrained_without"] is not None
