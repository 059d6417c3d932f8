"""Linear scorers on log volatilities: the HAR logistic classifier and the HAR-RV regression. Pure.

Both take logs of volatilities over several horizons (HAR: heterogeneous autoregression), each
floored at 1 % of its training median (a calm minute has zero volatility: very low, but no
outlier 20 log-units away). Missing inputs are imputed with training medians and flagged by an
indicator, so a row without some inputs is told apart from an average one. Scoring is numpy only:
standardized inputs times coefficients.

- :class:`HarLogistic` classifies the thresholded label directly.
- :class:`HarRvRegression` models the forward volatility itself and derives the spike probability
  from the predicted distribution. It is built to carry over to markets it never saw: its inputs
  are scale-free (volatilities and ranges as log ratios to a current volatility level, tick
  intensity and spread as ratios to their 900 s regime levels, order-book imbalance), and it
  predicts log forward volatility as that current level plus a learned log ratio, so a regime
  twice as volatile as any in training moves the prediction by exactly log 2, not back to the
  training mean.

Their hyper-parameters (``C``, ``alpha``; grids below) are chosen by the training pipeline on the
embargoed tail of each training part (``tasks.core.training``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.special import expit, ndtr
from sklearn.linear_model import LogisticRegression

from tasks.core.features import FEATURE_NAMES
from tasks.core.scorer import (
    EPS,
    FitTarget,
    Scorer,
    fit_array,
    floats,
    floor_of,
    positions,
    take,
)

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
C_GRID = (0.1, 1.0, 10.0)
ALPHA_GRID = (1.0, 30.0, 1000.0)


def column_stds(Z: np.ndarray) -> np.ndarray:
    """``Z.std(axis=0)`` of a design with an even number of columns, two columns at a time: the
    same figures (each column is summed in row order either way) without a temporary copy of
    the whole design."""
    return np.concatenate([Z[:, i : i + 2].std(axis=0) for i in range(0, Z.shape[1], 2)])


def _median(values: np.ndarray) -> float:
    """The median of the finite values; 0 when there are none (a column absent in training)."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else 0.0


class HarLogistic(Scorer):
    """Logistic regression on standardized log volatilities of several horizons (HAR-style)."""

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
        self.feature_names = tuple(feature_names)
        self._where = positions(self.feature_names, self.columns)

    def _inputs(self, A: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            logs = np.log(np.maximum(take(A, self._where), self.floors))  # NaN stays NaN
        missing = np.isnan(logs)
        filled = np.where(missing, self.medians, logs)
        return np.hstack([filled, missing.astype(float)])

    def fit(self, X, y, eval_set=None, target=None) -> HarLogistic:
        y = np.asarray(y, dtype=float)
        self._bind(X.columns)
        A = fit_array(X)
        raw = take(A, self._where)
        self.floors = np.array([floor_of(raw[:, i]) for i in range(len(self.columns))])
        with np.errstate(invalid="ignore"):
            logs = np.log(np.maximum(raw, self.floors))
        self.medians = np.array([_median(logs[:, i]) for i in range(len(self.columns))])
        Z = self._inputs(A)
        self.means = Z.mean(axis=0)
        stds = column_stds(Z)
        self.stds = np.where(stds > 0, stds, 1.0)
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
            "floors": floats(self.floors),
            "medians": floats(self.medians),
            "means": floats(self.means),
            "stds": floats(self.stds),
            "coef": None if self.coef is None else floats(self.coef),
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


# The current volatility level, in order of preference; when one is missing the next stands in,
# moved by its median log ratio to the first on training rows.
ANCHORS = (
    "realized_vol_1s_300",
    "realized_vol_300",
    "realized_vol_1s_60",
    "realized_vol_60",
    "realized_vol_30",
)
LEVELS = ("realized_vol_1s_60", "realized_vol_30", "realized_vol_60", "realized_vol_300")
RANGES = ("range_bps_30", "range_bps_60", "range_bps_300")  # bps: scaled to a return first
# Tick intensity and spread against their own trailing level: a (numerator, denominator) pair,
# or a feature that is a ratio already (denominator None). Since fs2 the level is the engine's
# 900 s regime window; models stored before it compare with the 300 s window (FS1_RATIOS).
RATIOS: tuple[tuple[str, str | None], ...] = (
    ("tick_intensity_ratio_30_900", None),
    ("tick_intensity_ratio_60_900", None),
    ("spread_bps_ratio_30_900", None),
    ("spread_bps_ratio_60_900", None),
)
FS1_RATIOS: tuple[tuple[str, str | None], ...] = (
    ("tick_intensity_30", "tick_intensity_300"),
    ("tick_intensity_60", "tick_intensity_300"),
    ("spread_bps_mean_30", "spread_bps_mean_300"),
    ("spread_bps_mean_60", "spread_bps_mean_300"),
)
PLAIN = ("imbalance_mean_60", "imbalance_mean_300")


class HarRvRegression(Scorer):
    """HAR-RV: a ridge regression of log forward volatility, and P(forward >= threshold).

    Absolute label: the target is ``log fwd_vol - log anchor`` (the anchor: the current 300 s
    1-second-grid volatility, or the next available level); the prediction is ``log anchor +``
    the fitted ratio. Relative label: the target is ``log(fwd_vol / trail_vol)``, already
    scale-free. Inputs: every level and range as a log ratio to the anchor, tick intensity and
    spread as log ratios to their 900 s regime levels, imbalance. The residuals' spread
    ``sigma`` gives the distribution: ``P = Phi((mu - log threshold) / sigma)``. The threshold
    (tau, or k) is a stored parameter: it could change without refitting.
    """

    type_name = "har_rv"

    def __init__(
        self,
        alpha: float = 30.0,
        volatility_only: bool = False,
        ratios: Sequence[Sequence[str | None]] = RATIOS,
    ) -> None:
        self.alpha = alpha
        self.volatility_only = volatility_only  # HAR on log volatilities alone (``har_vol``)
        self.ratios = tuple((a, b) for a, b in ratios)
        self.relative = False
        self.log_threshold = 0.0
        self.target_floor = EPS
        self.floors: dict[str, float] = {}
        self.anchor_offsets = np.zeros(len(ANCHORS))
        self.anchor_fill = 0.0
        self.medians = np.zeros(self._n_inputs())
        self.means = np.zeros(2 * self._n_inputs())
        self.stds = np.ones(2 * self._n_inputs())
        self.coef = np.zeros(2 * self._n_inputs())
        self.intercept = 0.0
        self.sigma = 1.0
        self._bind(FEATURE_NAMES)

    def _n_inputs(self) -> int:
        if self.volatility_only:
            return len(LEVELS)
        return len(LEVELS) + len(RANGES) + len(self.ratios) + len(PLAIN)

    def _columns(self) -> tuple[str, ...]:
        numerators = tuple(a for a, _ in self.ratios)
        denominators = tuple(b for _, b in self.ratios if b is not None)
        return (*ANCHORS, *LEVELS, *RANGES, *numerators, *denominators, *PLAIN)

    def _bind(self, feature_names: Sequence[str]) -> None:
        self.feature_names = tuple(feature_names)
        self._where = positions(self.feature_names, self._columns())
        floors = [self.floors.get(c, EPS) for c in self._columns()]
        scale = [1e-4 if c in RANGES else 1.0 for c in self._columns()]
        self._scale = np.array(scale)
        self._floor_row = np.array(floors) * self._scale

    def _log_anchor(self, logs: np.ndarray) -> np.ndarray:
        level = logs[:, 0] + self.anchor_offsets[0]
        for i in range(1, len(ANCHORS)):
            level = np.where(np.isnan(level), logs[:, i] + self.anchor_offsets[i], level)
        return np.where(np.isnan(level), self.anchor_fill, level)

    def _logs(self, A: np.ndarray, at: slice) -> np.ndarray:
        """Logs of the inputs ``at`` these of :meth:`_columns`: scaled, floored, NaN kept."""
        logs = np.asarray(take(A, self._where[at]), dtype=np.float64)
        logs *= self._scale[at]
        with np.errstate(invalid="ignore", divide="ignore"):
            np.maximum(logs, self._floor_row[at], out=logs)
            np.log(logs, out=logs)
        return logs

    def _design(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standardized inputs (with missing indicators) and the log anchor of each row.

        The inputs are written group by group straight into the design: on a training part
        with its blanked copies it is the largest array training holds, so no other array of
        its size is made beside it."""
        n_a, n_l, n_r, n_q = len(ANCHORS), len(LEVELS), len(RANGES), len(self.ratios)
        m = self._n_inputs()
        anchor = self._log_anchor(self._logs(A, slice(0, n_a)))
        Z = np.empty((len(A), 2 * m))  # the inputs, then their missing indicators
        inputs = Z[:, :m]
        scaled = min(m, n_l + n_r)  # levels and ranges as log ratios to the anchor come first
        np.subtract(
            self._logs(A, slice(n_a, n_a + scaled)), anchor[:, None], out=inputs[:, :scaled]
        )
        if m > n_l + n_r:
            at = n_a + n_l + n_r
            with_den = [i for i, (_, b) in enumerate(self.ratios) if b is not None]
            ratios = inputs[:, n_l + n_r : n_l + n_r + n_q]
            ratios[:] = self._logs(A, slice(at, at + n_q))
            if with_den:
                ratios[:, with_den] -= self._logs(A, slice(at + n_q, at + n_q + len(with_den)))
            inputs[:, n_l + n_r + n_q :] = take(A, self._where[at + n_q + len(with_den) :])
        missing = np.isnan(inputs)
        np.copyto(inputs, np.broadcast_to(self.medians, inputs.shape), where=missing)
        Z[:, m:] = missing
        del missing
        with np.errstate(over="ignore", invalid="ignore"):  # an extreme row: refused by its caller
            Z -= self.means
            Z /= self.stds
        return Z, anchor

    def _mean(self, A: np.ndarray) -> np.ndarray:
        """The predicted mean of the log target (log forward volatility, or log ratio)."""
        Z, anchor = self._design(A)
        with np.errstate(over="ignore", invalid="ignore"):
            mu = Z @ self.coef + self.intercept
        return mu if self.relative else mu + anchor

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        return ndtr((self._mean(A) - self.log_threshold) / self.sigma)

    def fit(self, X, y, eval_set=None, target: FitTarget | None = None) -> HarRvRegression:
        if target is None:
            raise ValueError("har_rv learns the forward volatility: fit it with a FitTarget")
        A = fit_array(X)
        names = tuple(X.columns)
        self.relative = target.relative
        values = np.asarray(target.values, dtype=float)
        self.target_floor = floor_of(values)
        self.log_threshold = float(np.log(max(target.threshold, self.target_floor)))
        self.floors = {}
        self._bind(names)
        raw = take(A, self._where)
        self.floors = {c: floor_of(raw[:, i]) for i, c in enumerate(self._columns())}
        self._bind(names)
        with np.errstate(invalid="ignore", divide="ignore"):
            anchors = np.log(np.maximum(raw[:, : len(ANCHORS)], self._floor_row[: len(ANCHORS)]))
        gaps = [_median(anchors[:, 0] - anchors[:, i]) for i in range(len(ANCHORS))]
        self.anchor_offsets = np.array(gaps, dtype=float)
        self.anchor_fill = _median(anchors[:, 0])
        del raw, anchors  # the design below is the large array
        m = self._n_inputs()
        self.medians = np.full(m, np.nan)  # so the design leaves missing inputs missing,
        self.means = np.zeros(2 * m)  # unmoved
        self.stds = np.ones(2 * m)  # and unscaled
        Z, anchor = self._design(A)
        inputs = Z[:, :m]
        self.medians = np.array([_median(inputs[:, i]) for i in range(m)])
        np.copyto(inputs, np.broadcast_to(self.medians, inputs.shape), where=Z[:, m:] > 0)
        self.means = Z.mean(axis=0)
        stds = column_stds(Z)
        self.stds = np.where(stds > 0, stds, 1.0)
        Z -= self.means
        Z /= self.stds  # now what _design gives with the fitted values, made once
        y = np.log(np.maximum(values, self.target_floor))
        if not self.relative:
            y = y - anchor
        keep = np.isfinite(y)
        if not keep.all():
            Z, y = Z[keep], y[keep]
        mean_y = float(y.mean()) if len(y) else 0.0
        gram = Z.T @ Z + self.alpha * np.eye(Z.shape[1])
        self.coef = np.linalg.solve(gram, Z.T @ (y - mean_y)) if len(y) else self.coef
        self.intercept = mean_y
        residuals = y - (Z @ self.coef + self.intercept)
        self.sigma = float(residuals.std()) if len(residuals) > 1 else 1.0
        self.sigma = max(self.sigma, 1e-3)
        return self

    def importance(self) -> dict[str, float]:
        inputs = [f"log_{c}/anchor" for c in (*LEVELS, *RANGES)]
        inputs += [f"log_{a}/{b}" if b else f"log_{a}" for a, b in self.ratios] + list(PLAIN)
        inputs = inputs[: self._n_inputs()]
        names = inputs + [f"missing_{n}" for n in inputs]
        return {n: float(abs(w)) for n, w in zip(names, self.coef, strict=True) if w != 0.0}

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        return {
            "type": self.type_name,
            "feature_names": list(self.feature_names),
            "alpha": self.alpha,
            "volatility_only": self.volatility_only,
            "ratios": [list(pair) for pair in self.ratios],
            "relative": self.relative,
            "log_threshold": self.log_threshold,
            "target_floor": self.target_floor,
            "anchors": list(ANCHORS),
            "floors": {c: float(v) for c, v in self.floors.items()},
            "anchor_offsets": floats(self.anchor_offsets),
            "anchor_fill": self.anchor_fill,
            "medians": floats(self.medians),
            "means": floats(self.means),
            "stds": floats(self.stds),
            "coef": floats(self.coef),
            "intercept": self.intercept,
            "sigma": self.sigma,
        }

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> HarRvRegression:
        out = cls(
            params["alpha"],
            bool(params.get("volatility_only", False)),
            params.get("ratios", FS1_RATIOS),  # stored before fs2: the 300 s levels
        )
        if tuple(params["anchors"]) != ANCHORS:
            raise ValueError(f"har_rv anchors {params['anchors']} are not this code's {ANCHORS}")
        out.relative = bool(params["relative"])
        out.log_threshold = float(params["log_threshold"])
        out.target_floor = float(params["target_floor"])
        out.floors = {c: float(v) for c, v in params["floors"].items()}
        out.anchor_offsets = np.asarray(params["anchor_offsets"], dtype=float)
        out.anchor_fill = float(params["anchor_fill"])
        for name in ("medians", "means", "stds", "coef"):
            setattr(out, name, np.asarray(params[name], dtype=float))
        out.intercept, out.sigma = float(params["intercept"]), float(params["sigma"])
        out._bind(params["feature_names"])
        return out
