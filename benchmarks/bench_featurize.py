"""End-to-end throughput of the streaming featurizer through the embedded broker.

Produces the ticks of the real recordings (or of a simulated one when ../shared/data is absent)
onto a fresh raw topic, then runs the featurizer in-process and times it from the first consumed
tick to the last acknowledged feature record. The engine alone on the same ticks is timed too, so
the cost of the broker round trip shows (``engine_share_of_wall``). Prints one JSON object, with the
CPU time per tick of the whole process (less sensitive to a loaded machine than ticks/s).

    uv run python benchmarks/bench_featurize.py [--files N] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

from stream_timing import mean_latency_ms, produce_all, run_until_answered

from tasks.core.features import FeatureEngine
from tasks.core.gc_tuning import tune_gc_for_a_long_running_process
from tasks.core.messages import to_tick
from tasks.io.broker import free_port, start_broker, stop_broker
from tasks.io.kafka import ensure_topics, make_producer
from tasks.io.recordings import BadLine, read_ticks
from tasks.services.featurizer import Featurizer
from tasks.settings import Settings
from tasks.sim.simulator import simulate_envelopes

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "coinbase-btc-usd-2025-12"


def recordings(files: int, workdir: Path) -> tuple[list[Path], str]:
    real = sorted(SHARED.glob("*.ndjson.gz"))[:files] if SHARED.is_dir() else []
    if real:
        return real, "shared real recordings"
    path = workdir / "simulated.ndjson.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for envelope in simulate_envelopes(minutes=45, seed=1):
            fh.write(json.dumps(envelope) + "\n")
    return [path], "simulated recording (45 min, 2 products)"


def engine_rate(raw: list) -> float:
    ticks = [to_tick(t) for t in raw]
    engine = FeatureEngine()
    started = time.perf_counter()
    for tick in ticks:
        engine.process(tick)
    return len(ticks) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6, help="real recordings to use")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        paths, data = recordings(args.files, Path(tmp))
        raw = [t for t in read_ticks(paths) if not isinstance(t, BadLine)]
        port = free_port()
        broker = start_broker("127.0.0.1", port, log_path=Path(tmp) / "broker.log")
        try:
            suffix = uuid.uuid4().hex[:8]
            settings = Settings(
                kafka_bootstrap_servers=f"127.0.0.1:{port}",
                raw_topic=f"bench.raw.{suffix}",
                features_topic=f"bench.features.{suffix}",
                dlq_topic=f"bench.dlq.{suffix}",
                predictions_topic=f"bench.predictions.{suffix}",
            )
            ensure_topics(settings)
            started = time.perf_counter()
            produce_all(
                make_producer(settings),
                settings.raw_topic,
                ((tick.product_id.encode(), tick.to_bytes()) for tick in raw),
            )
            produce_s = time.perf_counter() - started

            tune_gc_for_a_long_running_process()  # as the command does
            featurizer = Featurizer(settings, f"bench-{suffix}", batch_size=args.batch_size)
            timing = run_until_answered(
                featurizer,
                taken=lambda: featurizer.stats.ticks_in > 0,
                answered=lambda: featurizer.stats.features_out >= len(raw),
            )
        finally:
            stop_broker(broker)

    engine_ticks_per_s = engine_rate(raw)
    print(
        json.dumps(
            {
                "data": data,
                "load_average_1m": round(os.getloadavg()[0], 1),
                "ticks": len(raw),
                "batch_size": args.batch_size,
                "produce_ticks_per_s": round(len(raw) / produce_s),
                "featurize_seconds": round(timing.seconds, 3) if timing.seconds else None,
                "featurize_ticks_per_s": timing.per_s(len(raw)),
                "featurize_cpu_us_per_tick": timing.cpu_us_per(len(raw)),
                "engine_only_ticks_per_s": round(engine_ticks_per_s),
                "engine_share_of_wall": timing.share(len(raw), engine_ticks_per_s),
                "mean_poll_to_ack_ms": mean_latency_ms(
                    featurizer.metrics.latency, "cryptovol_featurize_latency_seconds"
                ),
                "stats": featurizer.stats.as_dict(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
