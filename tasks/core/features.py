"""The feature engine: incremental per-product state updated per tick. Pure.

One engine serves the stream (``cryptovol featurize``) and the batch path (``cryptovol backfill``),
so a model sees the very same numbers in training and in production. Every accepted tick gives a
:class:`FeatureRow` whose values follow :data:`FEATURE_NAMES`; the names, their order and their
definitions are versioned by :data:`FEATURE_SET_VERSION` (docs/features.md describes each one).

Windows are in event time: a window of ``w`` seconds at a tick of time ``t`` holds the ticks with
time in ``(t - w, t]``. The mid price is ``(best_bid + best_ask) / 2``, or the last trade price when
the book is missing. A tick return is ``log(mid_i / mid_{i-1})``; the first tick of a segment has
none. Each window holds its ticks (a suffix of the product's tick history), its high and low in
monotonic deques and its sums in two stacks split at an event-time boundary (no subtraction on
eviction, so no rounding drift and an exact zero when every term is zero), so a tick costs
amortized O(1) whatever the window holds. Sums of returns need no running sum at all: they
telescope to ``log(mid_now / mid_base)``. The per-tick work is compiled
(:mod:`tasks.core.feature_kernel`, numba, cached on disk); :meth:`FeatureEngine.process_batch`
runs columns of ticks through it at once, :meth:`FeatureEngine.process` one tick.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from tasks.core.messages import MessageError, Tick, TickColumns
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
# what became of each tick of a batch: EngineBatch.status is the position here (the kernel's code)
OUTCOMES = (
    "taken",
    "late_adjusted",
    "gap_restarted",
    "duplicate",
    "late_dropped",
    "sequence_jump",
    "out_of_bounds",
    "out_of_bounds",
)


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

    def add_outcomes(self, counts: Sequence[int]) -> None:
        """Count ``counts[code]`` ticks of each outcome (:data:`OUTCOMES`)."""
        taken, late, gap, duplicates, late_dropped, jumps = (int(c) for c in counts[:6])
        self.processed += taken + late + gap
        self.late_adjusted += late
        self.gaps_restarted += gap
        self.duplicates += duplicates
        self.late_dropped += late_dropped
        self.sequence_jumps += jumps

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
            "ts": record_ts(self.ts),
            "event_ts": self.ts,
            "record_id": self.record_id,
            "features": {
                name: (None if v != v else v)
                for name, v in zip(FEATURE_NAMES, self.values, strict=True)
            },
        }


_SECOND_TEXT: dict[float, str] = {}  # whole second -> its ISO text up to the "."


def record_ts(epoch: float) -> str:
    """:func:`~tasks.core.timeutil.format_ts` of ``epoch``, each whole second formatted once
    (it was an eighth of the featurizer's time): the microseconds are rounded half to even, as
    ``datetime.fromtimestamp`` rounds them."""
    fraction, whole = math.modf(epoch)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole += 1.0
        micros -= 1_000_000
    elif micros < 0:
        whole -= 1.0
        micros += 1_000_000
    text = _SECOND_TEXT.get(whole)
    if text is None:
        if len(_SECOND_TEXT) >= 4096:
            _SECOND_TEXT.clear()
        text = _SECOND_TEXT[whole] = format_ts(whole)[:-7]
    return f"{text}{micros:06d}Z"


@dataclass(slots=True)
class EngineBatch:
    """What :meth:`FeatureEngine.process_batch` made of each input tick (arrays of its length)."""

    values: np.ndarray  # (n, len(FEATURE_NAMES)) float64; a row only where ``taken``
    ts: np.ndarray  # the time each row describes (a late tick's: the latest); else the input's
    segment: np.ndarray  # int64, per product, counts window restarts after gaps
    mid: np.ndarray  # the mid price the engine used
    status: np.ndarray  # int8 code; OUTCOMES[code] names it

    @property
    def taken(self) -> np.ndarray:
        """Which inputs gave a row."""
        return self.status <= _LAST_TAKEN

    def out_of_bounds_error(self, i: int, record_id: str) -> MessageError:
        """The error for an input refused as out of the engine's bounds (module docstring)."""
        if self.status[i] == _OUT_OF_BOUNDS:
            return MessageError(
                f"tick {record_id} out of the engine's bounds: mid {float(self.mid[i])!r}, "
                f"ts {float(self.ts[i])!r}"
            )
        spread, imbalance = (float(v) for v in self.values[i, :2])
        return MessageError(
            f"tick {record_id} out of the engine's bounds: spread {spread!r} bps, "
            f"imbalance {imbalance!r}"
        )


class FeatureEngine:
    """Per-product incremental features; feed ticks in arrival order, get one row per tick.

    :meth:`process_batch` runs columns of ticks (the backfill, a poll of the stream),
    :meth:`process` one :class:`Tick`; both go through the same compiled kernel
    (:mod:`tasks.core.feature_kernel`) and the same per-product state, kept across calls.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.stats = EngineStats()
        self._states: dict[str, list[np.ndarray]] = {}
        self._sources: dict[str, int] = {}  # source -> its code in the kernel
        config = self.config
        self._kernel_config = np.array(
            [
                config.late_tolerance_s,
                config.max_gap_s,
                config.max_sources_per_product,
                config.max_sequence_rate,
                *WINDOWS_S,
                REGIME_WINDOW_S,
                *ONE_SECOND_WINDOWS_S,
            ],
            dtype=np.float64,
        )
        # one tick's buffers, reused by process()
        self._one_numbers = np.empty((1, 6))
        self._one_codes = np.empty((1, 3), dtype=np.int64)
        self._one = _new_batch(1)
        self._one_order = np.zeros(1, dtype=np.int64)

    def process_batch(self, ticks: TickColumns) -> EngineBatch:
        """Every tick's outcome and, where taken, its row (module docstring: duplicates,
        sequence jumps and too late ticks are counted in :attr:`stats`; a tick out of bounds
        changes nothing and is only marked in the result)."""
        n = len(ticks)
        numbers = np.empty((n, 6))
        numbers[:, 0] = ticks.ts
        numbers[:, 1] = ticks.price
        numbers[:, 2] = ticks.best_bid
        numbers[:, 3] = ticks.best_ask
        numbers[:, 4] = ticks.best_bid_quantity
        numbers[:, 5] = ticks.best_ask_quantity
        codes = np.empty((n, 3), dtype=np.int64)
        codes[:, 0] = ticks.sequence_num
        codes[:, 1] = ticks.index
        sources = self._sources
        codes[:, 2] = [
            sources[s] if s in sources else sources.setdefault(s, len(sources))
            for s in ticks.source
        ]
        batch = _new_batch(n)
        for product, order in _by_product(ticks.product_id):
            self._run(product, order, numbers, codes, batch)
        self.stats.add_outcomes(np.bincount(batch.status, minlength=len(OUTCOMES)))
        return batch

    def process(self, tick: Tick) -> FeatureRow | None:
        """The features after ``tick``, or None if it is a duplicate, too late or a sequence
        jump (counted); :class:`MessageError`, with no state changed, if its terms are out of
        bounds (module docstring)."""
        numbers, codes, batch = self._one_numbers, self._one_codes, self._one
        numbers[0] = (
            tick.ts,
            tick.price,
            tick.best_bid,
            tick.best_ask,
            tick.best_bid_quantity,
            tick.best_ask_quantity,
        )
        source = self._sources.get(tick.source)
        if source is None:
            source = self._sources[tick.source] = len(self._sources)
        codes[0] = (tick.sequence_num, tick.index, source)
        self._run(tick.product_id, self._one_order, numbers, codes, batch)
        status = int(batch.status[0])
        if status >= _OUT_OF_BOUNDS:
            raise batch.out_of_bounds_error(0, tick.record_id)
        counts = [0] * len(OUTCOMES)
        counts[status] = 1
        self.stats.add_outcomes(counts)
        if status > _LAST_TAKEN:
            return None
        return FeatureRow(
            tick.product_id,
            float(batch.ts[0]),
            tick.record_id,
            tuple(batch.values[0].tolist()),
            int(batch.segment[0]),
        )

    def entries_visited(self) -> int:
        """Window entries the engine has evicted, summed or popped so far, over all products:
        its work, which per tick must not grow with how many ticks the windows hold."""
        return sum(int(state[1][_kernel().I_WORK]) for state in self._states.values())

    def _run(
        self,
        product: str,
        order: np.ndarray,
        numbers: np.ndarray,
        codes: np.ndarray,
        batch: EngineBatch,
    ) -> None:
        kernel = _kernel()
        state = self._states.get(product)
        if state is None:
            state = self._states[product] = kernel.new_state(self.config.max_sources_per_product)
        done = 0
        while True:
            done = kernel.run(
                order,
                done,
                numbers,
                codes,
                self._kernel_config,
                *state,
                batch.values,
                batch.ts,
                batch.mid,
                batch.segment,
                batch.status,
            )
            if done == len(order):
                return
            kernel.grow(state)


_LAST_TAKEN = OUTCOMES.index("gap_restarted")
_OUT_OF_BOUNDS = OUTCOMES.index("out_of_bounds")  # the mid or time; the next: spread or imbalance


def compile_engine() -> None:
    """Run one tick through a fresh engine, so numba compiles the kernel into its on-disk cache
    now (12-16 s) and not in the first process that needs it (``infra/setup.sh`` calls this)."""
    FeatureEngine().process(Tick("BTC-USD", 0.0, "compile", 0, 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0))


def _kernel() -> ModuleType:
    """The compiled kernel, imported on first use: numba takes a second to import, and most
    users of this module only want the feature names."""
    from tasks.core import feature_kernel

    return feature_kernel


def _new_batch(n: int) -> EngineBatch:
    return EngineBatch(
        values=np.empty((n, len(FEATURE_NAMES))),
        ts=np.full(n, NAN),
        segment=np.zeros(n, dtype=np.int64),
        mid=np.empty(n),
        status=np.zeros(n, dtype=np.int8),
    )


def _by_product(product_ids: Sequence[str]) -> Iterable[tuple[str, np.ndarray]]:
    """Each product's tick positions, in arrival order (products are independent)."""
    first = product_ids[0] if len(product_ids) else None
    if all(p == first for p in product_ids):
        if first is not None:
            yield first, np.arange(len(product_ids), dtype=np.int64)
        return
    positions: dict[str, list[int]] = {}
    for i, product in enumerate(product_ids):
        positions.setdefault(product, []).append(i)
    for product, where in positions.items():
        yield product, np.array(where, dtype=np.int64)
