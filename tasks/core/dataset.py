"""The feature data set: one row per product and second of the label grid, features and labels.

Every tick's features come from :class:`FeatureEngine`, exactly as in the stream. The
per-tick rows are resampled to the label grid (:func:`tasks.core.labels.second_grid`): the
features of the last tick at or before the second, the forward volatility over the next 60 s and
the trailing volatility of the past 900 s. :data:`SCHEMA` is the data set's columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.core.features import (
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    OUTCOMES,
    EngineBatch,
    FeatureEngine,
    FeatureRow,
    TickColumns,
)
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


def feature_frame(ticks: Iterable[Tick] | TickColumns, engine: FeatureEngine) -> pd.DataFrame:
    """One row per product and grid second, with features and labels (columns of SCHEMA);
    :class:`MessageError` for the first tick out of the engine's bounds."""
    columns = ticks if isinstance(ticks, TickColumns) else TickColumns.from_ticks(ticks)
    batch = engine.process_batch(columns)
    refused = np.flatnonzero(batch.status >= OUTCOMES.index("out_of_bounds"))
    if len(refused):
        first = int(refused[0])
        raise batch.out_of_bounds_error(first, columns.record_id(first))
    return batch_frame(columns, batch)


def batch_frame(columns: TickColumns, batch: EngineBatch) -> pd.DataFrame:
    """:func:`feature_frame` of ticks the engine has run (``batch``)."""
    taken = np.flatnonzero(batch.taken)
    products = np.asarray(columns.product_id, dtype=object)[taken]
    frames = []
    for name in sorted(set(products.tolist())):
        rows = taken[products == name]  # the product's accepted ticks, in processing order
        times = batch.ts[rows]
        accepted = pd.DataFrame({"product_id": name, "ts": times, "mid": batch.mid[rows]})
        grid = add_label_columns(second_grid(accepted), HORIZON_S, TRAILING_S)
        if grid.empty:
            continue
        picks = rows[grid["tick_row"].to_numpy()]  # the last tick at or before each second
        frame = pd.DataFrame(
            {
                "product_id": name,
                "ts": pd.to_datetime(grid["second"].to_numpy() * 1_000_000, unit="us", utc=True),
                "tick_ts": pd.to_datetime(
                    np.round(batch.ts[picks] * 1e6).astype(np.int64), unit="us", utc=True
                ),
                "record_id": [columns.record_id(i) for i in picks],
            }
        )
        features = pd.DataFrame(batch.values[picks], columns=list(FEATURE_NAMES))
        frame = pd.concat([frame, features], axis=1)
        frame["feature_set_version"] = FEATURE_SET_VERSION
        frame[FWD_COLUMN] = grid[FWD_COLUMN].to_numpy()
        frame[TRAIL_COLUMN] = grid[TRAIL_COLUMN].to_numpy()
        frame["segment"] = grid["segment"].to_numpy(dtype=np.int64)
        frame["source"] = [columns.source[i] for i in picks]
        frames.append(frame)
    if not frames:
        return SCHEMA.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)
