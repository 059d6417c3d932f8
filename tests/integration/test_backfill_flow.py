"""The ``backfill`` Prefect flow on the session's Prefect server: it calls the backfill task."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
from session_services import prefect_api

from tasks.core.timeutil import format_ts
from tasks.io.feature_store import load_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_backfill_flow_writes_the_data_set(prefect_server, tmp_path):

    from flows.backfill import backfill

    lines = []
    for i in range(600):
        mid = 100.0 + 0.01 * (i % 7)
        ticker = {
            "product_id": "BTC-USD",
            "price": f"{mid:.2f}",
            "best_bid": f"{mid - 0.01:.2f}",
            "best_ask": f"{mid + 0.01:.2f}",
        }
        lines.append(
            json.dumps(
                {
                    "channel": "ticker",
                    "timestamp": format_ts(1_765_000_000.0 + 0.5 * i),
                    "sequence_num": i,
                    "events": [{"type": "update", "tickers": [ticker]}],
                }
            )
        )
    recording = tmp_path / "BTC-USD_flow.ndjson.gz"
    with gzip.open(recording, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    with prefect_api(prefect_server):
        stats = backfill(inputs=[str(recording)], out=str(tmp_path / "features"))
        # the same, as Prefect tasks per file and per (product, day) on a local Dask cluster
        on_dask = backfill(inputs=[str(recording)], out=str(tmp_path / "dask"), workers=2)
    frame = load_dataset(tmp_path / "features")
    assert stats["rows"] == len(frame) == 300 and stats["ticks"] == 600
    assert frame["imbalance"].isna().all()  # the recording has no quantities: NaN, not zero
    pd.testing.assert_frame_equal(load_dataset(tmp_path / "dask"), frame)
    assert {k: v for k, v in on_dask.items() if k not in ("seconds", "out")} == {
        k: v for k, v in stats.items() if k not in ("seconds", "out")
    }
