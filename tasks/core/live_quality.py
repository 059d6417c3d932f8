"""Live model quality and stream rows on the label grid. Pure.

The stream holds one feature record per tick; training rows are one per product and second of the
label grid (:func:`tasks.core.labels.second_grid`: the last tick at or before each whole second,
no second across a gap). :func:`on_label_grid` puts stream records on that same grid, so drift
compares like with like and live figures are computed on the rows offline evaluation uses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.core.evaluation import epoch_seconds
from tasks.core.labels import second_grid


def on_label_grid(records: pd.DataFrame) -> pd.DataFrame:
    """The records (``product_id``, ``ts`` and anything else, one per tick) picked as training
    picks ticks: for each product and grid second, the last record at or before it."""
    if records.empty:
        return records.iloc[0:0]
    ordered = records.sort_values(["product_id", "ts"], kind="stable", ignore_index=True)
    grid = second_grid(
        pd.DataFrame(
            {
                "product_id": ordered["product_id"].to_numpy(),
                "ts": epoch_seconds(ordered["ts"]),
                "mid": np.zeros(len(ordered)),  # the grid's rows do not depend on prices
            }
        )
    )
    picked = ordered.iloc[grid["tick_row"].to_numpy()].reset_index(drop=True)
    picked["ts"] = pd.to_datetime(grid["second"].to_numpy() * 1_000_000, unit="us", utc=True)
    return picked
