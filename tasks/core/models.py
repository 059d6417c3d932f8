"""Spike scorers: two baselines, the candidate models, and the predictor that gets served. Pure.

Every scorer returns one spike probability per row, from a frame of feature rows (columns by
name, in any order: :meth:`predict_proba`) or from a float array whose columns are its
``feature_names`` in order (:meth:`predict_array`, the serving path: no pandas per call). Missing
inputs are NaN and every scorer copes with them, so a row with only a few features still gets a
score.

Baselines, each a function of one feature row, so they can be served too:

- ``persistence``: the current 60 s realized volatility of tick mid returns (``realized_vol_60``).
  Volatility is persistent, so this is strong against the absolute label. (On the Coinbase
  recordings it ranks better than its 1-second-grid twin ``realized_vol_1s_60``.)
- ``zscore`` (the seeds' baseline): how far recent volatility stands from its trailing level,
  ``z = (log vol_ratio_60_300 - mu) / sd``, where ``vol_ratio_60_300`` is the per-second
  volatility of the last 60 s over that of the last 300 s and ``mu``, ``sd`` are its mean and
  spread on training rows.

Each baseline is turned into a probability by a one-feature logistic regression on training rows;
that keeps its ranking (PR-AUC) unchanged.

Candidates: a HAR-style logistic regression on log volatilities of several horizons (plus log
spread and tick intensity), XGBoost on all features, a Random Forest, and the mean of the
HAR and XGBoost probabilities (``stack``).

Fitted parameters are data: :meth:`SpikePredictor.to_document` gives a JSON-able document (the
coefficients, medians, floors... of every scorer, the feature order, label and threshold) and
named binary parts in their library's own format (XGBoost UBJSON, skops for scikit-learn
forests); :meth:`SpikePredictor.from_document` rebuilds the predictor from them. No pickle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from tasks.core.features import FEATURE_NAMES, FEATURE_SET_VERSION

EPS = 1e-9
PERSISTENCE_COLUMN = "realized_vol_60"
ZSCORE_COLUMN = "vol_ratio_60_300"
HAR_COLUMNS: tuple[str, ...] = (
    "realized_vol_1s_60",
    "realized_vol_1s_300",
    "realized_vol_30",
    "realized_vol_60",
    "realized_vol_300",
    "spread_bps_mean_60",
    "tick_intensity_60",
    "tick_intensity_300",
    "range_bps_60",
)
BASELINES = ("zscore", "persistence")
CANDIDATES = ("har_logistic", "xgboost", "random_forest", "stack")
DOCUMENT_FORMAT = "cryptovol-predictor"
DOCUMENT_VERSION = 1
# what a stored random forest may contain: skops refuses any other type when loading it
FOREST_TYPES = (
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
)


class ModelFormatError(ValueError):
    """A stored model document cannot be read (unknown format, version or scorer type)."""


def feature_matrix(frame: pd.DataFrame, names: Sequence[str] = FEATURE_NAMES) -> pd.DataFrame:
    """The feature columns in order, as float; missing columns become NaN, extra ones go."""
    X = frame.reindex(columns=list(names))
    return X.apply(pd.to_numeric, errors="coerce").astype(float)


def _log(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(np.clip(arr, 0.0, None) + EPS)
    out[~np.isfinite(arr)] = np.nan
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


def _column(A: np.ndarray, names: Sequence[str], column: str) -> np.ndarray:
    """One column of a feature array by name (all NaN when the array does not have it)."""
    if column in names:
        return A[:, list(names).index(column)]
    return np.full(len(A), np.nan)


def _index(names: Sequence[str], column: str) -> int:
    return list(names).index(column) if column in names else -1


class Scorer:
    """What every scorer implements. ``fit`` takes a frame of feature columns (``feature_matrix``)
    and remembers their order as ``feature_names``: :meth:`predict_array` expects that order."""

    type_name: ClassVar[str]
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, eval_set: tuple[pd.DataFrame, np.ndarray] | None
    ) -> Scorer:
        raise NotImplementedError

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_array(feature_matrix(X, self.feature_names).to_numpy())

    def importance(self) -> dict[str, float]:
        raise NotImplementedError

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        """The fitted parameters as JSON-able data; binary parts are added to ``blobs``."""
        raise NotImplementedError

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> Scorer:
        raise NotImplementedError


class _LogisticOnScore:
    """A one-feature logistic regression turning a score into a probability, increasing in it.

    A baseline has a fixed direction (higher score, more likely a spike): when the training rows
    say otherwise, the slope is clamped to a tiny positive value, so the ranking (and PR-AUC)
    stays the baseline's own and the probability is about the training spike rate.
    """

    def __init__(self, coef: float = 0.0, intercept: float = 0.0) -> None:
        self.coef = coef
        self.intercept = intercept

    def fit(self, score: np.ndarray, y: np.ndarray) -> _LogisticOnScore:
        rate = float(np.clip(np.mean(y), 1e-4, 1 - 1e-4)) if len(y) else 0.5
        base_rate_logit = math.log(rate / (1 - rate))
        if len(np.unique(y)) < 2:
            self.coef, self.intercept = 0.0, base_rate_logit
            return self
        model = LogisticRegression(C=1e4, max_iter=500).fit(score.reshape(-1, 1), y)
        self.coef = float(model.coef_[0, 0])
        self.intercept = float(model.intercept_[0])
        if self.coef <= 0.0:  # never let a baseline silently reverse its ranking
            self.coef, self.intercept = 1e-3, base_rate_logit
        return self

    def __call__(self, score: np.ndarray) -> np.ndarray:
        return _sigmoid(self.intercept + self.coef * score)


class _OneColumnBaseline(Scorer):
    """A score from one feature column, turned into a probability by a monotone calibration."""

    column: ClassVar[str]

    def __init__(self) -> None:
        self.calibration = _LogisticOnScore()

    def score_array(self, A: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """The uncalibrated score of a frame (its ranking is the baseline's)."""
        return self.score_array(feature_matrix(X, self.feature_names).to_numpy())

    def _fit_logs(self, X: pd.DataFrame) -> np.ndarray:
        self.feature_names = tuple(X.columns)
        raw = _log(_column(X.to_numpy(float), self.feature_names, self.column))
        return raw[np.isfinite(raw)]

    def _calibrate(self, X: pd.DataFrame, y) -> None:
        self.calibration.fit(self.score(X), np.asarray(y, dtype=float))

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        return self.calibration(self.score_array(A))

    def importance(self) -> dict[str, float]:
        return {self.column: 1.0}

    def _params(self, **fitted: float) -> dict:
        return {
            "type": self.type_name,
            "feature_names": list(self.feature_names),
            "column": self.column,
            **{k: float(v) for k, v in fitted.items()},
            "calibration": {"coef": self.calibration.coef, "intercept": self.calibration.intercept},
        }

    def _load_common(self, params: dict) -> None:
        if params["column"] != self.column:
            raise ModelFormatError(f"{self.type_name} scores {self.column}, not {params['column']}")
        self.feature_names = tuple(params["feature_names"])
        self.calibration = _LogisticOnScore(**params["calibration"])


class PersistenceBaseline(_OneColumnBaseline):
    """Score: log of the current 60 s realized volatility (missing -> the training median)."""

    type_name = "persistence"
    column = PERSISTENCE_COLUMN

    def __init__(self) -> None:
        super().__init__()
        self.fill = 0.0

    def score_array(self, A: np.ndarray) -> np.ndarray:
        s = _log(_column(A, self.feature_names, self.column))
        return np.where(np.isnan(s), self.fill, s)

    def fit(self, X, y, eval_set=None) -> PersistenceBaseline:
        finite = self._fit_logs(X)
        self.fill = float(np.median(finite)) if len(finite) else 0.0
        self._calibrate(X, y)
        return self

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        return self._params(fill=self.fill)

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> PersistenceBaseline:
        out = cls()
        out._load_common(params)
        out.fill = float(params["fill"])
        return out


class ZScoreBaseline(_OneColumnBaseline):
    """Score: z-score of log(60 s vs 300 s per-second volatility); missing -> 0 (at its level)."""

    type_name = "zscore"
    column = ZSCORE_COLUMN

    def __init__(self) -> None:
        super().__init__()
        self.mu = 0.0
        self.sd = 1.0

    def score_array(self, A: np.ndarray) -> np.ndarray:
        z = (_log(_column(A, self.feature_names, self.column)) - self.mu) / self.sd
        return np.where(np.isnan(z), 0.0, z)

    def fit(self, X, y, eval_set=None) -> ZScoreBaseline:
        finite = self._fit_logs(X)
        if len(finite) > 1:
            self.mu = float(finite.mean())
            self.sd = float(finite.std()) or 1.0
        self._calibrate(X, y)
        return self

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        return self._params(mu=self.mu, sd=self.sd)

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> ZScoreBaseline:
        out = cls()
        out._load_common(params)
        out.mu, out.sd = float(params["mu"]), float(params["sd"])
        return out


class HarLogistic(Scorer):
    """Logistic regression on standardized log volatilities of several horizons (HAR-style).

    Each column is floored at 1 % of its training median before the log, so a calm minute
    (zero volatility: no price change) is very low but no outlier. Missing values are imputed
    with training medians, and a missing indicator per column joins the inputs, so a row without
    history is told apart from an average one. Scoring is numpy only: the standardized inputs
    times the fitted coefficients, through the logistic function.
    """

    type_name = "har_logistic"

    def __init__(self, columns: Sequence[str] = HAR_COLUMNS, C: float = 1.0) -> None:
        self.columns = tuple(columns)
        self.C = C
        self.floors = np.full(len(self.columns), EPS)
        self.medians = np.zeros(len(self.columns))
        self.means = np.zeros(2 * len(self.columns))
        self.stds = np.ones(2 * len(self.columns))
        self.coef: np.ndarray | None = None  # shape (1, 2 * columns), as scikit-learn's
        self.intercept = 0.0
        self.constant: float | None = None
        self._bind(FEATURE_NAMES)

    def _bind(self, feature_names: Sequence[str]) -> None:
        """Where each input column sits in a feature array (-1: the array lacks it)."""
        self.feature_names = tuple(feature_names)
        self._where = np.array([_index(self.feature_names, c) for c in self.columns], dtype=int)

    def _logs(self, A: np.ndarray) -> np.ndarray:
        raw = A[:, np.maximum(self._where, 0)]
        if (self._where < 0).any():
            raw = raw.copy()
            raw[:, self._where < 0] = np.nan
        with np.errstate(invalid="ignore"):
            return np.log(np.maximum(raw, self.floors))  # maximum keeps NaN as NaN

    def _inputs(self, A: np.ndarray) -> np.ndarray:
        logs = self._logs(A)
        missing = np.isnan(logs)
        filled = np.where(missing, self.medians, logs)
        return np.hstack([filled, missing.astype(float)])

    def fit(self, X, y, eval_set=None) -> HarLogistic:
        y = np.asarray(y, dtype=float)
        self._bind(X.columns)
        A = X.to_numpy(float)
        for i, column in enumerate(self.columns):
            values = _column(A, self.feature_names, column)
            positive = values[np.isfinite(values) & (values > 0)]
            self.floors[i] = 0.01 * float(np.median(positive)) if len(positive) else EPS
        logs = self._logs(A)
        with np.errstate(all="ignore"):
            medians = np.nanmedian(logs, axis=0) if len(logs) else np.zeros(len(self.columns))
        self.medians = np.where(np.isnan(medians), 0.0, medians)
        Z = self._inputs(A)
        self.means = Z.mean(axis=0)
        self.stds = np.where(Z.std(axis=0) > 0, Z.std(axis=0), 1.0)
        if len(np.unique(y)) < 2:
            self.constant = float(np.mean(y)) if len(y) else 0.5
            self.coef = None
            return self
        self.constant = None
        model = LogisticRegression(C=self.C, max_iter=1000).fit((Z - self.means) / self.stds, y)
        self.coef = np.asarray(model.coef_, dtype=float)
        self.intercept = float(model.intercept_[0])
        return self

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        if self.constant is not None:
            return np.full(len(A), self.constant)
        # scikit-learn's formula on a C-ordered array, so the sums run in its order
        Z = np.ascontiguousarray((self._inputs(A) - self.means) / self.stds)
        return expit((Z @ self.coef.T + self.intercept).reshape(-1))

    def importance(self) -> dict[str, float]:
        if self.coef is None:
            return {}
        names = [f"log_{c}" for c in self.columns] + [f"missing_{c}" for c in self.columns]
        return {n: float(abs(w)) for n, w in zip(names, self.coef[0], strict=True) if w != 0.0}

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        return {
            "type": self.type_name,
            "feature_names": list(self.feature_names),
            "columns": list(self.columns),
            "C": self.C,
            "floors": _floats(self.floors),
            "medians": _floats(self.medians),
            "means": _floats(self.means),
            "stds": _floats(self.stds),
            "coef": None if self.coef is None else _floats(self.coef),
            "intercept": self.intercept,
            "constant": self.constant,
        }

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> HarLogistic:
        out = cls(params["columns"], params["C"])
        out._bind(params["feature_names"])
        for name in ("floors", "medians", "means", "stds"):
            setattr(out, name, np.asarray(params[name], dtype=float))
        coef = params["coef"]
        out.coef = None if coef is None else np.asarray(coef, dtype=float).reshape(1, -1)
        out.intercept = float(params["intercept"])
        out.constant = params["constant"]
        return out


@dataclass
class XGBoostParams:
    n_estimators: int = 600
    learning_rate: float = 0.05
    max_depth: int = 3
    min_child_weight: float = 20.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 5.0
    early_stopping_rounds: int = 50
    # one thread: on a busy 2-core machine two OpenMP threads ran 6-15x slower (spin waits)
    n_jobs: int = 1


def _single_class_rate(y: np.ndarray) -> float | None:
    """The constant a tree model predicts when its labels hold one class (it cannot be fit)."""
    if len(np.unique(y)) >= 2:
        return None
    return float(np.mean(y)) if len(y) else 0.5


def _blob_name(blobs: dict[str, bytes], stem: str, suffix: str) -> str:
    name = f"{stem}-{len(blobs)}.{suffix}"
    while name in blobs:
        name = f"{stem}-{len(blobs) + 1}.{suffix}"
    return name


class XGBoostSpike(Scorer):
    """Gradient-boosted trees (hist, NaN native). Early stopping only on a validation part.

    Without ``eval_set`` it trains ``n_estimators`` rounds: the final model gets the number of
    rounds early stopping chose on the validation folds, never one chosen on the test part.
    Only the trees up to the best round are kept; stored in XGBoost's own UBJSON format.
    """

    type_name = "xgboost"

    def __init__(self, params: XGBoostParams | None = None, seed: int = 0) -> None:
        self.params = params or XGBoostParams()
        self.seed = seed
        self.booster = None
        self.best_rounds: int | None = None
        self.early_stopped = False
        self.constant: float | None = None

    def fit(self, X, y, eval_set=None) -> XGBoostSpike:
        from xgboost import XGBClassifier

        y = np.asarray(y, dtype=float)
        self.feature_names = tuple(X.columns)
        self.constant = _single_class_rate(y)
        if self.constant is not None:
            return self
        p = self.params
        early = eval_set is not None and len(np.unique(eval_set[1])) == 2
        self.early_stopped = early
        model = XGBClassifier(
            n_estimators=p.n_estimators,
            learning_rate=p.learning_rate,
            max_depth=p.max_depth,
            min_child_weight=p.min_child_weight,
            subsample=p.subsample,
            colsample_bytree=p.colsample_bytree,
            reg_lambda=p.reg_lambda,
            tree_method="hist",
            n_jobs=p.n_jobs,
            random_state=self.seed,
            eval_metric="aucpr",
            early_stopping_rounds=p.early_stopping_rounds if early else None,
        )
        if early:
            Xv, yv = eval_set
            model.fit(X.to_numpy(float), y, eval_set=[(Xv.to_numpy(float), yv)], verbose=False)
            self.best_rounds = int(model.best_iteration) + 1
        else:
            model.fit(X.to_numpy(float), y, verbose=False)
            self.best_rounds = p.n_estimators
        self.booster = model.get_booster()[: self.best_rounds]
        self.booster.set_param({"nthread": p.n_jobs})
        return self

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        if self.constant is not None:
            return np.full(len(A), self.constant)
        return np.asarray(self.booster.inplace_predict(A), dtype=float)

    def importance(self) -> dict[str, float]:
        if self.booster is None:
            return {}
        gains = self.booster.get_score(importance_type="gain")
        return {self.feature_names[int(k[1:])]: float(v) for k, v in gains.items()}

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        booster = None
        if self.booster is not None:
            booster = _blob_name(blobs, "xgboost", "ubj")
            blobs[booster] = bytes(self.booster.save_raw(raw_format="ubj"))
        return {
            "type": self.type_name,
            "feature_names": list(self.feature_names),
            "booster": booster,
            "best_rounds": self.best_rounds,
            "early_stopped": self.early_stopped,
            "constant": self.constant,
            "params": asdict(self.params),
            "seed": self.seed,
        }

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> XGBoostSpike:
        out = cls(XGBoostParams(**params["params"]), params["seed"])
        out.feature_names = tuple(params["feature_names"])
        out.best_rounds, out.early_stopped = params["best_rounds"], params["early_stopped"]
        out.constant = params["constant"]
        if params["booster"] is not None:
            out.booster = booster_from_bytes(blobs[params["booster"]], out.params.n_jobs)
        return out


def booster_from_bytes(raw: bytes, nthread: int = 1):
    """An XGBoost booster from its own format (UBJSON or JSON bytes)."""
    from xgboost import Booster

    booster = Booster()
    booster.load_model(bytearray(raw))
    booster.set_param({"nthread": nthread})
    return booster


class RandomForestSpike(Scorer):
    """A shallow Random Forest with wide leaves (scikit-learn handles NaN natively).

    Stored with skops, whose loader builds only the scikit-learn types in :data:`FOREST_TYPES`.
    """

    type_name = "random_forest"

    def __init__(self, seed: int = 0, n_estimators: int = 100, n_jobs: int = 1) -> None:
        self.seed = seed
        self.n_estimators = n_estimators
        self.n_jobs = n_jobs
        self.model: RandomForestClassifier | None = None
        self.constant: float | None = None

    def fit(self, X, y, eval_set=None) -> RandomForestSpike:
        y = np.asarray(y, dtype=float)
        self.feature_names = tuple(X.columns)
        self.constant = _single_class_rate(y)
        if self.constant is not None:
            return self
        self.model = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=8,
            min_samples_leaf=50,
            max_features=0.3,
            n_jobs=self.n_jobs,
            random_state=self.seed,
        )
        self.model.fit(X.to_numpy(float), y)
        return self

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        if self.constant is not None:
            return np.full(len(A), self.constant)
        return self.model.predict_proba(A)[:, 1]

    def importance(self) -> dict[str, float]:
        if self.model is None:
            return {}
        pairs = zip(self.feature_names, self.model.feature_importances_, strict=True)
        return {name: float(value) for name, value in pairs}

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        forest = None
        if self.model is not None:
            import skops.io

            forest = _blob_name(blobs, "forest", "skops")
            blobs[forest] = skops.io.dumps(self.model)
        return {
            "type": self.type_name,
            "feature_names": list(self.feature_names),
            "forest": forest,
            "constant": self.constant,
            "seed": self.seed,
            "n_estimators": self.n_estimators,
            "n_jobs": self.n_jobs,
        }

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> RandomForestSpike:
        out = cls(params["seed"], params["n_estimators"], params["n_jobs"])
        out.feature_names = tuple(params["feature_names"])
        out.constant = params["constant"]
        if params["forest"] is not None:
            import skops.io

            out.model = skops.io.loads(blobs[params["forest"]], trusted=list(FOREST_TYPES))
        return out


class MeanStack(Scorer):
    """The mean of its members' probabilities (members share the feature order)."""

    type_name = "mean"

    def __init__(self, members: Sequence[Scorer]) -> None:
        self.members = list(members)
        if self.members:
            self.feature_names = self.members[0].feature_names

    def fit(self, X, y, eval_set=None) -> MeanStack:
        self.feature_names = tuple(X.columns)
        for member in self.members:
            member.fit(X, y, eval_set)
        return self

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        return np.mean([m.predict_array(A) for m in self.members], axis=0)

    def importance(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for member in self.members:
            imp = member.importance()
            norm = sum(imp.values()) or 1.0
            for name, value in imp.items():
                total[name] = total.get(name, 0.0) + value / norm / len(self.members)
        return total

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        return {"type": self.type_name, "members": [m.to_params(blobs) for m in self.members]}

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> MeanStack:
        return cls([scorer_from_params(m, blobs) for m in params["members"]])


class PriorShift(Scorer):
    """A fitted scorer whose log-odds are moved by a constant (a prior-shift correction).

    Spike rates move with the regime: a model fit on hours where 37 % of rows were spikes says
    so in calm hours too. The shift makes the mean predicted probability on recent training rows
    equal their observed spike rate. Rankings, and so PR-AUC, do not change.
    """

    type_name = "prior_shift"

    def __init__(self, base: Scorer, shift: float = 0.0) -> None:
        self.base = base
        self.shift = shift
        self.feature_names = base.feature_names

    @classmethod
    def to_rate(cls, base: Scorer, X: pd.DataFrame, rate: float) -> PriorShift:
        """The shift that brings the mean probability on ``X`` to ``rate`` (bisection)."""
        if len(X) == 0 or not 0.0 < rate < 1.0:
            return cls(base, 0.0)
        logits = _logit(base.predict_proba(X))
        low, high = -20.0, 20.0
        for _ in range(60):
            mid = (low + high) / 2
            if _sigmoid(logits + mid).mean() < rate:
                low = mid
            else:
                high = mid
        return cls(base, (low + high) / 2)

    def fit(self, X, y, eval_set=None) -> PriorShift:
        self.base.fit(X, y, eval_set)
        self.feature_names = self.base.feature_names
        return self

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        if self.shift == 0.0:
            return self.base.predict_array(A)
        return _sigmoid(_logit(self.base.predict_array(A)) + self.shift)

    def importance(self) -> dict[str, float]:
        return self.base.importance()

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        return {"type": self.type_name, "shift": self.shift, "base": self.base.to_params(blobs)}

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> PriorShift:
        return cls(scorer_from_params(params["base"], blobs), float(params["shift"]))


SCORER_TYPES: dict[str, type[Scorer]] = {
    cls.type_name: cls
    for cls in (
        PersistenceBaseline,
        ZScoreBaseline,
        HarLogistic,
        XGBoostSpike,
        RandomForestSpike,
        MeanStack,
        PriorShift,
    )
}


def scorer_from_params(params: dict, blobs: Mapping[str, bytes]) -> Scorer:
    """A fitted scorer rebuilt from :meth:`Scorer.to_params` data."""
    kind = params.get("type")
    if kind not in SCORER_TYPES:
        raise ModelFormatError(f"unknown scorer type {kind!r}; known: {sorted(SCORER_TYPES)}")
    try:
        return SCORER_TYPES[kind].from_params(params, blobs)
    except (KeyError, TypeError) as exc:
        raise ModelFormatError(f"{kind} parameters are incomplete: {exc!r}") from exc


def ranking_baselines(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Unfitted baseline scores for ranking metrics (PR-AUC needs no calibration).

    ``zscore``: log of the 60 s / 300 s volatility ratio (missing -> 0, the trailing level);
    ``persistence``: log 60 s realized volatility (missing -> the median of these rows).
    """
    zscore = ZScoreBaseline().score(frame)
    persistence = PersistenceBaseline()
    raw = _log(frame[persistence.column].to_numpy(float)) if persistence.column in frame else []
    finite = np.asarray(raw)[np.isfinite(raw)]
    persistence.fill = float(np.median(finite)) if len(finite) else 0.0
    return {"zscore": zscore, "persistence": persistence.score(frame)}


def make_estimator(kind: str, *, seed: int = 0, xgb: XGBoostParams | None = None) -> Scorer:
    """A fresh, unfitted scorer of the given kind."""
    if kind == "persistence":
        return PersistenceBaseline()
    if kind == "zscore":
        return ZScoreBaseline()
    if kind == "har_logistic":
        return HarLogistic()
    if kind == "xgboost":
        return XGBoostSpike(xgb, seed=seed)
    if kind == "random_forest":
        return RandomForestSpike(seed=seed)
    if kind == "stack":
        return MeanStack([HarLogistic(), XGBoostSpike(xgb, seed=seed)])
    raise ValueError(f"unknown model kind {kind!r}; known: {(*BASELINES, *CANDIDATES)}")


@dataclass
class SpikePredictor:
    """A fitted scorer with everything needed to serve it: feature order, label, threshold.

    ``predict_proba`` takes any frame with feature columns by name (missing -> NaN, extra
    ignored) and returns spike probabilities, never classes; ``predict_array`` takes a float
    array whose columns are :attr:`feature_names` in order.
    """

    kind: str
    estimator: Scorer
    label: dict
    threshold: float
    feature_names: tuple[str, ...] = FEATURE_NAMES
    feature_set_version: str = FEATURE_SET_VERSION
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.feature_names = tuple(self.feature_names)
        if tuple(self.estimator.feature_names) != self.feature_names:
            raise ValueError(
                f"the {self.kind} scorer reads features {self.estimator.feature_names}, "
                f"not the predictor's {self.feature_names}"
            )

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if len(frame) == 0:
            return np.empty(0)
        return self.predict_array(feature_matrix(frame, self.feature_names).to_numpy())

    def predict_array(self, X: np.ndarray) -> np.ndarray:
        """Spike probabilities of a 2-D float array whose columns are :attr:`feature_names`
        in order (NaN: missing). The serving path: numpy only, no column matching by name."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(
                f"expected an array of shape (rows, {len(self.feature_names)}), got {X.shape}"
            )
        if len(X) == 0:
            return np.empty(0)
        return np.asarray(self.estimator.predict_array(X), dtype=float)

    def flags(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(frame) >= self.threshold

    def metadata(self) -> dict:
        """JSON-able description stored beside the model."""
        return {
            "model_kind": self.kind,
            "feature_names": list(self.feature_names),
            "feature_set_version": self.feature_set_version,
            "label": dict(self.label),
            "threshold": float(self.threshold),
            **self.info,
        }

    def to_document(self) -> tuple[dict, dict[str, bytes]]:
        """The predictor as data: a JSON-able document and its named binary parts."""
        blobs: dict[str, bytes] = {}
        document = {
            "format": DOCUMENT_FORMAT,
            "format_version": DOCUMENT_VERSION,
            "kind": self.kind,
            "feature_names": list(self.feature_names),
            "feature_set_version": self.feature_set_version,
            "label": dict(self.label),
            "threshold": float(self.threshold),
            "info": dict(self.info),
            "scorer": self.estimator.to_params(blobs),
        }
        return document, blobs

    @classmethod
    def from_document(cls, document: dict, blobs: Mapping[str, bytes]) -> SpikePredictor:
        """The predictor a :meth:`to_document` document describes."""
        if document.get("format") != DOCUMENT_FORMAT:
            raise ModelFormatError(f"not a {DOCUMENT_FORMAT} document: {document.get('format')!r}")
        version = document.get("format_version")
        if version != DOCUMENT_VERSION:
            raise ModelFormatError(
                f"{DOCUMENT_FORMAT} version {version!r} is not readable by this code "
                f"(it reads version {DOCUMENT_VERSION}): upgrade cryptovol or retrain"
            )
        return cls(
            kind=document["kind"],
            estimator=scorer_from_params(document["scorer"], blobs),
            label=dict(document["label"]),
            threshold=float(document["threshold"]),
            feature_names=tuple(document["feature_names"]),
            feature_set_version=document["feature_set_version"],
            info=dict(document["info"]),
        )
