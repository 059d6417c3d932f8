"""The feature engine: incremental per-product state updated per tick. Pure.

One engine serves the stream (``cryptovol featurize``) and the batch path (``cryptovol backfill``),
so a model sees the very same numbers in training and in production. Every accepted tick gives a
:class:`FeatureRow` whose values follow :data:`FEATURE_NAMES`; the names, their order and their
definitions are versioned by :data:`FEATURE_SET_VERSION` (docs/features.md describes each one).

Windows are in event time: a window of ``w`` seconds at a tick of time ``t`` holds the ticks with
time in ``(t - w, t]``. The mid price is ``(best_bid + best_ask) / 2``, or the last trade price when
the book is missing. A tick return is ``log(mid_i / mid_{i-1})``; the first tick of a segment has
none. Each window keeps its ticks in a deque with running sums, and its high and low in monotonic
deques, so a tick costs amortized O(1) whatever the window holds. Running sums of squares drift
when values are subtracted on eviction: they are recomputed from the deque once as many evictions
have happened as the deque holds (amortized O(1)), and reset to exact zero when no non-zero term
is left. Sums of returns need no running sum: they telescope to ``log(mid_now / mid_base)``.

Input handling, per product:

- Duplicates: within one source (a connection or a recording file) sequence numbers increase; a
  tick at or before the last ``(sequence_num, index)`` seen from its source is a duplicate and is
  ignored. A new source is a new sequence space. Ticks without a sequence number (negative) are
  never taken for duplicates.
- Late ticks: a tick older than the product's latest event time by at most ``late_tolerance_s``
  is processed as if it had arrived at the latest time (its row carries that time); an older one
  is counted and dropped.
- Gaps: after more than ``max_gap_s`` without a tick, every window restarts empty (a new segment).
- Missing inputs (no book, no quantities, not enough history) give NaN, never zero.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from tasks.messages import Tick
from tasks.timeutil import format_ts

FEATURE_SET_VERSION = "fs1"
FEATURES_SCHEMA_VERSION = 1
WINDOWS_S = (30, 60, 300)
ONE_SECOND_WINDOWS_S = (60, 300)

_PER_WINDOW = (
    "log_return",
    "realized_vol",
    "price_velocity",
    "range_bps",
    "spread_bps_mean",
    "imbalance_mean",
    "tick_intensity",
)
FEATURE_NAMES: tuple[str, ...] = (
    *(f"{name}_{w}" for name in _PER_WINDOW for w in WINDOWS_S),
    "ret_mean",
    "ret_std",
    "n",
    "spread_bps",
    "imbalance",
    *(f"realized_vol_1s_{w}" for w in ONE_SECOND_WINDOWS_S),
    "vol_ratio_30_300",
    "vol_ratio_60_300",
)

NAN = math.nan
_BPS = 1e4
_MIN_RECOMPUTE = 64


@dataclass(frozen=True)
class EngineConfig:
    late_tolerance_s: float = 2.0
    max_gap_s: float = 30.0  # windows restart after a longer silence
    max_sources_per_product: int = 64  # sequence spaces remembered for duplicate detection


@dataclass(slots=True)
class EngineStats:
    processed: int = 0
    duplicates: int = 0
    late_adjusted: int = 0
    late_dropped: int = 0
    gaps_restarted: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "processed": self.processed,
            "duplicates": self.duplicates,
            "late_adjusted": self.late_adjusted,
            "late_dropped": self.late_dropped,
            "gaps_restarted": self.gaps_restarted,
        }


@dataclass(frozen=True, slots=True)
class FeatureRow:
    product_id: str
    ts: float  # event time (epoch s) the row describes; a late tick carries the latest time
    record_id: str
    values: tuple[float, ...]  # in FEATURE_NAMES order, NaN for missing
    segment: int = 0  # per product, counts window restarts after gaps
    feature_set_version: str = FEATURE_SET_VERSION

    def as_dict(self) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, self.values, strict=True))

    def to_record(self) -> dict[str, Any]:
        """The JSON-able record for ``ticks.features`` (NaN becomes null)."""
        return {
            "schema_version": FEATURES_SCHEMA_VERSION,
            "feature_set_version": self.feature_set_version,
            "product_id": self.product_id,
            "ts": format_ts(self.ts),
            "event_ts": self.ts,
            "record_id": self.record_id,
            "features": {
                name: (None if v != v else v)
                for name, v in zip(FEATURE_NAMES, self.values, strict=True)
            },
        }


class _TickWindow:
    """Ticks of the last ``width`` seconds with running sums, high and low."""

    __slots__ = (
        "base_mid",
        "base_ts",
        "evictions",
        "highs",
        "lows",
        "n_imb",
        "n_nonzero",
        "n_ret",
        "n_spread",
        "sum_imb",
        "sum_r2",
        "sum_spread",
        "ticks",
        "width",
    )

    def __init__(self, width: float) -> None:
        self.width = width
        # entries: (ts, mid, r, r*r, spread_bps, imbalance); r is NaN for a segment's first tick
        self.ticks: deque[tuple[float, float, float, float, float, float]] = deque()
        self.highs: deque[tuple[float, float]] = deque()  # (ts, mid), mids decreasing
        self.lows: deque[tuple[float, float]] = deque()  # (ts, mid), mids increasing
        self.base_ts = NAN  # the last tick evicted in this segment: where returns start
        self.base_mid = NAN
        self.n_ret = 0
        self.n_nonzero = 0
        self.sum_r2 = 0.0
        self.n_spread = 0
        self.sum_spread = 0.0
        self.n_imb = 0
        self.sum_imb = 0.0
        self.evictions = 0

    def recompute(self) -> None:
        n_ret = n_nonzero = n_spread = n_imb = 0
        sum_r2 = sum_spread = sum_imb = 0.0
        for _ts, _mid, r, r2, spread, imb in self.ticks:
            if r == r:
                n_ret += 1
                if r2:
                    n_nonzero += 1
                    sum_r2 += r2
            if spread == spread:
                n_spread += 1
                sum_spread += spread
            if imb == imb:
                n_imb += 1
                sum_imb += imb
        self.n_ret, self.n_nonzero, self.sum_r2 = n_ret, n_nonzero, sum_r2
        self.n_spread, self.sum_spread = n_spread, sum_spread
        self.n_imb, self.sum_imb = n_imb, sum_imb
        self.evictions = 0


class _SecondWindow:
    """Non-zero squared 1-second returns of the last ``width`` seconds, with their sum."""

    __slots__ = ("evictions", "returns", "sum_r2", "width")

    def __init__(self, width: float) -> None:
        self.width = width
        self.returns: deque[tuple[int, float]] = deque()  # (second, r*r), r != 0
        self.sum_r2 = 0.0
        self.evictions = 0


class _ProductState:
    __slots__ = (
        "first_second",
        "grid_mid",
        "last_mid",
        "last_ts",
        "next_second",
        "second_windows",
        "segment",
        "sequences",
        "tick_windows",
    )

    def __init__(self) -> None:
        self.sequences: dict[str, tuple[int, int]] = {}
        self.segment = -1
        self.last_ts = NAN
        self.restart()

    def restart(self) -> None:
        self.segment += 1
        self.last_mid = NAN
        self.tick_windows = tuple(_TickWindow(w) for w in WINDOWS_S)
        self.second_windows = tuple(_SecondWindow(w) for w in ONE_SECOND_WINDOWS_S)
        self.next_second = 0  # the first second of the 1-s grid not yet complete
        self.first_second = -1  # the segment's first grid second (it has no return)
        self.grid_mid = NAN  # mid at the last complete grid second


class FeatureEngine:
    """Per-product incremental features; feed ticks in arrival order, get one row per tick."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.stats = EngineStats()
        self._products: dict[str, _ProductState] = {}

    def process(self, tick: Tick) -> FeatureRow | None:
        """The features after ``tick``, or None if it is a duplicate or too late (counted)."""
        state = self._products.get(tick.product_id)
        if state is None:
            state = self._products[tick.product_id] = _ProductState()
        stats = self.stats
        config = self.config

        seq = tick.sequence_num
        if seq >= 0:
            position = (seq, tick.index)
            seen = state.sequences.get(tick.source)
            if seen is not None and position <= seen:
                stats.duplicates += 1
                return None

        ts = tick.ts
        last_ts = state.last_ts
        if ts < last_ts:
            if last_ts - ts > config.late_tolerance_s:
                stats.late_dropped += 1
                return None
            stats.late_adjusted += 1
            ts = last_ts
        elif ts - last_ts > config.max_gap_s:
            state.restart()
            stats.gaps_restarted += 1
        if seq >= 0:
            sequences = state.sequences
            if tick.source not in sequences and len(sequences) >= config.max_sources_per_product:
                del sequences[next(iter(sequences))]
            sequences[tick.source] = position
        state.last_ts = ts
        stats.processed += 1

        bid = tick.best_bid
        ask = tick.best_ask
        if bid == bid and ask == ask:
            mid = (bid + ask) * 0.5
            spread = _BPS * (ask - bid) / mid
        else:
            mid = tick.price
            spread = NAN
        bid_qty = tick.best_bid_quantity
        ask_qty = tick.best_ask_quantity
        depth = bid_qty + ask_qty
        imbalance = (bid_qty - ask_qty) / depth if depth > 0 else NAN

        prev_mid = state.last_mid
        r = math.log(mid / prev_mid) if prev_mid == prev_mid else NAN
        state.last_mid = mid

        rv_1s = self._advance_grid(state, ts, prev_mid)

        values: list[float] = []
        out = values.append
        log_returns = []
        vols = []
        velocities = []
        ranges = []
        spreads = []
        imbalances = []
        intensities = []
        entry = (ts, mid, r, r * r, spread, imbalance)
        n_60 = 0
        window_60 = None
        for window in state.tick_windows:
            _update_tick_window(window, entry)
            ticks = window.ticks
            m = window.n_ret
            if m:
                if window.base_mid == window.base_mid:
                    base_mid, base_ts = window.base_mid, window.base_ts
                else:
                    base_ts, base_mid = ticks[0][0], ticks[0][1]
                log_ret = math.log(mid / base_mid)
                elapsed = ts - base_ts
                velocity = _BPS * log_ret / elapsed if elapsed >= 1.0 else NAN
                vol = math.sqrt(window.sum_r2) if window.n_nonzero else 0.0
            else:
                log_ret = velocity = vol = NAN
            log_returns.append(log_ret)
            vols.append(vol)
            velocities.append(velocity)
            ranges.append(_BPS * math.log(window.highs[0][1] / window.lows[0][1]))
            spreads.append(window.sum_spread / window.n_spread if window.n_spread else NAN)
            imbalances.append(window.sum_imb / window.n_imb if window.n_imb else NAN)
            intensities.append(len(ticks) / window.width)
            if window.width == 60:
                window_60 = window
                n_60 = len(ticks)
        values.extend(log_returns)
        values.extend(vols)
        values.extend(velocities)
        values.extend(ranges)
        values.extend(spreads)
        values.extend(imbalances)
        values.extend(intensities)

        # 60 s tick-return moments: the sum of returns telescopes to the 60 s log return
        m = window_60.n_ret
        if m:
            ret_mean = log_returns[1] / m
            if m > 1:
                var = (window_60.sum_r2 - log_returns[1] * ret_mean) / (m - 1)
                ret_std = math.sqrt(var) if var > 0.0 else 0.0
            else:
                ret_std = NAN
        else:
            ret_mean = ret_std = NAN
        out(ret_mean)
        out(ret_std)
        out(float(n_60))
        out(spread)
        out(imbalance)
        values.extend(rv_1s)
        vol_300 = vols[2]
        if vol_300 > 0.0:
            scale = math.sqrt(300.0)
            out(vols[0] / math.sqrt(30.0) * scale / vol_300)
            out(vols[1] / math.sqrt(60.0) * scale / vol_300)
        else:
            out(NAN)
            out(NAN)
        return FeatureRow(tick.product_id, ts, tick.record_id, tuple(values), state.segment)

    def _advance_grid(self, state: _ProductState, ts: float, prev_mid: float) -> list[float]:
        """Complete the 1-second grid up to the last second before ``ts``; the 1-s vols."""
        if prev_mid != prev_mid:  # the segment's first tick: its first grid second is ceil(ts)
            state.next_second = math.ceil(ts)
            return [NAN] * len(ONE_SECOND_WINDOWS_S)
        last_complete = math.ceil(ts) - 1  # seconds strictly before ts can no longer change
        if last_complete >= state.next_second:
            second = state.next_second
            if state.first_second < 0:
                state.first_second = second
            else:
                # only the first newly completed second can move; later ones repeat prev_mid
                r = math.log(prev_mid / state.grid_mid)
                if r:
                    r2 = r * r
                    for window in state.second_windows:
                        window.returns.append((second, r2))
                        window.sum_r2 += r2
            state.grid_mid = prev_mid
            state.next_second = last_complete + 1
        if state.first_second < 0 or state.next_second - 1 <= state.first_second:
            return [NAN] * len(ONE_SECOND_WINDOWS_S)
        vols = []
        for window in state.second_windows:
            returns = window.returns
            cutoff = ts - window.width
            while returns and returns[0][0] <= cutoff:
                window.sum_r2 -= returns.popleft()[1]
                window.evictions += 1
            if not returns:
                window.sum_r2 = 0.0
                vols.append(0.0)
                continue
            if window.evictions >= len(returns) and window.evictions >= _MIN_RECOMPUTE:
                window.sum_r2 = math.fsum(r2 for _s, r2 in returns)
                window.evictions = 0
            vols.append(math.sqrt(window.sum_r2) if window.sum_r2 > 0.0 else 0.0)
        return vols


def _update_tick_window(
    window: _TickWindow, entry: tuple[float, float, float, float, float, float]
) -> None:
    ts, mid, r, r2, spread, imb = entry
    window.ticks.append(entry)
    if r == r:
        window.n_ret += 1
        if r2:
            window.n_nonzero += 1
            window.sum_r2 += r2
    if spread == spread:
        window.n_spread += 1
        window.sum_spread += spread
    if imb == imb:
        window.n_imb += 1
        window.sum_imb += imb
    highs = window.highs
    while highs and highs[-1][1] <= mid:
        highs.pop()
    highs.append((ts, mid))
    lows = window.lows
    while lows and lows[-1][1] >= mid:
        lows.pop()
    lows.append((ts, mid))

    cutoff = ts - window.width
    ticks = window.ticks
    if ticks[0][0] > cutoff:
        return
    while ticks[0][0] <= cutoff:  # the newest tick is never evicted
        old_ts, old_mid, old_r, old_r2, old_spread, old_imb = ticks.popleft()
        if old_r == old_r:
            window.n_ret -= 1
            if old_r2:
                window.n_nonzero -= 1
                window.sum_r2 -= old_r2
        if old_spread == old_spread:
            window.n_spread -= 1
            window.sum_spread -= old_spread
        if old_imb == old_imb:
            window.n_imb -= 1
            window.sum_imb -= old_imb
        window.evictions += 1
    window.base_ts = old_ts
    window.base_mid = old_mid
    while highs[0][0] <= cutoff:
        highs.popleft()
    while lows[0][0] <= cutoff:
        lows.popleft()
    if not window.n_nonzero:
        window.sum_r2 = 0.0
    if not window.n_spread:
        window.sum_spread = 0.0
    if not window.n_imb:
        window.sum_imb = 0.0
    if window.evictions >= len(ticks) and window.evictions >= _MIN_RECOMPUTE:
        window.recompute()
