"""End-to-end throughput of the streaming scorer through the embedded broker.

Trains a champion on the real recordings (or a simulated one when ../shared/data is absent) into
a SQLite registry, produces the feature records of those recordings onto a fresh features topic
as the featurizer writes them, then runs the scorer in-process and times it from the first
consumed record to the last acknowledged prediction. The model alone on the same rows, in the
same batches, is timed too (``model_share_of_wall``). Prints one JSON object, with the CPU time
per record of the whole process (less sensitive to a loaded machine than records/s).

    uv run python benchmarks/bench_score.py [--files N] [--batch-size 500] [--candidates har_rv]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

from stream_timing import mean_latency_ms, produce_all, run_until_answered

from tasks.core.gc_tuning import tune_gc_for_a_long_running_process
from tasks.core.predictions import feature_array
from tasks.core.training import TrainConfig
from tasks.io.broker import free_port, start_broker, stop_broker
from tasks.io.kafka import ensure_topics, make_producer
from tasks.io.model_source import ModelSource
from tasks.services.featurizer import feature_payload
from tasks.services.scorer import Scorer, scorer_topics
from tasks.settings import Settings
from tasks.stages.backfill import batch_features
from tasks.stages.promote import promote
from tasks.stages.train import train_and_register

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "coinbase-btc-usd-2025-12"


def recordings(files: int, workdir: Path) -> tuple[list[Path], str]:
    real = sorted(SHARED.glob("*.ndjson.gz"))[:files] if SHARED.is_dir() else []
    if real:
        return real, "shared real recordings"
    from tasks.sim.writer import write_recordings

    write_recordings(workdir / "sim", products=("BTC-USD", "ETH-USD"), seed=3, minutes=120)
    return sorted((workdir / "sim").rglob("*.ndjson*")), "simulated recordings (2 h, 2 products)"


def train_champion(settings: Settings, paths: list[Path], candidates: tuple[str, ...]) -> dict:
    config = TrainConfig(
        candidates=candidates, n_folds=2, missing_report=False, bootstrap_samples=20
    )
    record = train_and_register(settings, [str(p) for p in paths], config, check_contracts=False)
    promote(settings, record["version"], force=True, who="bench", why="scorer benchmark")
    return record


def model_rate(source: ModelSource, rows: list[dict], batch_size: int) -> float:
    """Records per second of ``predict_array`` alone, in the scorer's batches."""
    predictor = source.current.predictor
    started = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        X, _ = feature_array(rows[i : i + batch_size], predictor.feature_names)
        predictor.predict_array(X)
    return len(rows) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=26, help="real recordings to use")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--candidates", default="har_vol,har_rv,blend", help="models to train, comma-separated"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("cryptovol.alerts").setLevel(logging.ERROR)  # one line per spike

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        paths, data = recordings(args.files, workdir)
        uri = f"sqlite:///{workdir / 'store' / 'mlflow.db'}"
        started = time.perf_counter()
        record = train_champion(
            Settings(data_dir=workdir / "data", mlflow_tracking_uri=uri),
            paths,
            tuple(args.candidates.split(",")),
        )
        train_s = time.perf_counter() - started
        rows = list(batch_features(paths))
        values = [feature_payload(row) for row in rows]
        port = free_port()
        broker = start_broker("127.0.0.1", port, log_path=workdir / "broker.log")
        try:
            suffix = uuid.uuid4().hex[:8]
            settings = Settings(
                kafka_bootstrap_servers=f"127.0.0.1:{port}",
                features_topic=f"bench.features.{suffix}",
                predictions_topic=f"bench.predictions.{suffix}",
                features_dlq_topic=f"bench.features.dlq.{suffix}",
                alerts_topic=f"bench.alerts.{suffix}",
                data_dir=workdir / "data",
                mlflow_tracking_uri=uri,
            )
            ensure_topics(settings, scorer_topics(settings))
            produce_all(
                make_producer(settings),
                settings.features_topic,
                ((row.product_id.encode(), value) for row, value in zip(rows, values, strict=True)),
            )

            source = ModelSource(settings)
            source.load()
            tune_gc_for_a_long_running_process()  # as the command does
            scorer = Scorer(settings, source, f"bench-{suffix}", batch_size=args.batch_size)
            timing = run_until_answered(
                scorer,
                taken=lambda: scorer.stats.features_in > 0,
                answered=lambda: scorer.stats.predictions_out + scorer.stats.dlq >= len(values),
            )
        finally:
            stop_broker(broker)

    feature_rows = [row.as_dict() for row in rows]
    model_per_s = model_rate(source, feature_rows, args.batch_size)
    print(
        json.dumps(
            {
                "data": data,
                "load_average_1m": round(os.getloadavg()[0], 1),
                "records": len(values),
                "batch_size": args.batch_size,
                "model": {
                    "kind": source.current.predictor.kind,
                    "version": record["version"],
                    "train_seconds": round(train_s, 1),
                },
                "score_seconds": round(timing.seconds, 3) if timing.seconds else None,
                "score_records_per_s": timing.per_s(len(values)),
                "score_cpu_us_per_record": timing.cpu_us_per(len(values)),
                "model_only_records_per_s": round(model_per_s),
                "model_share_of_wall": timing.share(len(values), model_per_s),
                "mean_poll_to_ack_ms": mean_latency_ms(
                    scorer.metrics.latency, "cryptovol_scorer_latency_seconds"
                ),
                "stats": scorer.stats.as_dict(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
