"""What every spike scorer is, and the array helpers they share. Pure.

A scorer is fitted on a frame of feature columns (``feature_matrix``) and remembers their order as
``feature_names``; it scores a float array in that order (:meth:`Scorer.predict_array`, the
serving path: numpy only, no pandas per call) or a frame by column names
(:meth:`Scorer.predict_proba`). Its fitted parameters are data (:meth:`Scorer.to_params`): JSON
numbers, plus binary parts in a library's own format where a library holds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from tasks.core.features import FEATURE_NAMES

EPS = 1e-9


class ModelFormatError(ValueError):
    """A stored model document cannot be read (unknown format, version or scorer type)."""


def feature_matrix(
    frame: pd.DataFrame, names: Sequence[str] = FEATURE_NAMES, dtype=float
) -> pd.DataFrame:
    """The feature columns in order, as ``dtype``; missing columns become NaN, extra ones go."""
    X = frame.reindex(columns=list(names))
    text = [c for c, kind in X.dtypes.items() if not pd.api.types.is_numeric_dtype(kind)]
    if text:  # only columns that are not numbers already need parsing
        X[text] = X[text].apply(pd.to_numeric, errors="coerce")
    return X.astype(dtype)


def feature_dtype(frame: pd.DataFrame, names: Sequence[str] = FEATURE_NAMES) -> type:
    """float32 when every feature column ``frame`` has is single precision (training loads
    them so), else float64: the precision a feature array of these rows loses nothing in."""
    kinds = {frame[c].dtype for c in names if c in frame}
    return np.float32 if kinds == {np.dtype(np.float32)} else np.float64


def fit_array(X: pd.DataFrame) -> np.ndarray:
    """The rows a scorer is fitted on as one array in their own precision (:func:`feature_dtype`):
    a view of a training design's block, not a float64 copy of it."""
    return X.to_numpy(feature_dtype(X, X.columns))


def log_or_nan(values: np.ndarray) -> np.ndarray:
    """log(max(x, 0) + EPS); NaN where x is missing."""
    arr = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(np.clip(arr, 0.0, None) + EPS)
    out[~np.isfinite(arr)] = np.nan
    return out


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def floats(values) -> list[float]:
    """A JSON list of floats from any array."""
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


def column(A: np.ndarray, names: Sequence[str], name: str) -> np.ndarray:
    """One column of a feature array by name (all NaN when the array does not have it)."""
    if name in names:
        return A[:, list(names).index(name)]
    return np.full(len(A), np.nan)


def positions(names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """Where each wanted column sits in a feature array (-1: the array lacks it)."""
    names = list(names)
    return np.array([names.index(c) if c in names else -1 for c in wanted], dtype=int)


def take(A: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The columns at ``where`` (from :func:`positions`); an absent one (-1) is all NaN."""
    out = A[:, np.maximum(where, 0)]
    if (where < 0).any():
        out = out.copy()
        out[:, where < 0] = np.nan
    return out


def floor_of(values: np.ndarray) -> float:
    """1 % of the median of the positive values: a floor under which logs are not trusted
    (a calm minute has zero volatility, which is very low but no outlier)."""
    values = np.asarray(values, dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    return 0.01 * float(np.median(positive)) if len(positive) else EPS


def blob_name(blobs: dict[str, bytes], stem: str, suffix: str) -> str:
    name = f"{stem}-{len(blobs)}.{suffix}"
    while name in blobs:
        name = f"{stem}-{len(blobs) + 1}.{suffix}"
    return name


@dataclass(frozen=True)
class FitTarget:
    """What a regression scorer learns besides the 0/1 label: the continuous quantity the label
    thresholds (forward volatility, or its ratio to the trailing volatility for the relative
    label) and the threshold (tau, or k)."""

    values: np.ndarray
    threshold: float
    relative: bool = False


class Scorer:
    """What every scorer implements."""

    type_name: ClassVar[str]
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        eval_set: tuple[pd.DataFrame, np.ndarray] | None = None,
        target: FitTarget | None = None,
    ) -> Scorer:
        """Fit on feature rows ``X`` and labels ``y``; ``eval_set`` (rows after an embargo,
        from the training part) is for early stopping and tuning; ``target`` for regressions."""
        raise NotImplementedError

    def predict_array(self, A: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if len(X) == 0:
            return np.empty(0)
        return self.predict_array(feature_matrix(X, self.feature_names).to_numpy())

    def importance(self) -> dict[str, float]:
        raise NotImplementedError

    def to_params(self, blobs: dict[str, bytes]) -> dict:
        """The fitted parameters as JSON-able data; binary parts are added to ``blobs``."""
        raise NotImplementedError

    @classmethod
    def from_params(cls, params: dict, blobs: Mapping[str, bytes]) -> Scorer:
        raise NotImplementedError
