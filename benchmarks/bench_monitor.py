"""The monitor's time and memory on a day of features.

Simulates ``--hours`` (default 24) of BTC-USD and ETH-USD and puts on an embedded broker what the
stream would hold after that day: every raw tick on ``ticks.raw``, its feature record on
``ticks.features`` (the feature engine, as the featurizer writes them) and its prediction on
``ticks.predictions`` (a champion trained on the day's first three hours, as the scorer writes
them). Then it runs the check the ``monitor`` flow runs, through ``cryptovol drift`` in a process
of its own: drift of the whole day of ``ticks.features`` against the champion's training sample,
and live quality over 15 min, 1 h and 24 h from ``ticks.predictions`` and ``ticks.raw``. Then the
batch path: the same day as a backfilled Parquet data set (``--current``, no live quality).

Prints one JSON object: rows and records, each stage's seconds (from the check's own timings),
the wall time and the peak resident memory of the check's process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stream_timing import produce_all

PROJECT = Path(__file__).resolve().parents[1]


def _produce(settings, topic: str, records) -> int:
    from tasks.io.kafka import make_producer

    producer = make_producer(settings, **{"linger.ms": 20, "batch.num.messages": 5000})
    return produce_all(producer, topic, records)


def _check(env: dict, args: list[str]) -> dict:
    """`cryptovol drift ARGS --json` in a process of its own: its output, wall time, peak RSS."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tasks.cli", "drift", *args, "--no-push", "--json"],
            env=env,
            cwd=PROJECT,
            stdout=out,
            stderr=err,
            text=True,
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(err.read()[-3000:])
        result = json.loads(out.read())
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "stages_s": {k: round(v, 2) for k, v in result["timings"].items()},
        "current_rows": result["current"]["rows"],
        "drift_share": result["drift"]["share"],
        "live_rows": {w: f["rows"] for w, f in (result["live"] or {}).items()},
    }


def prepare(root: Path, bootstrap: str, hours: float) -> dict:
    """Simulate the day, train the champion, fill the topics (in a process of its own, so the
    checks' memory is theirs alone)."""
    import numpy as np

    from tasks.core.features import FeatureEngine
    from tasks.core.messages import to_tick
    from tasks.io import model_store, registry
    from tasks.io.feature_store import write_dataset
    from tasks.io.kafka import ensure_topics
    from tasks.io.recordings import BadLine, read_ticks
    from tasks.sim.writer import write_recordings
    from tasks.stages.data import load_frame
    from tasks.stages.promote import promote
    from tasks.stages.train import train_and_register

    out: dict = {}
    t0 = time.perf_counter()
    write_recordings(root / "day", ("BTC-USD", "ETH-USD"), seed=11, minutes=hours * 60)
    write_recordings(root / "train", ("BTC-USD", "ETH-USD"), seed=12, minutes=180)
    out["simulate_s"] = round(time.perf_counter() - t0, 2)

    settings = _settings(root, bootstrap)
    t0 = time.perf_counter()
    trained = train_and_register(settings, [str(root / "train")], check_contracts=False)
    promote(settings, trained["version"], force=True, who="bench", why="bench")
    out["train_champion_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    raw = [t for t in read_ticks(sorted((root / "day").glob("*.ndjson.gz")))]
    raw = [t for t in raw if not isinstance(t, BadLine)]
    engine = FeatureEngine()
    rows = [r for r in (engine.process(to_tick(t)) for t in raw) if r is not None]
    predictor = model_store.load_predictor(registry.model_uri(settings))
    scores = predictor.predict_array(np.array([r.values for r in rows], dtype=float))
    out["ticks"], out["feature_records"] = len(raw), len(rows)
    out["prepare_records_s"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    ensure_topics(settings)
    _produce(settings, settings.raw_topic, ((t.product_id.encode(), t.to_bytes()) for t in raw))
    _produce(
        settings,
        settings.features_topic,
        (
            (r.product_id.encode(), json.dumps(r.to_record(), allow_nan=False).encode())
            for r in rows
        ),
    )
    stamp = {
        "schema_version": 1,
        "model_name": registry.model_name(settings),
        "model_version": trained["version"],
        "model_variant": "ml",
        "threshold": predictor.threshold,
        "scored_at": "2026-01-01T00:00:00+00:00",
        "latency_ms": 0.0,
    }
    predictions = (
        (
            r.product_id.encode(),
            json.dumps(
                {
                    **stamp,
                    "record_id": r.record_id,
                    "product_id": r.product_id,
                    "ts": r.to_record()["ts"],
                    "score": float(s),
                    "spike": bool(s >= predictor.threshold),
                }
            ).encode(),
        )
        for r, s in zip(rows, scores, strict=True)
    )
    _produce(settings, settings.predictions_topic, predictions)
    out["produce_s"] = round(time.perf_counter() - t0, 2)

    frame, _ = load_frame([str(root / "day")], settings.backfill_cache_dir)
    write_dataset(frame, root / "day.parquet")
    return out


def _settings(root: Path, bootstrap: str):
    from tasks.settings import Settings

    return Settings(
        kafka_bootstrap_servers=bootstrap,
        data_dir=root / "data",
        mlflow_tracking_uri=f"sqlite:///{root / 'store' / 'mlflow.db'}",
        pushgateway_url="",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--prepare", nargs=2, metavar=("DIR", "BOOTSTRAP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.prepare:
        print(json.dumps(prepare(Path(args.prepare[0]), args.prepare[1], args.hours)))
        return 0

    from tasks.io.broker import free_port, start_broker, stop_broker

    out: dict = {"hours": args.hours, "products": ["BTC-USD", "ETH-USD"]}
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        root = Path(tmp)
        port = free_port()
        broker = start_broker("127.0.0.1", port, log_path=root / "broker.log")
        try:
            bootstrap = f"127.0.0.1:{port}"
            prepared = subprocess.run(
                [sys.executable, __file__, "--hours", str(args.hours), "--prepare", tmp, bootstrap],
                capture_output=True,
                text=True,
                check=True,
            )
            out.update(json.loads(prepared.stdout.strip().splitlines()[-1]))
            settings = _settings(root, bootstrap)
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
                "CRYPTOVOL_DATA_DIR": str(settings.data_dir),
                "MLFLOW_TRACKING_URI": settings.tracking_uri,
                "CRYPTOVOL_PUSHGATEWAY_URL": "",
            }
            out["stream_check"] = _check(env, ["--minutes", str(args.hours * 60)])
            out["batch_check"] = _check(env, ["--current", str(root / "day.parquet"), "--no-live"])
        finally:
            stop_broker(broker)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
