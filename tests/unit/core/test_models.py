"""Baselines, candidates, the served predictor and the training pipeline, on synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from synthetic_frames import synthetic_dataset

from tasks.core.evaluation import ranking_metrics
from tasks.core.features import FEATURE_NAMES
from tasks.core.labels import LabelSpec
from tasks.core.models import (
    CANDIDATES,
    ModelFormatError,
    PriorShift,
    SpikePredictor,
    XGBoostParams,
    XGBoostSpike,
    feature_matrix,
    make_estimator,
    ranking_baselines,
)
from tasks.core.training import TrainConfig, TrainingError, train


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    return synthetic_dataset(seconds=3600)


@pytest.fixture(scope="module")
def split(dataset):
    """Training rows (first 60 %), then validation rows after a 360 s embargo."""
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
    )


def test_feature_matrix_orders_columns_and_fills_missing_with_nan():
    frame = pd.DataFrame({"n": [3], "ret_std": [0.1], "unrelated": ["x"]})
    X = feature_matrix(frame)
    assert list(X.columns) == list(FEATURE_NAMES)
    assert X["n"].dtype == np.float64 and X.loc[0, "n"] == 3.0
    assert X.drop(columns=["n", "ret_std"]).isna().all().all()


@pytest.mark.parametrize("kind", ["zscore", "persistence", *CANDIDATES])
def test_every_scorer_returns_probabilities_for_rows_with_missing_inputs(kind, split):
    X_train, y_train, X_valid, y_valid = split
    estimator = make_estimator(kind, xgb=XGBoostParams(n_estimators=60))
    estimator.fit(X_train, y_train, (X_valid, y_valid))
    sparse = pd.DataFrame({"realized_vol_60": [np.nan, 1e-4]}).reindex(columns=FEATURE_NAMES)
    for X in (X_valid, sparse):
        p = estimator.predict_proba(X)
        assert p.shape == (len(X),)
        assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    assert isinstance(estimator.importance(), dict)
    predictor = SpikePredictor(kind, estimator, LabelSpec(tau=1.0).to_dict(), 0.5)
    assert predictor.predict_proba(X_valid.iloc[:0]).shape == (0,)


def test_baselines_rank_by_their_own_feature(split):
    X_train, y_train, X_valid, _ = split
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


def test_models_beat_chance_where_there_is_signal(split):
    X_train, y_train, X_valid, y_valid = split
    rate = y_valid.mean()
    for kind in ("har_logistic", "xgboost"):
        p = make_estimator(kind).fit(X_train, y_train, (X_valid, y_valid)).predict_proba(X_valid)
        assert ranking_metrics(y_valid, p)["pr_auc"] > 2 * rate


def test_xgboost_stops_early_on_validation_and_trains_fixed_rounds_without(split):
    X_train, y_train, X_valid, y_valid = split
    params = XGBoostParams(n_estimators=400, early_stopping_rounds=10)
    stopped = XGBoostSpike(params).fit(X_train, y_train, (X_valid, y_valid))
    assert stopped.early_stopped and 1 <= stopped.best_rounds < 400
    assert stopped.booster.num_boosted_rounds() == stopped.best_rounds  # only the kept trees
    fixed = XGBoostSpike(XGBoostParams(n_estimators=25)).fit(X_train, y_train, None)
    assert not fixed.early_stopped and fixed.booster.num_boosted_rounds() == 25


@pytest.mark.parametrize("kind", ["har_logistic", "xgboost", "random_forest", "zscore"])
def test_one_class_training_data_gives_a_constant_not_a_crash(kind, split):
    X_train, _, X_valid, _ = split
    p = make_estimator(kind).fit(X_train, np.zeros(len(X_train))).predict_proba(X_valid)
    assert np.isfinite(p).all() and p.max() <= 0.01


def test_prior_shift_moves_the_mean_probability_but_not_the_ranking(split):
    X_train, y_train, X_valid, _ = split
    base = make_estimator("har_logistic").fit(X_train, y_train)
    shifted = PriorShift.to_rate(base, X_valid, 0.05)
    p_base, p_shifted = base.predict_proba(X_valid), shifted.predict_proba(X_valid)
    assert p_shifted.mean() == pytest.approx(0.05, abs=1e-4)
    assert np.array_equal(np.argsort(p_base, kind="stable"), np.argsort(p_shifted, kind="stable"))


def test_predictor_serves_probabilities_and_describes_itself(split):
    X_train, y_train, _, _ = split
    label = LabelSpec(tau=0.01).to_dict()
    predictor = SpikePredictor(
        "har_logistic", make_estimator("har_logistic").fit(X_train, y_train), label, 0.3
    )
    rows = pd.DataFrame([{"ret_mean": 0.05, "ret_std": 0.01, "n": 50}])
    p = predictor.predict_proba(rows)
    assert p.shape == (1,) and 0.0 <= p[0] <= 1.0
    assert predictor.flags(rows).dtype == bool
    meta = json.loads(json.dumps(predictor.metadata()))
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert meta["label"]["tau"] == 0.01 and meta["threshold"] == 0.3


@pytest.mark.parametrize("kind", ["zscore", "persistence", *CANDIDATES])
def test_a_predictor_is_stored_as_data_and_scores_identically_when_rebuilt(kind, split):
    X_train, y_train, X_valid, y_valid = split
    estimator = make_estimator(kind, xgb=XGBoostParams(n_estimators=40, early_stopping_rounds=5))
    estimator = PriorShift.to_rate(
        estimator.fit(X_train, y_train, (X_valid, y_valid)), X_valid, 0.1
    )
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
    X_train, y_train, _, _ = split
    predictor = SpikePredictor(
        "zscore", make_estimator("zscore").fit(X_train, y_train), LabelSpec(tau=1.0).to_dict(), 0.5
    )
    document, blobs = predictor.to_document()
    with pytest.raises(ModelFormatError, match="version 99"):
        SpikePredictor.from_document({**document, "format_version": 99}, blobs)
    with pytest.raises(ModelFormatError, match="unknown scorer type 'pickle'"):
        SpikePredictor.from_document({**document, "scorer": {"type": "pickle"}}, blobs)


def test_predict_array_checks_the_shape_and_takes_only_arrays_in_feature_order(split):
    X_train, y_train, X_valid, _ = split
    predictor = SpikePredictor(
        "har_logistic",
        make_estimator("har_logistic").fit(X_train, y_train),
        LabelSpec(tau=1.0).to_dict(),
        0.5,
    )
    with pytest.raises(ValueError, match="shape"):
        predictor.predict_array(np.zeros((1, 3)))
    shuffled = X_valid[list(reversed(X_valid.columns))]  # by name, any order
    assert np.array_equal(predictor.predict_proba(shuffled), predictor.predict_proba(X_valid))


def test_training_pipeline_end_to_end(dataset):
    config = TrainConfig(
        n_folds=3,
        candidates=("har_logistic", "xgboost", "stack"),
        xgboost=XGBoostParams(n_estimators=80),
    )
    result = train(dataset, config)
    summary = json.loads(json.dumps(result.summary()))
    assert result.selected in CANDIDATES
    test = summary["test"]
    assert test["rows"] == len(result.test_scores) > 0
    assert test["pr_auc"] > test["positive_rate"]
    assert set(summary["validation"]) == {
        "zscore",
        "persistence",
        "har_logistic",
        "xgboost",
        "stack",
    }
    assert all(len(v["pr_auc_folds"]) == 3 for v in summary["validation"].values())
    assert result.label["tau"] > 0 and 0 < result.threshold < 1
    assert result.predictor.info["train_end"] < summary["split"]["test_start"]
    # the model is scored on exactly the rows the baselines are scored on
    assert result.test_metrics["model"]["rows"] == result.test_metrics["persistence"]["rows"]


def test_training_reports_folds_without_spikes_instead_of_hiding_them(dataset):
    calm = dataset.copy()
    late = calm["ts"] > calm["ts"].min() + pd.Timedelta(seconds=1500)
    calm.loc[late, "fwd_vol_60"] = 1e-9  # after 25 min nothing moves: no spike can exist
    config = TrainConfig(n_folds=3, tau_window_s=None, candidates=("har_logistic",))
    result = train(calm, config)
    degenerate = result.reports["har_logistic"].summaries["pr_auc"].n_degenerate
    assert degenerate >= 1
    assert any("degenerate" in note for note in result.notes)
    assert result.test_metrics["model"]["pr_auc"] is None
    assert result.summary()["test"]["degenerate"] is True


def test_shuffled_labels_destroy_the_signal(dataset):
    config = TrainConfig(n_folds=3, candidates=("har_logistic",), shuffle_labels=True)
    result = train(dataset, config)
    test = result.test_metrics
    assert test["model"]["pr_auc"] < test["persistence"]["pr_auc"]


def test_too_short_data_is_refused(dataset):
    short = dataset[dataset["ts"] < dataset["ts"].min() + pd.Timedelta(seconds=600)]
    with pytest.raises(TrainingError, match="too short"):
        train(short, TrainConfig())


def test_pure_modules_import_no_io_libraries():
    code = (
        "import sys, tasks.core.models, tasks.core.evaluation, tasks.core.gates\n"
        "import tasks.core.training\n"
        "bad = [m for m in ('mlflow', 'confluent_kafka', 'prefect', 'websockets', 'requests')"
        " if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
