"""The feature engine: incremental per-product state updated per tick. Pure.

One engine serves the stream (``cryptovol featurize``) and the batch path (``cryptovol backfill``),
so a model sees the very same numbers in training and in production. Every accepted tick gives a
:class:`FeatureRow` whose values follow :data:`FEATURE_NAMES`; the names, their order and their
definitions are versioned by :data:`FEATURE_SET_VERSION` (docs/features.md describes each one).

Windows are in event time: a window of ``w`` seconds at a tick of time ``t`` holds the ticks with
time in ``(t - w, t]``. The mid price is ``(best_bid + best_ask) / 2``, or the last trade price when
the book is missing. A tick return is ``log(mid_i / mid_{i-1})``; the first tick of a segment has
none. Each window keeps its ticks in a deque, its high and low in monotonic deques and its sums in
two stacks split at an event-time boundary (no subtraction on eviction, so no rounding drift and
an exact zero when every term is zero), so a tick costs amortized O(1) whatever the window holds.
Sums of returns need no running sum at all: they telescope to ``log(mid_now / mid_base)``.

Every piece of window state is a fixed function of the ticks the window holds and of the current
time, never of how long the engine has run, so an engine started mid-stream (a restarted
featurizer re-reading recent history) produces bit-identical rows once it has seen
:func:`restart_lookback_s` of event time.

Input handling, per product:

- Duplicates: within one source (a connection or a recording file) sequence numbers increase; a
  tick at or before the last ``(sequence_num, index)`` seen from its source is a duplicate and is
  ignored. A new source is a new sequence space. Ticks without a sequence number (negative) are
  never taken for duplicates.
- Sequence jumps: a sequence number counts a connection's messages, so it cannot run ahead of
  the last one seen from its source by more than ``max_sequence_rate`` per second of event time
  between the two (plus one second's worth). A tick that does is refused and counted
  (``sequence_jumps``) without moving the source's mark, so one absurd number (10^15 in a file
  that counts from 0) costs that tick alone instead of making every later tick a "duplicate".
  A tick as far behind the mark is no re-sent duplicate either: the mark was the absurd one (the
  first tick of a source) and the tick is taken, moving the mark back.
- Bounds: the terms a tick adds to the window sums (mid price, spread, imbalance, event time) are
  checked before any state changes (:class:`~tasks.core.messages.MessageError` otherwise), so no
  tick can leave an infinity or a NaN in a sum; :func:`tasks.core.messages.to_tick` already
  refuses the inputs that would produce one.
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

from tasks.core.messages import MAX_PRICE, MIN_PRICE, MessageError, Tick
from tasks.core.timeutil import format_ts

FEATURE_SET_VERSION = "fs2"
FEATURES_SCHEMA_VERSION = 1
WINDOWS_S = (30, 60, 300)
ONE_SECOND_WINDOWS_S = (60, 300)
# The trailing level that tick intensity and spread are compared with (fs2): long enough to
# define a regime, so a ratio to it means the same on every feed whatever its message rate.
REGIME_WINDOW_S = 900
REGIME_SHORT_WINDOWS_S = (30, 60)

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
    *(f"tick_intensity_ratio_{w}_{REGIME_WINDOW_S}" for w in REGIME_SHORT_WINDOWS_S),
    *(f"spread_bps_ratio_{w}_{REGIME_WINDOW_S}" for w in REGIME_SHORT_WINDOWS_S),
)

NAN = math.nan
_BPS = 1e4
_MAX_SPREAD_BPS = 2 * _BPS  # (ask - bid) / mid with 0 < bid <= ask stays below 2
_NW = len(WINDOWS_S)
_N_WINDOW_FEATURES = len(_PER_WINDOW) * _NW
_N_FEATURES = len(FEATURE_NAMES)
_I60 = WINDOWS_S.index(60)
_SCALE_30_300 = math.sqrt(300 / 30)
_SCALE_60_300 = math.sqrt(300 / 60)
_NO_VOLS = (NAN,) * len(ONE_SECOND_WINDOWS_S)
_REGIME_SHORT = tuple(WINDOWS_S.index(w) for w in REGIME_SHORT_WINDOWS_S)

# a tick in a window: (ts, mid, r*r or 0, spread_bps or 0, imbalance or 0, has_r, has_spread,
# has_imb); zeros stand in for missing values in the sums, the flags keep the counts right
_Entry = tuple[float, float, float, float, float, int, int, int]


@dataclass(frozen=True)
class EngineConfig:
    late_tolerance_s: float = 2.0
    max_gap_s: float = 30.0  # windows restart after a longer silence
    max_sources_per_product: int = 64  # sequence spaces remembered for duplicate detection
    # messages a connection can carry per second, at most: the recordings carry about 4, the
    # whole exchange's ticker feed about 5,000; a sequence number further ahead of its source's
    # mark than this allows is refused
    max_sequence_rate: float = 1e5


def restart_lookback_s(config: EngineConfig) -> float:
    """Event time an engine started mid-stream needs before its rows are bit-identical.

    An engine fed every tick of a product from a tick F on gives, for every tick with event time
    ``t0 + restart_lookback_s`` or later, exactly the row (time and values) of an engine fed
    everything; ``t0`` is F's event time, or the product's latest event time before F if F is
    more than ``late_tolerance_s`` older than that (a tick the full engine drops as too late).
    Only ``FeatureRow.segment``, a count of the restarts this engine saw, differs.

    Why this much: until the new engine has seen a tick as recent as the full engine's latest
    (at most ``late_tolerance_s`` after ``t0``), the two can accept, time-adjust and restart
    differently, and the new one takes late re-sent duplicates for new ticks (their originals came
    before F), up to another ``late_tolerance_s`` on. Then the next tick common to both comes
    within ``max_gap_s``, or both restart their windows there. From that tick on they hold the
    same ticks, and every window's state, sums included, is a fixed function of the ticks it
    holds: the longest window forgets the difference after its width, the 1-second grid one
    second later (a second's return needs the mid of the second before). It assumes fewer than
    ``max_sources_per_product`` sources of one product within that time (one a connection or a
    recording file), so duplicate detection forgets the same sources in both engines.
    """
    longest = max(*WINDOWS_S, REGIME_WINDOW_S)
    return longest + 1.0 + config.max_gap_s + 2.0 * config.late_tolerance_s


@dataclass(slots=True)
class EngineStats:
    processed: int = 0
    duplicates: int = 0
    late_adjusted: int = 0
    late_dropped: int = 0
    gaps_restarted: int = 0
    sequence_jumps: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "processed": self.processed,
            "duplicates": self.duplicates,
            "late_adjusted": self.late_adjusted,
            "late_dropped": self.late_dropped,
            "gaps_restarted": self.gaps_restarted,
            "sequence_jumps": self.sequence_jumps,
        }


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 1.2 us more per tick to build
class FeatureRow:
    """The features after one tick; treat as immutable."""

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
    """Ticks of the last ``width`` seconds with exact window sums, high and low.

    Sums use two stacks instead of subtracting on eviction, split at the start ``E`` of the
    current epoch of event time (``E = floor(t / width) * width``): the ticks before ``E`` carry
    suffix sums accumulated from the newest back (``front``, the oldest last), the ticks from
    ``E`` on a running sum (``back_*``). A sum is ``front[-1] + back``. While ``t`` stays in one
    epoch the cutoff ``t - width`` stays before ``E``, so evictions only pop ``front``; the first
    tick of a new epoch evicts and turns the rest into new suffix sums. So every sum is a fixed
    function of the ticks in the window and of ``E``: no rounding error outlives the ticks that
    caused it, and an engine that starts mid-stream gets the very same bits once its window
    holds the same ticks (see :func:`restart_lookback_s`). Each tick enters ``front`` at most
    once (amortized O(1)).
    """

    __slots__ = (
        "back_imb",
        "back_r2",
        "back_spread",
        "base_mid",
        "base_ts",
        "boundary",
        "front",
        "highs",
        "lows",
        "n_imb",
        "n_ret",
        "n_spread",
        "ticks",
        "width",
    )

    def __init__(self, width: float) -> None:
        self.width = width
        # entries: (ts, mid, r*r or 0, spread_bps or 0, imbalance or 0, has_r, has_spread, has_imb)
        self.ticks: deque[_Entry] = deque()
        self.front: list[tuple[float, float, float]] = []
        self.back_r2 = self.back_spread = self.back_imb = 0.0
        self.boundary = -math.inf  # where the next epoch starts
        self.highs: deque[_Entry] = deque()  # candidates for the high: mids decreasing
        self.lows: deque[_Entry] = deque()  # candidates for the low: mids increasing
        self.base_ts = NAN  # the last tick evicted in this segment: where returns start
        self.base_mid = NAN
        self.n_ret = self.n_spread = self.n_imb = 0

    def new_epoch(self, ts: float, cutoff: float) -> None:
        """Before adding the first tick of a new epoch: evict what left the window, then turn
        every tick that stays into a suffix sum on an empty ``front``."""
        ticks = self.ticks
        if ticks and ticks[0][0] <= cutoff:
            while ticks and ticks[0][0] <= cutoff:
                old = ticks.popleft()
                self.n_ret -= old[5]
                self.n_spread -= old[6]
                self.n_imb -= old[7]
            self.base_ts = old[0]
            self.base_mid = old[1]
            highs, lows = self.highs, self.lows
            while highs and highs[0][0] <= cutoff:
                highs.popleft()
            while lows and lows[0][0] <= cutoff:
                lows.popleft()
        front = self.front = []
        r2 = spread = imb = 0.0
        for entry in reversed(ticks):
            r2 += entry[2]
            spread += entry[3]
            imb += entry[4]
            front.append((r2, spread, imb))
        self.back_r2 = self.back_spread = self.back_imb = 0.0
        width = self.width
        self.boundary = (ts // width + 1.0) * width


class _SecondWindow:
    """Non-zero squared 1-second returns of the last ``width`` seconds.

    The same two stacks as :class:`_TickWindow`, split at the start ``E`` of the epoch of the
    time asked for: seconds before ``E`` in suffix sums, the later ones in a running sum. The
    sum is a fixed function of the seconds in the window and of ``E``, whichever ticks asked.
    """

    __slots__ = ("back", "boundary", "front", "returns", "width")

    def __init__(self, width: float) -> None:
        self.width = width
        self.returns: deque[tuple[int, float]] = deque()  # (second, r*r), r != 0
        self.front: list[float] = []
        self.back = 0.0
        self.boundary = -math.inf  # where the next epoch starts

    def push(self, second: int, r2: float) -> None:
        self.returns.append((second, r2))
        self.back += r2

    def vol(self, ts: float) -> float:
        """sqrt of the sum over complete seconds in ``(ts - width, ts)``."""
        returns = self.returns
        cutoff = ts - self.width
        if ts >= self.boundary:
            self._new_epoch(ts, cutoff)
        else:  # the seconds evicted are all before the epoch's start: in front
            front = self.front
            while returns and returns[0][0] <= cutoff:
                returns.popleft()
                front.pop()
        front = self.front
        total = (front[-1] if front else 0.0) + self.back
        return math.sqrt(total)

    def _new_epoch(self, ts: float, cutoff: float) -> None:
        """Evict, then rebuild both stacks: seconds pushed since the last query may lie on
        either side of the new epoch's start."""
        returns = self.returns
        while returns and returns[0][0] <= cutoff:
            returns.popleft()
        start = ts // self.width * self.width
        front = self.front = []
        newer: list[float] = []
        total = 0.0
        for second, r2 in reversed(returns):
            if second >= start:
                newer.append(r2)
            else:
                total += r2
                front.append(total)
        back = 0.0
        for r2 in reversed(newer):
            back += r2
        self.back = back
        self.boundary = start + self.width


class _ProductState:
    __slots__ = (
        "first_second",
        "grid_mid",
        "last_mid",
        "last_ts",
        "next_second",
        "regime_window",
        "second_windows",
        "segment",
        "sequences",
        "tick_windows",
        "vols",
        "vols_floor",
    )

    def __init__(self) -> None:
        # per source: the last (sequence_num, index) taken, and its event time
        self.sequences: dict[str, tuple[int, int, float]] = {}
        self.segment = -1
        self.last_ts = NAN
        self.restart()

    def restart(self) -> None:
        self.segment += 1
        self.last_mid = NAN
        self.tick_windows = tuple(_TickWindow(w) for w in WINDOWS_S)
        self.regime_window = _TickWindow(REGIME_WINDOW_S)
        self.second_windows = tuple(_SecondWindow(w) for w in ONE_SECOND_WINDOWS_S)
        self.next_second = 0  # the first second of the 1-s grid not yet complete
        self.first_second = -1  # the segment's first grid second (it has no return)
        self.grid_mid = NAN  # mid at the last complete grid second
        self.vols = _NO_VOLS  # the 1-s volatilities last computed, at floor(ts) = vols_floor
        self.vols_floor = -1


class FeatureEngine:
    """Per-product incremental features; feed ticks in arrival order, get one row per tick."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.stats = EngineStats()
        self._products: dict[str, _ProductState] = {}

    def process(self, tick: Tick) -> FeatureRow | None:
        """The features after ``tick``, or None if it is a duplicate, too late or a sequence
        jump (counted); :class:`MessageError`, with no state changed, if its terms are out of
        bounds (module docstring)."""
        bid = tick.best_bid
        ask = tick.best_ask
        has_spread = 1 if bid == bid and ask == ask else 0
        mid = (bid + ask) * 0.5 if has_spread else tick.price
        if not (MIN_PRICE <= mid <= MAX_PRICE and -math.inf < tick.ts < math.inf):
            raise MessageError(
                f"tick {tick.record_id} out of the engine's bounds: mid {mid!r}, ts {tick.ts!r}"
            )
        spread = _BPS * (ask - bid) / mid if has_spread else NAN
        bid_qty = tick.best_bid_quantity
        ask_qty = tick.best_ask_quantity
        depth = bid_qty + ask_qty
        if depth > 0.0:
            imbalance = (bid_qty - ask_qty) / depth
            has_imb = 1
        else:
            imbalance = NAN
            has_imb = 0
        spread_term = spread if has_spread else 0.0
        imb_term = imbalance if has_imb else 0.0
        if not (0.0 <= spread_term <= _MAX_SPREAD_BPS and -1.0 <= imb_term <= 1.0):
            raise MessageError(
                f"tick {tick.record_id} out of the engine's bounds: spread {spread!r} bps, "
                f"imbalance {imbalance!r}"
            )

        state = self._products.get(tick.product_id)
        if state is None:
            state = self._products[tick.product_id] = _ProductState()
        stats = self.stats
        config = self.config

        seq = tick.sequence_num
        if seq >= 0:
            seen = state.sequences.get(tick.source)
            if seen is not None:
                last_seq, last_index, seen_ts = seen
                reach = config.max_sequence_rate * (1.0 + abs(tick.ts - seen_ts))
                if seq < last_seq or (seq == last_seq and tick.index <= last_index):
                    if last_seq - seq <= reach:
                        stats.duplicates += 1
                        return None
                elif seq - last_seq > reach:
                    stats.sequence_jumps += 1
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
            sequences[tick.source] = (seq, tick.index, tick.ts)
        state.last_ts = ts
        stats.processed += 1

        prev_mid = state.last_mid
        state.last_mid = mid
        if prev_mid == prev_mid:
            r = math.log(mid / prev_mid)
            r2 = r * r
            has_r = 1
            vol_1s = _advance_grid(state, ts, prev_mid)
        else:  # a segment's first tick: no return yet, and it starts the 1-second grid
            r2 = 0.0
            has_r = 0
            state.next_second = math.ceil(ts)
            vol_1s = _NO_VOLS
        entry = (ts, mid, r2, spread_term, imb_term, has_r, has_spread, has_imb)

        values = [NAN] * _N_FEATURES
        # a per-window feature sits at k + _NW * (its position in _PER_WINDOW)
        m_60 = 0
        sum_r2_60 = NAN
        for k, window in enumerate(state.tick_windows):
            # add the tick, drop the ticks at or before ts - width (the newest one always stays)
            ticks = window.ticks
            cutoff = ts - window.width
            if ts >= window.boundary:
                window.new_epoch(ts, cutoff)  # evicts too
            ticks.append(entry)
            window.back_r2 += r2
            window.back_spread += spread_term
            window.back_imb += imb_term
            window.n_ret += has_r
            window.n_spread += has_spread
            window.n_imb += has_imb
            highs = window.highs
            while highs and highs[-1][1] <= mid:
                highs.pop()
            highs.append(entry)
            lows = window.lows
            while lows and lows[-1][1] >= mid:
                lows.pop()
            lows.append(entry)
            front = window.front
            if ticks[0][0] <= cutoff:  # all before the epoch's start: in front
                while ticks[0][0] <= cutoff:
                    old = ticks.popleft()
                    front.pop()
                    window.n_ret -= old[5]
                    window.n_spread -= old[6]
                    window.n_imb -= old[7]
                window.base_ts = old[0]
                window.base_mid = old[1]
                while highs[0][0] <= cutoff:
                    highs.popleft()
                while lows[0][0] <= cutoff:
                    lows.popleft()

            m = window.n_ret
            if m:
                base_mid = window.base_mid
                if base_mid == base_mid:
                    base_ts = window.base_ts
                else:  # nothing evicted yet: returns start at the segment's first tick
                    oldest = ticks[0]
                    base_ts = oldest[0]
                    base_mid = oldest[1]
                log_ret = math.log(mid / base_mid)
                values[k] = log_ret
                sum_r2 = (front[-1][0] if front else 0.0) + window.back_r2
                values[k + _NW] = math.sqrt(sum_r2)
                elapsed = ts - base_ts
                if elapsed >= 1.0:
                    values[k + 2 * _NW] = _BPS * log_ret / elapsed
                if k == _I60:
                    m_60 = m
                    sum_r2_60 = sum_r2
            values[k + 3 * _NW] = _BPS * math.log(highs[0][1] / lows[0][1])
            if window.n_spread:
                spread_sum = (front[-1][1] if front else 0.0) + window.back_spread
                values[k + 4 * _NW] = spread_sum / window.n_spread
            if window.n_imb:
                imb_sum = (front[-1][2] if front else 0.0) + window.back_imb
                values[k + 5 * _NW] = imb_sum / window.n_imb
            values[k + 6 * _NW] = len(ticks) / window.width

        # 60 s tick-return moments; the sum of the returns telescopes to the 60 s log return
        if m_60:
            log_ret_60 = values[_I60]
            ret_mean = log_ret_60 / m_60
            if m_60 > 1:
                var = (sum_r2_60 - log_ret_60 * ret_mean) / (m_60 - 1)
                ret_std = math.sqrt(var) if var > 0.0 else 0.0
            else:
                ret_std = NAN
        else:
            ret_mean = ret_std = NAN
        vol_300 = values[_NW + 2]
        if vol_300 > 0.0:
            ratio_30 = values[_NW] * _SCALE_30_300 / vol_300
            ratio_60 = values[_NW + 1] * _SCALE_60_300 / vol_300
        else:
            ratio_30 = ratio_60 = NAN
        values[_N_WINDOW_FEATURES:] = (
            ret_mean,
            ret_std,
            float(len(state.tick_windows[_I60].ticks)),
            spread,
            imbalance,
            *vol_1s,
            ratio_30,
            ratio_60,
            *_regime_ratios(state.regime_window, entry, values),
        )
        return FeatureRow(tick.product_id, ts, tick.record_id, tuple(values), state.segment)


def _regime_ratios(window: _TickWindow, entry: _Entry, values: list[float]) -> tuple[float, ...]:
    """Add the tick to the regime window; tick intensity and mean spread over the short windows
    as ratios to their levels over it (``*_ratio_{w}_900``).

    The tick rate's level is the window's ticks per second of time it covers (all of it once a
    tick has left it, else since the segment's first tick); the ratio is NaN until the segment
    covers the short window. The spread ratio is NaN without a spread or with a zero level.
    """
    ts, has_spread = entry[0], entry[6]
    ticks = window.ticks
    cutoff = ts - window.width
    if ts >= window.boundary:
        window.new_epoch(ts, cutoff)  # evicts too
    ticks.append(entry)
    window.back_spread += entry[3]
    window.n_spread += has_spread
    window.n_ret += entry[5]  # kept exact, though only the spread count is read here
    window.n_imb += entry[7]
    front = window.front
    if ticks[0][0] <= cutoff:  # all before the epoch's start: in front
        while ticks[0][0] <= cutoff:
            old = ticks.popleft()
            front.pop()
            window.n_ret -= old[5]
            window.n_spread -= old[6]
            window.n_imb -= old[7]
        window.base_ts = old[0]
        window.base_mid = old[1]
    covered = window.width if window.base_ts == window.base_ts else ts - ticks[0][0]
    level_rate = len(ticks) / covered if covered > 0.0 else NAN
    level_spread = NAN
    if window.n_spread:
        level_spread = ((front[-1][1] if front else 0.0) + window.back_spread) / window.n_spread
    rates, spreads = [], []
    for k in _REGIME_SHORT:
        width = WINDOWS_S[k]
        rate = values[k + 6 * _NW]
        rates.append(rate / level_rate if covered >= width else NAN)
        spread_mean = values[k + 4 * _NW]
        spreads.append(spread_mean / level_spread if level_spread > 0.0 else NAN)
    return (*rates, *spreads)


def _advance_grid(state: _ProductState, ts: float, prev_mid: float) -> tuple[float, ...]:
    """Complete the 1-second grid up to the last second before ``ts``; the 1-s volatilities.

    The grid holds the last mid at or before each whole second; second ``s`` is complete once a
    tick later than ``s`` arrives. Between two ticks only the first newly completed second can
    move (the following ones repeat ``prev_mid``), so a tick costs O(1) however long the pause.
    The windows hold the seconds in ``(ts - w, ts)``: with ``w`` whole, that set only changes
    when ``floor(ts)`` or ``ceil(ts)`` does, so ticks within one second reuse the last result.
    """
    last_complete = math.ceil(ts) - 1
    floor_ts = math.floor(ts)
    if last_complete >= state.next_second:
        second = state.next_second
        if state.first_second < 0:
            state.first_second = second
        else:
            r = math.log(prev_mid / state.grid_mid)
            if r:
                r2 = r * r
                for window in state.second_windows:
                    window.push(second, r2)
        state.grid_mid = prev_mid
        state.next_second = last_complete + 1
    elif floor_ts == state.vols_floor:
        return state.vols
    if state.first_second < 0 or last_complete <= state.first_second:
        vols = _NO_VOLS  # no complete 1-second return yet
    else:
        vols = tuple([window.vol(ts) for window in state.second_windows])
    state.vols = vols
    state.vols_floor = floor_ts
    return vols
