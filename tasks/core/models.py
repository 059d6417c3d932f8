"""Spike scorers: two baselines, the candidate models, and the predictor that gets served. Pure.

Every scorer takes a frame of feature rows (columns by name, in any order) and returns one spike
probability per row. Missing inputs are NaN and every scorer copes with them, so a row with only a
few features still gets a score.

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
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


class Estimator(Protocol):
    """What a candidate implements; ``X`` has the predictor's feature columns."""

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, eval_set: tuple[pd.DataFrame, np.ndarray] | None
    ) -> Estimator: ...

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...

    def importance(self) -> dict[str, float]: ...


def feature_matrix(frame: pd.DataFrame, names: Sequence[str] = FEATURE_NAMES) -> pd.DataFrame:
    """The feature columns in order, as float; missing columns become NaN, extra ones go."""
    X = frame.reindex(columns=list(names))
    return X.apply(pd.to_numeric, errors="coerce").astype(float)


def _log(values: pd.Series | np.ndarray) -> np.ndarray:
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


class _LogisticOnScore:
    """A one-feature logistic regression turning a score into a probability, increasing in it.

    A baseline has a fixed direction (higher score, more likely a spike): when the training rows
    say otherwise, the slope is clamped to a tiny positive value, so the ranking (and PR-AUC)
    stays the baseline's own and the probability is about the training spike rate.
    """

    def __init__(self) -> None:
        self.coef = 0.0
        self.intercept = 0.0

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


class _OneColumnBaseline:
    """A score from one feature column, turned into a probability by a monotone calibration."""

    column: str

    def __init__(self) -> None:
        self.calibration = _LogisticOnScore()

    def score(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def _finite_logs(self, X: pd.DataFrame) -> np.ndarray:
        raw = _log(X[self.column]) if self.column in X else np.full(len(X), np.nan)
        return raw[np.isfinite(raw)]

    def _calibrate(self, X: pd.DataFrame, y) -> None:
        self.calibration.fit(self.score(X), np.asarray(y, dtype=float))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.calibration(self.score(X))

    def importance(self) -> dict[str, float]:
        return {self.column: 1.0}


class PersistenceBaseline(_OneColumnBaseline):
    """Score: log of the current 60 s realized volatility (missing -> the training median)."""

    column = PERSISTENCE_COLUMN

    def __init__(self) -> None:
        super().__init__()
        self.fill = 0.0

    def score(self, X: pd.DataFrame) -> np.ndarray:
        if self.column not in X:
            return np.full(len(X), self.fill)
        s = _log(X[self.column])
        return np.where(np.isnan(s), self.fill, s)

    def fit(self, X, y, eval_set=None) -> PersistenceBaseline:
        finite = self._finite_logs(X)
        self.fill = float(np.median(finite)) if len(finite) else 0.0
        self._calibrate(X, y)
        return self


class ZScoreBaseline(_OneColumnBaseline):
    """Score: z-score of log(60 s vs 300 s per-second volatility); missing -> 0 (at its level)."""

    column = ZSCORE_COLUMN

    def __init__(self) -> None:
        super().__init__()
        self.mu = 0.0
        self.sd = 1.0

    def score(self, X: pd.DataFrame) -> np.ndarray:
        if self.column not in X:
            return np.zeros(len(X))
        z = (_log(X[self.column]) - self.mu) / self.sd
        return np.where(np.isnan(z), 0.0, z)

    def fit(self, X, y, eval_set=None) -> ZScoreBaseline:
        finite = self._finite_logs(X)
        if len(finite) > 1:
            self.mu = float(finite.mean())
            self.sd = float(finite.std()) or 1.0
        self._calibrate(X, y)
        return self


class HarLogistic:
    """Logistic regression on standardized log volatilities of several horizons (HAR-style).

    Each column is floored at 1 % of its training median before the log, so a calm minute
    (zero volatility: no price change) is very low but no outlier. Missing values are imputed
    with training medians, and a missing indicator per column joins the inputs, so a row without
    history is told apart from an average one.
    """

    def __init__(self, columns: Sequence[str] = HAR_COLUMNS, C: float = 1.0) -> None:
        self.columns = tuple(columns)
        self.C = C
        self.floors = np.full(len(self.columns), EPS)
        self.medians = np.zeros(len(self.columns))
        self.means = np.zeros(2 * len(self.columns))
        self.stds = np.ones(2 * len(self.columns))
        self.model: LogisticRegression | None = None
        self._constant: float | None = None

    def _logs(self, X: pd.DataFrame) -> np.ndarray:
        raw = np.column_stack(
            [X[c].to_numpy(float) if c in X else np.full(len(X), np.nan) for c in self.columns]
        )
        with np.errstate(invalid="ignore"):
            return np.log(np.maximum(raw, self.floors))  # maximum keeps NaN as NaN

    def _inputs(self, X: pd.DataFrame) -> np.ndarray:
        logs = self._logs(X)
        missing = np.isnan(logs)
        filled = np.where(missing, self.medians, logs)
        return np.hstack([filled, missing.astype(float)])

    def fit(self, X, y, eval_set=None) -> HarLogistic:
        y = np.asarray(y, dtype=float)
        for i, column in enumerate(self.columns):
            values = X[column].to_numpy(float) if column in X else np.array([])
            positive = values[np.isfinite(values) & (values > 0)]
            self.floors[i] = 0.01 * float(np.median(positive)) if len(positive) else EPS
        logs = self._logs(X)
        with np.errstate(all="ignore"):
            medians = np.nanmedian(logs, axis=0) if len(logs) else np.zeros(len(self.columns))
        self.medians = np.where(np.isnan(medians), 0.0, medians)
        Z = self._inputs(X)
        self.means = Z.mean(axis=0)
        self.stds = np.where(Z.std(axis=0) > 0, Z.std(axis=0), 1.0)
        if len(np.unique(y)) < 2:
            self._constant = float(np.mean(y)) if len(y) else 0.5
            return self
        self._constant = None
        self.model = LogisticRegression(C=self.C, max_iter=1000)
        self.model.fit((Z - self.means) / self.stds, y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self._constant is not None:
            return np.full(len(X), self._constant)
        Z = (self._inputs(X) - self.means) / self.stds
        return self.model.predict_proba(Z)[:, 1]

    def importance(self) -> dict[str, float]:
        if self.model is None:
            return {}
        coefs = self.model.coef_[0]
        names = [f"log_{c}" for c in self.columns] + [f"missing_{c}" for c in self.columns]
        return {n: float(abs(w)) for n, w in zip(names, coefs, strict=True) if w != 0.0}


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


class XGBoostSpike:
    """Gradient-boosted trees (hist, NaN native). Early stopping only on a validation part.

    Without ``eval_set`` it trains ``n_estimators`` rounds: the final model gets the number of
    rounds early stopping chose on the validation folds, never one chosen on the test part.
    """

    def __init__(self, params: XGBoostParams | None = None, seed: int = 0) -> None:
        self.params = params or XGBoostParams()
        self.seed = seed
        self.model = None
        self.best_rounds: int | None = None
        self.early_stopped = False
        self.columns: list[str] = []
        self._constant: float | None = None

    def fit(self, X, y, eval_set=None) -> XGBoostSpike:
        from xgboost import XGBClassifier

        y = np.asarray(y, dtype=float)
        self.columns = list(X.columns)
        self._constant = _single_class_rate(y)
        if self._constant is not None:
            return self
        p = self.params
        early = eval_set is not None and len(np.unique(eval_set[1])) == 2
        self.early_stopped = early
        self.model = XGBClassifier(
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
            self.model.fit(X.to_numpy(float), y, eval_set=[(Xv.to_numpy(float), yv)], verbose=False)
            self.best_rounds = int(self.model.best_iteration) + 1
        else:
            self.model.fit(X.to_numpy(float), y, verbose=False)
            self.best_rounds = p.n_estimators
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self._constant is not None:
            return np.full(len(X), self._constant)
        # after early stopping, xgboost predicts with the best iteration on its own
        return self.model.predict_proba(X.to_numpy(float))[:, 1]

    def importance(self) -> dict[str, float]:
        if self.model is None:
            return {}
        gains = self.model.get_booster().get_score(importance_type="gain")
        return {self.columns[int(k[1:])]: float(v) for k, v in gains.items()}


class RandomForestSpike:
    """A shallow Random Forest with wide leaves (scikit-learn handles NaN natively)."""

    def __init__(self, seed: int = 0, n_estimators: int = 100, n_jobs: int = 1) -> None:
        self.seed = seed
        self.n_estimators = n_estimators
        self.n_jobs = n_jobs
        self.model: RandomForestClassifier | None = None
        self.columns: list[str] = []
        self._constant: float | None = None

    def fit(self, X, y, eval_set=None) -> RandomForestSpike:
        y = np.asarray(y, dtype=float)
        self.columns = list(X.columns)
        self._constant = _single_class_rate(y)
        if self._constant is not None:
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

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self._constant is not None:
            return np.full(len(X), self._constant)
        return self.model.predict_proba(X.to_numpy(float))[:, 1]

    def importance(self) -> dict[str, float]:
        if self.model is None:
            return {}
        return dict(zip(self.columns, map(float, self.model.feature_importances_), strict=True))


class MeanStack:
    """The mean of its members' probabilities."""

    def __init__(self, members: Sequence[Estimator]) -> None:
        self.members = list(members)

    def fit(self, X, y, eval_set=None) -> MeanStack:
        for member in self.members:
            member.fit(X, y, eval_set)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.mean([m.predict_proba(X) for m in self.members], axis=0)

    def importance(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for member in self.members:
            imp = member.importance()
            norm = sum(imp.values()) or 1.0
            for name, value in imp.items():
                total[name] = total.get(name, 0.0) + value / norm / len(self.members)
        return total


class PriorShift:
    """A fitted estimator whose log-odds are moved by a constant (a prior-shift correction).

    Spike rates move with the regime: a model fit on hours where 37 % of rows were spikes says
    so in calm hours too. The shift makes the mean predicted probability on recent training rows
    equal their observed spike rate. Rankings, and so PR-AUC, do not change.
    """

    def __init__(self, base: Estimator, shift: float = 0.0) -> None:
        self.base = base
        self.shift = shift

    @classmethod
    def to_rate(cls, base: Estimator, X: pd.DataFrame, rate: float) -> PriorShift:
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
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.shift == 0.0:
            return self.base.predict_proba(X)
        return _sigmoid(_logit(self.base.predict_proba(X)) + self.shift)

    def importance(self) -> dict[str, float]:
        return self.base.importance()


def ranking_baselines(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Unfitted baseline scores for ranking metrics (PR-AUC needs no calibration).

    ``zscore``: log of the 60 s / 300 s volatility ratio (missing -> 0, the trailing level);
    ``persistence``: log 60 s realized volatility (missing -> the median of these rows).
    """
    zscore = ZScoreBaseline().score(frame)
    persistence = PersistenceBaseline()
    raw = _log(frame[persistence.column]) if persistence.column in frame else np.array([])
    finite = raw[np.isfinite(raw)]
    persistence.fill = float(np.median(finite)) if len(finite) else 0.0
    return {"zscore": zscore, "persistence": persistence.score(frame)}


def make_estimator(kind: str, *, seed: int = 0, xgb: XGBoostParams | None = None) -> Estimator:
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
    ignored) and returns spike probabilities, never classes.
    """

    kind: str
    estimator: Any
    label: dict
    threshold: float
    feature_names: tuple[str, ...] = FEATURE_NAMES
    feature_set_version: str = FEATURE_SET_VERSION
    info: dict = field(default_factory=dict)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        X = feature_matrix(frame, self.feature_names)
        if X.empty:
            return np.empty(0)
        return np.asarray(self.estimator.predict_proba(X), dtype=float)

    def predict_array(self, X: np.ndarray) -> np.ndarray:
        """Spike probabilities of a 2-D float array whose columns are :attr:`feature_names`
        in order (NaN: missing). The serving path: no column matching by name."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(
                f"expected an array of shape (rows, {len(self.feature_names)}), got {X.shape}"
            )
        if len(X) == 0:
            return np.empty(0)
        frame = pd.DataFrame(X, columns=list(self.feature_names))
        return np.asarray(self.estimator.predict_proba(frame), dtype=float)

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
