"""Labels: forward realized volatility on a 1-second grid, and the spike rule. Pure.

Per product, the grid holds the last mid price at or before each whole second. It is split into
segments wherever two consecutive ticks are more than ``max_gap_s`` (10 s) apart, and the grid
covers only the seconds between a segment's first and last tick, so no grid second is more than
10 s staler than its data. A 1-second return is ``log(mid_s / mid_{s-1})`` inside a segment.

- Forward volatility at ``t``: ``sqrt(sum r_s^2)`` over ``s`` in ``(t, t + h]`` (h = 60 s): it
  excludes the return into ``t`` and includes the one into ``t + h``. NaN when ``t + h`` lies past
  the end of the segment (a gap or the end of the data).
- Trailing volatility at ``t``: the returns over ``(t - T, t]`` (T = 900 s, past data only, same
  segment), scaled to the horizon: ``sqrt(sum r_s^2 * h / m)`` with ``m`` the returns available;
  NaN while fewer than half the window is available.

:class:`LabelSpec` turns these into a 0/1 spike label and travels with the model as JSON.
Horizons are seconds, never ticks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

LABEL_MAX_GAP_S = 10.0
HORIZON_S = 60
TRAILING_S = 900


def second_grid(ticks: pd.DataFrame, max_gap_s: float = LABEL_MAX_GAP_S) -> pd.DataFrame:
    """The 1-second grid of mid prices per product.

    ``ticks`` has columns ``product_id``, ``ts`` (epoch seconds) and ``mid``, in time order within
    each product (ties keep their order: the later row wins). Returns one row per product and
    grid second with ``product_id``, ``second`` (int64 epoch s), ``mid``, ``segment`` (int64, per
    product) and ``tick_row`` (position in ``ticks`` of the last tick at or before the second).
    """
    parts = []
    for product, rows in ticks.groupby("product_id", sort=True).indices.items():
        rows = np.asarray(rows)
        ts = ticks["ts"].to_numpy(dtype=np.float64)[rows]
        if np.any(np.diff(ts) < 0):
            raise ValueError(f"ticks of {product} are not in time order")
        mids = ticks["mid"].to_numpy(dtype=np.float64)[rows]
        breaks = np.flatnonzero(np.diff(ts) > max_gap_s) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [len(ts)]))
        for segment, (start, end) in enumerate(zip(starts, ends, strict=True)):
            seg_ts = ts[start:end]
            seconds = np.arange(math.ceil(seg_ts[0]), math.floor(seg_ts[-1]) + 1, dtype=np.int64)
            if not len(seconds):
                continue
            last = start + np.searchsorted(seg_ts, seconds, side="right") - 1
            parts.append(
                pd.DataFrame(
                    {
                        "product_id": product,
                        "second": seconds,
                        "mid": mids[last],
                        "segment": np.int64(segment),
                        "tick_row": rows[last].astype(np.int64),
                    }
                )
            )
    if not parts:
        return pd.DataFrame(
            {
                "product_id": pd.Series(dtype=object),
                "second": pd.Series(dtype=np.int64),
                "mid": pd.Series(dtype=np.float64),
                "segment": pd.Series(dtype=np.int64),
                "tick_row": pd.Series(dtype=np.int64),
            }
        )
    return pd.concat(parts, ignore_index=True)


def _squared_returns_by_segment(grid: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per segment: its row positions in ``grid`` and its squared 1-s returns (first is NaN)."""
    out = []
    log_mid = np.log(grid["mid"].to_numpy(dtype=np.float64))
    keys = grid[["product_id", "segment"]]
    for rows in keys.groupby(["product_id", "segment"], sort=False).indices.values():
        rows = np.asarray(rows)
        r2 = np.empty(len(rows))
        r2[0] = np.nan
        r2[1:] = np.diff(log_mid[rows]) ** 2
        out.append((rows, r2))
    return out


def _window_sums(r2: np.ndarray, width: int) -> np.ndarray:
    """Sums of ``r2[i - width + 1 .. i]`` for every ``i`` (partial at the start), first term 0."""
    cumulative = np.cumsum(np.nan_to_num(r2, nan=0.0))
    sums = cumulative.copy()
    sums[width:] -= cumulative[:-width]
    return np.maximum(sums, 0.0)


def forward_realized_vol(grid: pd.DataFrame, horizon_s: int = HORIZON_S) -> pd.Series:
    """Realized volatility of the 1-s returns over ``(t, t + horizon_s]``; NaN past the segment."""
    fwd = np.full(len(grid), np.nan)
    for rows, r2 in _squared_returns_by_segment(grid):
        if len(rows) <= horizon_s:
            continue
        sums = _window_sums(r2, horizon_s)  # sums[j]: returns j - h + 1 .. j
        fwd[rows[:-horizon_s]] = np.sqrt(sums[horizon_s:])
    return pd.Series(fwd, index=grid.index, name=f"fwd_vol_{horizon_s}")


def trailing_realized_vol(
    grid: pd.DataFrame,
    trailing_s: int = TRAILING_S,
    horizon_s: int = HORIZON_S,
    min_fraction: float = 0.5,
) -> pd.Series:
    """Realized volatility of the past ``trailing_s`` seconds' 1-s returns, scaled to the horizon.

    Uses the returns into seconds ``(t - trailing_s, t]`` of the same segment only.
    """
    trail = np.full(len(grid), np.nan)
    for rows, r2 in _squared_returns_by_segment(grid):
        available = np.minimum(np.arange(len(rows)), trailing_s)  # returns in the window
        enough = available >= min_fraction * trailing_s
        if not enough.any():
            continue
        sums = _window_sums(r2, trailing_s)
        trail[rows[enough]] = np.sqrt(sums[enough] * horizon_s / available[enough])
    return pd.Series(trail, index=grid.index, name=f"trail_vol_{trailing_s}")


@dataclass(frozen=True)
class LabelSpec:
    """The spike label; fitted on training rows only and persisted with the model.

    ``absolute``: spike when the forward volatility is at or above ``tau``, the ``quantile`` of
    the training rows' forward volatility. ``relative``: spike when it is at or above ``k`` times
    the trailing volatility (a surge against the current regime; nothing to fit).
    """

    mode: Literal["absolute", "relative"] = "absolute"
    horizon_s: int = HORIZON_S
    quantile: float = 0.9
    k: float = 2.0
    trailing_s: int = TRAILING_S
    tau: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("absolute", "relative"):
            raise ValueError(f"unknown label mode {self.mode!r}")
        if self.horizon_s <= 0 or self.trailing_s <= 0:
            raise ValueError("horizon_s and trailing_s must be positive seconds")
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), not {self.quantile}")
        if self.k <= 0:
            raise ValueError(f"k must be positive, not {self.k}")

    @property
    def fwd_column(self) -> str:
        return f"fwd_vol_{self.horizon_s}"

    @property
    def trail_column(self) -> str:
        return f"trail_vol_{self.trailing_s}"

    def fit(self, frame: pd.DataFrame) -> LabelSpec:
        """Absolute mode: tau from the given (training) rows; relative mode: unchanged."""
        if self.mode == "relative":
            return self
        fwd = frame[self.fwd_column].to_numpy(dtype=np.float64)
        fwd = fwd[~np.isnan(fwd)]
        if not len(fwd):
            raise ValueError(f"no labelled rows to fit tau on ({self.fwd_column} is all NaN)")
        return replace(self, tau=float(np.quantile(fwd, self.quantile)))

    def apply(self, frame: pd.DataFrame) -> pd.Series:
        """1.0 for a spike, 0.0 for none, NaN where the inputs are missing."""
        fwd = frame[self.fwd_column].to_numpy(dtype=np.float64)
        if self.mode == "absolute":
            if self.tau is None:
                raise ValueError("absolute label needs tau: fit the spec on training rows first")
            threshold = np.full(len(fwd), self.tau)
        else:
            trail = frame[self.trail_column].to_numpy(dtype=np.float64)
            # no regime to compare against when the trailing volatility is missing or zero
            threshold = np.where(trail > 0.0, self.k * trail, np.nan)
        label = (fwd >= threshold).astype(np.float64)
        label[np.isnan(fwd) | np.isnan(threshold)] = np.nan
        return pd.Series(label, index=frame.index, name="label")

    def target_values(self, frame: pd.DataFrame) -> np.ndarray:
        """The continuous quantity the label thresholds at :attr:`threshold_value`: the forward
        volatility (absolute), or its ratio to the trailing volatility (relative; NaN where the
        trailing volatility is missing or zero). A spike is ``target >= threshold``."""
        fwd = frame[self.fwd_column].to_numpy(dtype=np.float64)
        if self.mode == "absolute":
            return fwd
        trail = frame[self.trail_column].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(trail > 0.0, fwd / trail, np.nan)

    @property
    def threshold_value(self) -> float:
        """tau (absolute) or k (relative)."""
        if self.mode == "relative":
            return self.k
        if self.tau is None:
            raise ValueError("absolute label needs tau: fit the spec on training rows first")
        return self.tau

    def labelled(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """The rows that have a label, and their labels (the one labelled-rows filter)."""
        y = self.apply(frame)
        keep = y.notna().to_numpy()
        return frame[keep], y.to_numpy(dtype=np.float64)[keep]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSpec:
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown label spec fields: {sorted(unknown)}")
        return cls(**data)


def add_label_columns(
    grid: pd.DataFrame, horizon_s: int = HORIZON_S, trailing_s: int = TRAILING_S
) -> pd.DataFrame:
    """``grid`` with ``fwd_vol_<h>`` and ``trail_vol_<T>`` added."""
    out = grid.copy()
    out[f"fwd_vol_{horizon_s}"] = forward_realized_vol(grid, horizon_s)
    out[f"trail_vol_{trailing_s}"] = trailing_realized_vol(grid, trailing_s, horizon_s)
    return out
