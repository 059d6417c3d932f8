"""Replay throughput into the broker: ``uv run python benchmarks/bench_replay.py [--minutes M]``.

Replays the real recordings in ../shared/data when present, else simulated ones it writes to a
temporary directory, at ``--speed max`` into an embedded broker the script starts. Prints a JSON
object: messages/s and tickers/s end to end (read, parse, encode, produce, all acknowledged), and
the same without Kafka (read, parse, encode) for comparison.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tasks.core.messages import TICKER_CHANNEL
from tasks.io.broker import free_port, start_broker, stop_broker
from tasks.io.recordings import (
    BadLine,
    envelope_ticks,
    expand_inputs,
    merge_by_receive_time,
    source_name,
)
from tasks.services.replay import run_replay
from tasks.settings import Settings
from tasks.sim.simulator import simulate_envelopes

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "coinbase-btc-usd-2025-12"


def _generated(folder: Path, minutes: float) -> list[Path]:
    path = folder / "simulated.ndjson"
    with path.open("w") as fh:
        for envelope in simulate_envelopes(("BTC-USD", "ETH-USD"), seed=1, minutes=minutes):
            fh.write(json.dumps(envelope, separators=(",", ":")) + "\n")
    return [path]


def _without_kafka(files: list[Path]) -> tuple[int, float]:
    """Everything replay does but producing."""
    started = time.perf_counter()
    sources = {str(path): source_name(path) for path in files}
    messages = 0
    for _, item in merge_by_receive_time(files):
        if isinstance(item, BadLine):
            continue
        messages += 1
        if item.envelope.channel == TICKER_CHANNEL:
            for tick in envelope_ticks(item, sources[item.path]):
                tick.to_bytes()
    return messages, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=240.0, help="simulated data, if needed")
    parser.add_argument("--simulated", action="store_true", help="ignore ../shared/data")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        if SHARED.is_dir() and not args.simulated:
            files, data = expand_inputs([SHARED]), f"real recordings ({SHARED.name})"
        else:
            files, data = _generated(Path(tmp), args.minutes), f"simulated, {args.minutes} min"
        port = free_port()
        broker = start_broker("127.0.0.1", port, log_path=Path(tmp) / "broker.log")
        try:
            settings = Settings(
                kafka_bootstrap_servers=f"127.0.0.1:{port}",
                raw_topic=f"bench.raw.{uuid.uuid4().hex[:6]}",
                data_dir=Path(tmp),
            )
            stats = run_replay(settings, files, speed=None)
        finally:
            stop_broker(broker)
        parsed, parse_seconds = _without_kafka(files)
    summary = stats.summary()
    print(
        json.dumps(
            {
                "benchmark": "replay",
                "data": data,
                "files": stats.files,
                "messages": stats.messages,
                "tickers": stats.tickers,
                "malformed": stats.malformed,
                "seconds": summary["seconds"],
                "messages_per_s": summary["messages_per_s"],
                "tickers_per_s": summary["tickers_per_s"],
                "delivered": stats.delivered,
                "undelivered": stats.undelivered,
                "without_kafka_messages_per_s": round(parsed / parse_seconds, 1),
            },
            indent=2,
        )
    )
    return 0 if stats.undelivered == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
