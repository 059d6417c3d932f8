"""Baselines, candidates and the served predictor, on synthetic data."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from synthetic_frames import VOLATILITY_COLUMNS, synthetic_dataset

from tasks.core.evaluation import ranking_metrics
from tasks.core.features import FEATURE_NAMES
from tasks.core.labels import LabelSpec
from tasks.core.models import (
    CANDIDATES,
    OPTIONAL_CANDIDATES,
    HarRvRegression,
    ModelFormatError,
    PriorShift,
    SpikePredictor,
    XGBoostParams,
    XGBoostSpike,
    feature_matrix,
    make_estimator,
    ranking_baselines,
)
from tasks.core.scorer import FitTarget

ALL_KINDS = ["zscore", "persistence", *CANDIDATES, *OPTIONAL_CANDIDATES]


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    return synthetic_dataset(seconds=3600)


@pytest.fixture(scope="module")
def split(dataset):
    """Training rows (first 60 %), then validation rows after a 360 s embargo, and the label's
    continuous target on the training rows (what a regression learns)."""
    rows = dataset[dataset["fwd_vol_60"].notna()]
    cut = rows["ts"].min() + pd.Timedelta(seconds=2100)
    train_rows = rows[rows["ts"] < cut]
    valid_rows = rows[rows["ts"] >= cut + pd.Timedelta(seconds=360)]
    spec = LabelSpec().fit(train_rows)
    return (
        feature_matrix(train_rows),
        spec.apply(train_rows).to_numpy(),
        feature_matrix(valid_rows),
        spec.apply(valid_rows).to_numpy(),
        FitTarget(spec.target_values(train_rows), spec.threshold_value),
    )


def _fit(kind: str, split, **params):
    X_train, y_train, X_valid, y_valid, target = split
    xgb = XGBoostParams(n_estimators=60, early_stopping_rounds=5)
    estimator = make_estimator(kind, xgb=xgb, **params)
    return estimator.fit(X_train, y_train, (X_valid, y_valid), target)


def test_feature_matrix_orders_columns_and_fills_missing_with_nan():
    frame = pd.DataFrame({"n": [3], "ret_std": [0.1], "unrelated": ["x"]})
    X = feature_matrix(frame)
    assert list(X.columns) == list(FEATURE_NAMES)
    assert X["n"].dtype == np.float64 and X.loc[0, "n"] == 3.0
    assert X.drop(columns=["n", "ret_std"]).isna().all().all()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_scorer_returns_probabilities_for_rows_with_missing_inputs(kind, split):
    X_valid = split[2]
    estimator = _fit(kind, split)
    sparse = pd.DataFrame({"realized_vol_60": [np.nan, 1e-4]}).reindex(columns=FEATURE_NAMES)
    for X in (X_valid, sparse, X_valid.iloc[:0]):
        p = estimator.predict_proba(X)
        assert p.shape == (len(X),)
        assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    assert isinstance(estimator.importance(), dict)


def test_baselines_rank_by_their_own_feature(split):
    X_train, y_train, X_valid, _, _ = split
    scores = ranking_baselines(X_valid)
    persistence = make_estimator("persistence").fit(X_train, y_train)
    complete = X_valid["realized_vol_60"].notna().to_numpy()
    order = np.argsort(X_valid["realized_vol_60"].to_numpy()[complete])
    assert np.all(np.diff(persistence.predict_proba(X_valid)[complete][order]) >= 0)
    assert np.all(np.diff(scores["persistence"][complete][order]) >= 0)
    ratio = X_valid["vol_ratio_60_300"].to_numpy()
    has_ratio = ~np.isnan(ratio)
    z_order = np.argsort(ratio[has_ratio])
    assert np.all(np.diff(scores["zscore"][has_ratio][z_order]) >= 0)


def test_a_baseline_never_flips_its_direction():
    X = pd.DataFrame({"vol_ratio_60_300": np.linspace(0.5, 2.0, 400)})
    y = (X["vol_ratio_60_300"] < 0.8).astype(float).to_numpy()  # spikes when the ratio is LOW
    z = make_estimator("zscore").fit(X, y)
    p = z.predict_proba(X)
    assert np.all(np.diff(p) >= 0), "higher z-score may never mean a lower spike probability"


@pytest.mark.parametrize("kind", ["har_logistic", "har_rv", "stack", "xgboost"])
def test_models_beat_chance_where_there_is_signal(kind, split):
    X_valid, y_valid = split[2], split[3]
    p = _fit(kind, split).predict_proba(X_valid)
    assert ranking_metrics(y_valid, p)["pr_auc"] > 2 * y_valid.mean()


def test_har_rv_carries_over_to_a_market_three_times_as_volatile(split):
    """Scale-free: every volatility (and the forward one) times 3 moves the predicted log
    volatility by log 3 exactly, so P(forward >= 3 tau) is what P(forward >= tau) was."""
    X_valid = split[2].copy()
    X_valid[["range_bps_30", "range_bps_60", "range_bps_300"]] = np.nan  # noise, not ranges here
    model = _fit("har_rv", split)
    louder = X_valid.copy()
    louder[[c for c in VOLATILITY_COLUMNS if c in louder]] *= 3.0
    shifted = HarRvRegression.from_params(model.to_params({}), {})
    shifted.log_threshold += math.log(3.0)
    np.testing.assert_allclose(
        shifted.predict_proba(louder), model.predict_proba(X_valid), atol=1e-9
    )
    # a classifier on log levels has no such property: it calls the louder market all spikes
    har = _fit("har_logistic", split)
    assert har.predict_proba(louder).mean() > 2 * har.predict_proba(X_valid).mean()


def test_har_rv_probability_falls_as_the_threshold_rises(split):
    X_valid = split[2]
    model = _fit("har_rv", split)
    low = model.predict_proba(X_valid)
    model.log_threshold += 0.5
    assert (
        np.all(model.predict_proba(X_valid) <= low)
        and model.predict_proba(X_valid).mean() < low.mean()
    )


def test_har_rv_needs_the_forward_volatility(split):
    X_train, y_train = split[0], split[1]
    with pytest.raises(ValueError, match="FitTarget"):
        make_estimator("har_rv").fit(X_train, y_train)


def test_har_rv_scores_from_the_inputs_that_remain(split):
    """Without its first anchor (the 300 s grid volatility) the next one stands in."""
    X_valid, y_valid = split[2], split[3]
    model = _fit("har_rv", split)
    blanked = X_valid.copy()
    blanked[["realized_vol_1s_300", "realized_vol_1s_60"]] = np.nan
    full = ranking_metrics(y_valid, model.predict_proba(X_valid))["pr_auc"]
    partial = ranking_metrics(y_valid, model.predict_proba(blanked))["pr_auc"]
    assert partial > 2 * y_valid.mean() and partial > full - 0.15


def test_xgboost_stops_early_on_its_tail_and_trains_fixed_rounds_without(split):
    X_train, y_train, X_valid, y_valid, _ = split
    params = XGBoostParams(n_estimators=400, early_stopping_rounds=10)
    stopped = XGBoostSpike(params).fit(X_train, y_train, (X_valid, y_valid))
    assert stopped.early_stopped and 1 <= stopped.best_rounds < 400
    assert stopped.booster.num_boosted_rounds() == stopped.best_rounds  # only the kept trees
    fixed = XGBoostSpike(XGBoostParams(n_estimators=25)).fit(X_train, y_train, None)
    assert not fixed.early_stopped and fixed.booster.num_boosted_rounds() == 25


@pytest.mark.parametrize("kind", ["har_logistic", "xgboost", "random_forest", "zscore"])
def test_one_class_training_data_gives_a_constant_not_a_crash(kind, split):
    X_train, _, X_valid, _, _ = split
    p = make_estimator(kind).fit(X_train, np.zeros(len(X_train))).predict_proba(X_valid)
    assert np.isfinite(p).all() and p.max() <= 0.01


def test_prior_shift_moves_the_mean_probability_but_not_the_ranking(split):
    X_valid = split[2]
    base = _fit("har_logistic", split)
    shifted = PriorShift.to_rate(base, X_valid, 0.05)
    p_base, p_shifted = base.predict_proba(X_valid), shifted.predict_proba(X_valid)
    assert p_shifted.mean() == pytest.approx(0.05, abs=1e-4)
    assert np.array_equal(np.argsort(p_base, kind="stable"), np.argsort(p_shifted, kind="stable"))


def test_predictor_serves_probabilities_and_describes_itself(split):
    label = LabelSpec(tau=0.01).to_dict()
    predictor = SpikePredictor("har_rv", _fit("har_rv", split), label, 0.3)
    rows = pd.DataFrame([{"ret_mean": 0.05, "ret_std": 0.01, "n": 50}])
    p = predictor.predict_proba(rows)
    assert p.shape == (1,) and 0.0 <= p[0] <= 1.0
    assert predictor.flags(rows).dtype == bool
    meta = json.loads(json.dumps(predictor.metadata()))
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert meta["label"]["tau"] == 0.01 and meta["threshold"] == 0.3


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_predictor_is_stored_as_data_and_scores_identically_when_rebuilt(kind, split):
    X_valid = split[2]
    estimator = PriorShift.to_rate(_fit(kind, split), X_valid, 0.1)
    info = {"train_end": "2026-01-01T00:35:00+00:00", "degraded": False}
    predictor = SpikePredictor(kind, estimator, LabelSpec(tau=0.01).to_dict(), 0.3, info=info)
    document, blobs = predictor.to_document()
    text = json.dumps(document, allow_nan=False)  # plain JSON: no object, no NaN
    for data in blobs.values():
        assert not data.startswith(b"\x80"), "a binary part is a pickle"
    clone = SpikePredictor.from_document(json.loads(text), blobs)
    assert np.array_equal(clone.predict_proba(X_valid), predictor.predict_proba(X_valid))
    assert (clone.kind, clone.label, clone.threshold, clone.info) == (
        kind,
        predictor.label,
        0.3,
        info,
    )
    A = X_valid.to_numpy()
    assert np.array_equal(clone.predict_array(A[:1]), predictor.predict_proba(X_valid.iloc[:1]))


def test_a_document_of_an_unknown_format_or_scorer_is_refused_clearly(split):
    predictor = SpikePredictor("zscore", _fit("zscore", split), LabelSpec(tau=1.0).to_dict(), 0.5)
    document, blobs = predictor.to_document()
    with pytest.raises(ModelFormatError, match="version 99"):
        SpikePredictor.from_document({**document, "format_version": 99}, blobs)
    with pytest.raises(ModelFormatError, match="unknown scorer type 'pickle'"):
        SpikePredictor.from_document({**document, "scorer": {"type": "pickle"}}, blobs)
    with pytest.raises(ModelFormatError, match="incomplete"):
        SpikePredictor.from_document({**document, "scorer": {"type": "har_rv"}}, blobs)


def test_predict_array_checks_the_shape_and_matches_predict_proba(split):
    X_valid = split[2]
    predictor = SpikePredictor("har_rv", _fit("har_rv", split), LabelSpec(tau=1.0).to_dict(), 0.5)
    with pytest.raises(ValueError, match="shape"):
        predictor.predict_array(np.zeros((1, 3)))
    shuffled = X_valid[list(reversed(X_valid.columns))]  # by name, any order
    assert np.array_equal(predictor.predict_proba(shuffled), predictor.predict_proba(X_valid))
    assert np.array_equal(
        predictor.predict_array(X_valid.to_numpy()), predictor.predict_proba(X_valid)
    )
