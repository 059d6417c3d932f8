"""Backfill throughput over the real recordings in ../shared/data (all 26 files).

Runs :func:`tasks.stages.backfill.backfill` end to end (read and validate, engine, labels, Parquet)
into a temporary directory, as a worker does partition after partition (after a warm-up, three
runs: the median and each), and times its phases separately as well, in CPU time (the machine is
shared: wall time follows its load). Without ../shared/data it backfills a synthetic recording of
comparable size instead (and says so). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from tasks.core.dataset import feature_frame
from tasks.core.features import FeatureEngine
from tasks.core.messages import to_tick
from tasks.core.timeutil import format_ts
from tasks.io.feature_store import load_dataset, write_dataset
from tasks.io.recordings import expand_inputs, read_ticks
from tasks.stages.backfill import backfill, load_tick_columns

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "coinbase-btc-usd-2025-12"


def synthetic_recording(path: Path, n: int = 60_000, seed: int = 1) -> Path:
    rng = random.Random(seed)
    ts, mid = 1_765_000_000.0, 90_000.0
    with gzip.open(path, "wt") as fh:
        for seq in range(n):
            ts += rng.expovariate(4.0)
            mid = round(mid * math.exp(rng.gauss(0, 2e-5)), 2)
            ticker = {
                "type": "ticker",
                "product_id": "BTC-USD",
                "price": f"{mid:.2f}",
                "best_bid": f"{mid - 0.01:.2f}",
                "best_ask": f"{mid + 0.01:.2f}",
                "best_bid_quantity": f"{rng.uniform(0, 2):.8f}",
                "best_ask_quantity": f"{rng.uniform(0, 2):.8f}",
            }
            envelope = {
                "channel": "ticker",
                "client_id": "",
                "timestamp": format_ts(ts),
                "sequence_num": seq,
                "events": [{"type": "update", "tickers": [ticker]}],
            }
            fh.write(json.dumps(envelope) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", help="recordings (default: ../shared/data)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if args.inputs:
            inputs, data = [Path(p) for p in args.inputs], "given"
        elif SHARED.is_dir():
            inputs, data = [SHARED], str(SHARED)
        else:
            inputs, data = [synthetic_recording(tmp_path / "synthetic.ndjson.gz")], "synthetic"

        # a worker's steady state: the compiled kernels and the lazily imported writers loaded
        # (each on its first call, about 0.4 CPU-s) by a backfill of one file before anything is
        # timed
        FeatureEngine().process(to_tick(next(t for t in read_ticks(expand_inputs(inputs)))))
        backfill(expand_inputs(inputs)[:1], tmp_path / "warm-up")
        # a worker backfills partition after partition: the median of three runs, and the first
        cpu_runs = []
        for run in range(3):
            cpu = time.process_time()
            stats = backfill(inputs, tmp_path / f"features-{run}")
            cpu_runs.append(time.process_time() - cpu)
        cpu_s = statistics.median(cpu_runs)
        started = time.process_time()
        rows = len(load_dataset(tmp_path / "features-0"))
        load_s = time.process_time() - started

        # the phases on their own, for where the time goes
        started = time.process_time()
        columns = load_tick_columns(expand_inputs(inputs))
        read_s = time.process_time() - started
        started = time.process_time()
        FeatureEngine().process_batch(columns)
        engine_s = time.process_time() - started
        started = time.process_time()
        frame = feature_frame(columns, FeatureEngine())
        frame_s = time.process_time() - started
        started = time.process_time()
        write_dataset(frame, tmp_path / "again.parquet")
        write_s = time.process_time() - started

    figures = {
        "data": data,
        "files": stats.files,
        "ticks": stats.ticks,
        "rows": stats.rows,
        "labelled_rows": stats.labelled_rows,
        "wall_s": round(stats.seconds, 2),
        "ticks_per_s": round(stats.ticks / stats.seconds),
        "rows_per_s": round(stats.rows / stats.seconds),
        "cpu_s": round(cpu_s, 2),
        "cpu_s_runs": [round(c, 2) for c in cpu_runs],
        "ticks_per_cpu_s": round(stats.ticks / cpu_s),
        "read_ticks_per_cpu_s": round(len(columns) / read_s),
        "engine_ticks_per_cpu_s": round(len(columns) / engine_s),
        "phases_cpu_s": {
            "read_and_validate": round(read_s, 2),
            "engine": round(engine_s, 2),
            "engine_resample_and_label": round(frame_s, 2),
            "write_parquet": round(write_s, 2),
            "load_dataset": round(load_s, 2),
        },
        "rows_loaded": rows,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
