"""The feature data set: one row per product and second of the label grid, features and labels.

Every tick's features come from :meth:`FeatureEngine.process`, exactly as in the stream. The
per-tick rows are resampled to the label grid (:func:`tasks.core.labels.second_grid`): the
features of the last tick at or before the second, the forward volatility over the next 60 s and
the trailing volatility of the past 900 s. :data:`SCHEMA` is the data set's columns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.core.features import FEATURE_NAMES, FEATURE_SET_VERSION, FeatureEngine, FeatureRow
from tasks.core.labels import HORIZON_S, TRAILING_S, add_label_columns, second_grid
from tasks.core.messages import Tick

FWD_COLUMN = f"fwd_vol_{HORIZON_S}"
TRAIL_COLUMN = f"trail_vol_{TRAILING_S}"
_UTC_US = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("product_id", pa.string()),
        ("ts", _UTC_US),
        ("tick_ts", _UTC_US),
        ("record_id", pa.string()),
        *((name, pa.float64()) for name in FEATURE_NAMES),
        ("feature_set_version", pa.string()),
        (FWD_COLUMN, pa.float64()),
        (TRAIL_COLUMN, pa.float64()),
        ("segment", pa.int64()),
        ("source", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)


def engine_rows(ticks: Iterable[Tick], engine: FeatureEngine) -> Iterator[tuple[Tick, FeatureRow]]:
    process = engine.process
    for tick in ticks:
        row = process(tick)
        if row is not None:
            yield tick, row


class _ProductSeries:
    """One product's accepted ticks: time and mid of every one (for the label grid), and the
    features of only those that can be the last tick at or before a whole second."""

    __slots__ = ("kept", "mids", "pending", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.mids: list[float] = []
        self.kept: dict[int, tuple[FeatureRow, str]] = {}  # tick position -> (row, source)
        self.pending: tuple[int, FeatureRow, str] | None = None

    def add(self, tick: Tick, row: FeatureRow) -> None:
        mid = tick.mid  # as the engine
        pending = self.pending
        # the previous tick is the last one at or before some second s iff ts_prev <= s < ts
        if pending is not None and math.ceil(pending[1].ts) < row.ts:
            self.kept[pending[0]] = (pending[1], pending[2])
        self.pending = (len(self.times), row, tick.source)
        self.times.append(row.ts)
        self.mids.append(mid)

    def finish(self) -> None:
        if self.pending is not None:
            self.kept[self.pending[0]] = (self.pending[1], self.pending[2])
            self.pending = None


def feature_frame(ticks: Iterable[Tick], engine: FeatureEngine) -> pd.DataFrame:
    """One row per product and grid second, with features and labels (columns of SCHEMA)."""
    series: dict[str, _ProductSeries] = {}
    for tick, row in engine_rows(ticks, engine):
        product = series.get(tick.product_id)
        if product is None:
            product = series[tick.product_id] = _ProductSeries()
        product.add(tick, row)
    frames = []
    for name in sorted(series):
        product = series[name]
        product.finish()
        times = np.array(product.times, dtype=np.float64)
        accepted = pd.DataFrame({"product_id": name, "ts": times, "mid": product.mids})
        grid = add_label_columns(second_grid(accepted), HORIZON_S, TRAILING_S)
        if grid.empty:
            continue
        picks = grid["tick_row"].to_numpy()
        kept = [product.kept[i] for i in picks]
        frame = pd.DataFrame(
            {
                "product_id": name,
                "ts": pd.to_datetime(grid["second"].to_numpy() * 1_000_000, unit="us", utc=True),
                "tick_ts": pd.to_datetime(
                    np.round(times[picks] * 1e6).astype(np.int64), unit="us", utc=True
                ),
                "record_id": [row.record_id for row, _source in kept],
            }
        )
        values = np.array([row.values for row, _source in kept], dtype=np.float64)
        features = pd.DataFrame(values, columns=list(FEATURE_NAMES))
        frame = pd.concat([frame, features], axis=1)
        frame["feature_set_version"] = FEATURE_SET_VERSION
        frame[FWD_COLUMN] = grid[FWD_COLUMN].to_numpy()
        frame[TRAIL_COLUMN] = grid[TRAIL_COLUMN].to_numpy()
        frame["segment"] = grid["segment"].to_numpy(dtype=np.int64)
        frame["source"] = [source for _row, source in kept]
        frames.append(frame)
    if not frames:
        return SCHEMA.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)
