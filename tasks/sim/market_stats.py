"""Stylized facts of a ticker stream, to calibrate the simulator against real recordings. Pure.

Everything is measured per product on a one-second grid of event time: the mid price at the end
of each second (carried forward through seconds without ticks), ticks per second, the mean spread
and the last best quantities. A new segment starts at every new source (file) and after any gap
longer than ``max_gap_s``, and no return or lag ever spans two segments.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tasks.core.messages import Tick

ACF_LAGS = (1, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class SecondGrid:
    """Per-second series of one product; arrays of equal length, ``segment`` ids ascending."""

    segment: np.ndarray  # int
    count: np.ndarray  # ticks in the second
    ret_bps: np.ndarray  # log mid return over the second, NaN at a segment's first second
    spread_bps: np.ndarray  # mean spread of the second's ticks, NaN without ticks
    imbalance: np.ndarray  # (bid qty - ask qty) / (bid qty + ask qty) at the second's end


def statistics_grid(ticks: Iterable[Tick], max_gap_s: float = 30.0) -> SecondGrid:
    """The one-second grid of the ticks of a single product, in the order given (time order)."""
    rows = [
        (t.ts, t.source, t.best_bid, t.best_ask, t.best_bid_quantity, t.best_ask_quantity)
        for t in ticks
    ]
    if not rows:
        empty = np.array([])
        return SecondGrid(empty.astype(int), empty, empty, empty, empty)
    ts = np.array([r[0] for r in rows])
    sources = [r[1] for r in rows]
    bid = np.array([r[2] for r in rows])
    ask = np.array([r[3] for r in rows])
    bid_q = np.array([r[4] for r in rows])
    ask_q = np.array([r[5] for r in rows])
    mid = (bid + ask) / 2
    new_source = np.array([i == 0 or sources[i] != sources[i - 1] for i in range(len(rows))])
    gap = np.diff(ts, prepend=ts[0]) > max_gap_s
    tick_segment = np.cumsum(new_source | gap) - 1

    segs, counts, rets, spreads, imbs = [], [], [], [], []
    for s in np.unique(tick_segment):
        m = tick_segment == s
        sec = np.floor(ts[m]).astype(np.int64)
        first = sec[0]
        n = int(sec[-1] - first + 1)
        idx = sec - first
        count = np.bincount(idx, minlength=n).astype(float)
        last = np.full(n, -1)
        last[idx] = np.arange(m.sum())  # later ticks overwrite: the last tick of each second
        filled = np.maximum.accumulate(last)
        seg_mid = mid[m][filled]
        ret = np.full(n, np.nan)
        ret[1:] = np.diff(np.log(seg_mid)) * 1e4
        spread_sum = np.bincount(idx, weights=(ask[m] - bid[m]) / mid[m] * 1e4, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.where(count > 0, spread_sum / count, np.nan)
            bq, aq = bid_q[m][filled], ask_q[m][filled]
            imb = (bq - aq) / (bq + aq)
        segs.append(np.full(n, s))
        counts.append(count)
        rets.append(ret)
        spreads.append(spread)
        imbs.append(imb)
    return SecondGrid(
        np.concatenate(segs),
        np.concatenate(counts),
        np.concatenate(rets),
        np.concatenate(spreads),
        np.concatenate(imbs),
    )


def _lagged_pairs(x: np.ndarray, segment: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = x[:-lag], x[lag:]
    ok = (segment[:-lag] == segment[lag:]) & np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def abs_return_acf(grid: SecondGrid, lags: Iterable[int] = ACF_LAGS) -> dict[int, float]:
    """Autocorrelation of absolute one-second returns, pooled over segments."""
    x = np.abs(grid.ret_bps)
    return {lag: _corr(*_lagged_pairs(x, grid.segment, lag)) for lag in lags}


def minute_table(grid: SecondGrid, min_seconds: int = 50) -> dict[str, np.ndarray]:
    """Per whole minute of a segment: tick count, realized vol (per-second RMS return, bps), mean
    spread, and the same minute's successor's realized vol (NaN when there is none)."""
    out: dict[str, list[float]] = {"ticks": [], "vol": [], "spread": [], "next_vol": []}
    for s in np.unique(grid.segment):
        m = grid.segment == s
        n_min = int(m.sum()) // 60
        count = grid.count[m][: n_min * 60].reshape(n_min, 60)
        ret = grid.ret_bps[m][: n_min * 60].reshape(n_min, 60)
        spread = grid.spread_bps[m][: n_min * 60].reshape(n_min, 60)
        valid = np.isfinite(ret).sum(axis=1)
        vol = np.sqrt(np.nansum(ret**2, axis=1) / np.maximum(valid, 1))
        vol = np.where(valid >= min_seconds, vol, np.nan)
        with np.errstate(invalid="ignore"):
            # a minute without any tick has no spread: NaN, not an error
            mean_spread = np.array(
                [np.nanmean(row) if np.isfinite(row).any() else np.nan for row in spread]
            )
        out["ticks"].extend(count.sum(axis=1))
        out["vol"].extend(vol)
        out["spread"].extend(mean_spread)
        out["next_vol"].extend(np.append(vol[1:], np.nan))
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def _partial_corr(x: np.ndarray, y: np.ndarray, control: np.ndarray) -> float:
    """Correlation of x and y after removing a linear fit on ``control`` from both."""
    design = np.column_stack([np.ones_like(control), control])
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return _corr(rx, ry)


def kurtosis(x: np.ndarray) -> float:
    """Pearson kurtosis (3 for a normal distribution) of the finite values."""
    x = x[np.isfinite(x)]
    if len(x) < 4 or x.std() == 0:
        return math.nan
    return float(np.mean((x - x.mean()) ** 4) / x.var() ** 2)


def stylized_facts(grid: SecondGrid) -> dict[str, float]:
    """The figures the simulator is calibrated on (see docs/simulator.md)."""
    ret = grid.ret_bps
    finite = np.isfinite(ret)
    minutes = minute_table(grid)
    ok = np.isfinite(minutes["vol"]) & (minutes["vol"] > 0)
    vol, ticks, spread = minutes["vol"][ok], minutes["ticks"][ok], minutes["spread"][ok]
    has_next = np.isfinite(minutes["next_vol"][ok]) & (minutes["next_vol"][ok] > 0)
    next_vol = minutes["next_vol"][ok][has_next]
    high = vol >= np.quantile(vol, 0.8) if len(vol) else np.array([], dtype=bool)
    same = grid.segment[:-1] == grid.segment[1:]
    imb_now, ret_next = grid.imbalance[:-1][same], ret[1:][same]
    pair = np.isfinite(imb_now) & np.isfinite(ret_next)
    facts = {
        "seconds": float(len(ret)),
        "minutes": float(ok.sum()),
        "ticks_per_s": float(grid.count.mean()) if len(ret) else math.nan,
        "ticks_per_min_median": float(np.median(ticks)) if len(ticks) else math.nan,
        "ticks_per_min_cv": float(ticks.std() / ticks.mean()) if len(ticks) else math.nan,
        "max_ticks_per_s": float(grid.count.max()) if len(ret) else math.nan,
        "ret_1s_std_bps": float(np.std(ret[finite])),
        "ret_1s_zero_share": float(np.mean(ret[finite] == 0)),
        "ret_1s_kurtosis": kurtosis(ret),
        "minute_vol_median_bps": float(np.median(vol)) if len(vol) else math.nan,
        "minute_vol_p90_bps": float(np.quantile(vol, 0.9)) if len(vol) else math.nan,
        "spread_median_bps": float(np.nanmedian(grid.spread_bps)),
        "spread_p90_bps": float(np.nanquantile(grid.spread_bps, 0.9)),
        "spread_high_vol_minutes_bps": float(np.nanmean(spread[high])),
        "spread_other_minutes_bps": float(np.nanmean(spread[~high])),
        "corr_minute_ticks_vol": _corr(ticks, vol),
        "corr_minute_spread_vol": _corr(spread, vol),
        "corr_minute_log_vol_next": _corr(np.log(vol[has_next]), np.log(next_vol)),
        "partial_corr_ticks_next_vol": _partial_corr(
            ticks[has_next], np.log(next_vol), np.log(vol[has_next])
        ),
        "corr_imbalance_next_ret": _corr(imb_now[pair], ret_next[pair]),
    }
    facts.update({f"acf_abs_ret_lag{lag}": v for lag, v in abs_return_acf(grid).items()})
    return facts


def facts_by_product(ticks: Iterable[Tick]) -> dict[str, dict[str, float]]:
    """:func:`stylized_facts` of every product in a time-ordered tick stream."""
    by_product: dict[str, list[Tick]] = {}
    for tick in ticks:
        by_product.setdefault(tick.product_id, []).append(tick)
    return {p: stylized_facts(statistics_grid(t)) for p, t in sorted(by_product.items())}
