"""Spike scorers: the baselines, the candidate models, and the predictor that gets served. Pure.

Every scorer (:class:`tasks.core.scorer.Scorer`) returns one spike probability per row, from a
frame of feature rows (columns by name, in any order) or from a float array in its feature order
(the serving path). Missing inputs are NaN and every scorer copes with them.

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

Candidates (:data:`CANDIDATES`): the HAR logistic classifier and the HAR-RV regression
(:mod:`tasks.core.linear_models`), and ``stack``, the mean of their probabilities. XGBoost and a
Random Forest (:mod:`tasks.core.tree_models`) can still be asked for, but are no default
candidates: left out of one session, neither ranked as well as persistence on ../shared/data,
and the forest scores a row in about 4 ms, over the serving budget.

Fitted parameters are data: :meth:`SpikePredictor.to_document` gives a JSON-able document (the
coefficients, medians, floors... of every scorer, the feature order, label and threshold) and
named binary parts in their library's own format (XGBoost UBJSON, skops for scikit-learn
forests); :meth:`SpikePredictor.from_document` rebuilds the predictor from them. No pickle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from tasks.core.features import FEATURE_NAMES, FEATURE_SET_VERSION
from tasks.core.linear_models import HAR_COLUMNS, HarLogistic, HarRvRegression
from tasks.core.scorer import (
    ModelFormatError,
    Scorer,
    column,
    feature_matrix,
    fit_array,
    log_or_nan,
    logit,
    sigmoid,
)
from tasks.core.tree_models import RandomForestSpike, XGBoostParams, XGBoostSpike

__all__ = [
    "BASELINES",
    "CANDIDATES",
    "HAR_COLUMNS",
    "INPUT_FAMILIES",
    "HarLogistic",
    "HarRvRegression",
    "LogitBlend",
    "MeanStack",
    "ModelFormatError",
    "PersistenceBaseline",
    "PriorShift",
    "RandomForestSpike",
    "Scorer",
    "SpikePredictor",
    "XGBoostParams",
    "XGBoostSpike",
    "ZScoreBaseline",
    "feature_matrix",
    "make_estimator",
    "ranking_baselines",
]

PERSISTENCE_COLUMN = "realized_vol_60"
ZSCORE_COLUMN = "vol_ratio_60_300"
BASELINES = ("zscore", "persistence")
CANDIDATES = ("har_vol", "har_rv", "blend")
OPTIONAL_CANDIDATES = ("har_logistic", "stack", "xgboost", "xgboost_monotone", "random_forest")
STACK_MEMBERS = ("har_logistic", "har_rv")
BLEND_MEMBERS = ("har_rv", "persistence")  # the model, and what it is blended with
# what XGBoost's probability may only rise with (``xgboost_monotone``)
VOLATILITY_INPUTS = (
    "realized_vol_30",
    "realized_vol_60",
    "realized_vol_300",
    "realized_vol_1s_60",
    "realized_vol_1s_300",
    "ret_std",
)
DOCUMENT_FORMAT = "cryptovol-predictor"
DOCUMENT_VERSION = 1

# Features that go missing together, by the input they come from: a feed without best bid/ask
# quantities has no imbalance, a recording without the book no spread, a restart no 300 s history.
INPUT_FAMILIES: dict[str, tuple[str, ...]] = {
    "tick_volatility": (
        "realized_vol_30",
        "realized_vol_60",
        "realized_vol_300",
        "ret_std",
        "ret_mean",
    ),
    "grid_volatility": (
        "realized_vol_1s_60",
        "realized_vol_1s_300",
        "vol_ratio_30_300",
        "vol_ratio_60_300",
    ),
    "range": ("range_bps_30", "range_bps_60", "range_bps_300"),
    "spread": (
        "spread_bps_mean_30",
        "spread_bps_mean_60",
        "spread_bps_mean_300",
        "spread_bps",
        "spread_bps_ratio_30_900",
        "spread_bps_ratio_60_900",
    ),
    "imbalance": ("imbalance_mean_30", "imbalance_mean_60", "imbalance_mean_300", "imbalance"),
    "tick_intensity": (
        "tick_intensity_30",
        "tick_intensity_60",
        "tick_intensity_300",
        "n",
        "tick_intensity_ratio_30_900",
        "tick_intensity_ratio_60_900",
    ),
    "history_300s": tuple(n for n in FEATURE_NAMES if n.endswith("_300")),
}


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
        return sigmoid(self.intercept + self.coef * score)


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
        raw = log_or_nan(column(fit_array(X), self.feature_names, self.column))
        return raw[np.isfinite(raw)]

    def _calibrate(self, X: pd.DataFrame, y) -> None:
        """The calibration on the rows the baseline was fitted on (in ``feature_names`` order)."""
        self.calibration.fit(self.score_array(fit_array(X)), np.asarray(y, dtype=float))

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
        s = log_or_nan(column(A, self.feature_names, self.column))
        return np.where(np.isnan(s), self.fill, s)

    def fit(self, X, y, eval_set=None, target=None) -> PersistenceBaseline:
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
        z = (log_or_nan(column(A, self.feature_names, self.column)) - self.mu) / self.sd
        return np.where(np.isnan(z), 0.0, z)

    def fit(self, X, y, eval_set=None, target=None) -> ZScoreBaseline:
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


class MeanStack(Scorer):
    """The mean of its members' probabilities (members share the feature order)."""

    type_name = "mean"

    def __init__(self, members: Sequence[Scorer]) -> None:
        self.members = list(members)
        if self.members:
            self.feature_names = self.members[0].feature_names

    def fit(self, X, y, eval_set=None, target=None) -> MeanStack:
        self.feature_names = tuple(X.columns)
        for member in self.members:
            member.fit(X, y, eval_set, target)
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


class LogitBlend(Scorer):
    """A model blended with persistence: ``sigmoid(w * logit(p_model) + (1 - w) *
    logit(p_persistence))``. ``w`` is learned on held-out days (``tasks.core.training``): 0 is
    persistence alone, 1 the model alone."""

    type_name = "blend"

    def __init__(self, model: Scorer, persistence: Scorer, weight: float = 0.5) -> None:
        self.model = model
        self.persistence = persistence
        self.weight = weight
        self.feature_names = model.feature_names

    def fit(self, X, y, eval_set=None, target=None) -> LogitBlend:
        """Fit both members; the weight stays (training learns it on held-out days)."""
        self.model.fit(X, y, eval_set, target)
        self.persistence.fit(X, y, eval_set, target)
        self.feature_names = self.model.feature_names
        return self

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        z = self.weight * logit(self.model.predict_array(A))
        return sigmoid(z + (1.0 - self.weight) * logit(self.persistence.predict_array(A)))

    def importance(self) -> dict[str, float]:
        return {name: value * self.weight for name, value in self.model.importance().items()} | {
            PERSISTENCE_COLUMN: 1.0 - self.weight
        }

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        return {
            "type": self.type_name,
            "weight": self.weight,
            "model": self.model.to_params(blobs),
            "persistence": self.persistence.to_params(blobs),
        }

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> LogitBlend:
        return cls(
            scorer_from_params(params["model"], blobs),
            scorer_from_params(params["persistence"], blobs),
            float(params["weight"]),
        )


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
        logits = logit(base.predict_proba(X))
        low, high = -20.0, 20.0
        for _ in range(60):
            mid = (low + high) / 2
            if sigmoid(logits + mid).mean() < rate:
                low = mid
            else:
                high = mid
        return cls(base, (low + high) / 2)

    def fit(self, X, y, eval_set=None, target=None) -> PriorShift:
        self.base.fit(X, y, eval_set, target)
        self.feature_names = self.base.feature_names
        return self

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        if self.shift == 0.0:
            return self.base.predict_array(A)
        return sigmoid(logit(self.base.predict_array(A)) + self.shift)

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
        HarRvRegression,
        XGBoostSpike,
        RandomForestSpike,
        MeanStack,
        LogitBlend,
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
    raw = np.asarray(
        log_or_nan(frame[persistence.column].to_numpy(float)) if persistence.column in frame else []
    )
    finite = raw[np.isfinite(raw)]
    persistence.fill = float(np.median(finite)) if len(finite) else 0.0
    return {"zscore": zscore, "persistence": persistence.score(frame)}


def make_estimator(
    kind: str, *, seed: int = 0, xgb: XGBoostParams | None = None, **hyper: float
) -> Scorer:
    """A fresh, unfitted scorer of the given kind (``hyper``: ``C`` or ``alpha``)."""
    if kind == "persistence":
        return PersistenceBaseline()
    if kind == "zscore":
        return ZScoreBaseline()
    if kind == "har_logistic":
        return HarLogistic(C=hyper.get("C", 1.0))
    if kind == "har_rv":
        return HarRvRegression(alpha=hyper.get("alpha", 30.0))
    if kind == "har_vol":
        return HarRvRegression(alpha=hyper.get("alpha", 30.0), volatility_only=True)
    if kind == "xgboost":
        return XGBoostSpike(xgb, seed=seed)
    if kind == "xgboost_monotone":
        return XGBoostSpike(replace(xgb or XGBoostParams(), increasing_in=VOLATILITY_INPUTS), seed)
    if kind == "random_forest":
        return RandomForestSpike(seed=seed)
    if kind == "blend":
        return LogitBlend(make_estimator(BLEND_MEMBERS[0], **hyper), PersistenceBaseline())
    if kind == "stack":
        return MeanStack([make_estimator(m, seed=seed, xgb=xgb) for m in STACK_MEMBERS])
    known = (*BASELINES, *CANDIDATES, *OPTIONAL_CANDIDATES)
    raise ValueError(f"unknown model kind {kind!r}; known: {known}")


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
