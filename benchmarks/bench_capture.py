"""Capture cost: ``uv run python benchmarks/bench_capture.py [--messages N]``.

Starts an embedded broker and the local exchange (a separate process, simulator at max speed),
then captures in this process until ``--messages`` have arrived. Prints a JSON object with the
capture's CPU seconds (user + system of this process: WebSocket, parsing, archive gzip and the
Kafka client's threads) per 1000 messages, and the message rate the pair sustained.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from tasks.io.broker import free_port, port_open, start_broker, stop_broker
from tasks.io.exchange_client import AdvancedTradeClient
from tasks.services.capture import run_capture
from tasks.settings import Settings


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=30_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        kafka_port, ws_port = free_port(), free_port()
        broker = start_broker("127.0.0.1", kafka_port, log_path=Path(tmp) / "broker.log")
        exchange = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tasks.cli",
                "exchange",
                "--port",
                str(ws_port),
                "--seed",
                "1",
                "--speed",
                "max",
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not port_open("127.0.0.1", ws_port):
                if time.monotonic() > deadline or exchange.poll() is not None:
                    raise RuntimeError("the exchange did not start")
                time.sleep(0.1)
            settings = Settings(
                kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}",
                raw_topic=f"bench.raw.{uuid.uuid4().hex[:6]}",
                data_dir=Path(tmp) / "data",
            )
            client = AdvancedTradeClient(f"ws://127.0.0.1:{ws_port}", ["BTC-USD", "ETH-USD"])
            stop = threading.Event()

            def stop_when_done() -> None:
                while client.stats.messages < args.messages and not stop.is_set():
                    time.sleep(0.01)
                stop.set()

            threading.Thread(target=stop_when_done, daemon=True).start()
            cpu0, wall0 = _cpu_seconds(), time.perf_counter()
            stats = run_capture(settings, stop_event=stop, metrics_port=0, client=client)
            cpu, wall = _cpu_seconds() - cpu0, time.perf_counter() - wall0
        finally:
            exchange.terminate()
            exchange.wait(10)
            stop_broker(broker)
    print(
        json.dumps(
            {
                "benchmark": "capture",
                "messages": stats.messages,
                "tickers": stats.tickers,
                "seconds": round(wall, 3),
                "cpu_seconds": round(cpu, 3),
                "cpu_s_per_1000_messages": round(cpu / stats.messages * 1000, 4),
                "cpu_share_of_one_core": round(cpu / wall, 2),
                "messages_per_s": round(stats.messages / wall, 1),
                "delivered": stats.delivered,
                "undelivered": stats.undelivered,
                "archive_lines": stats.archive_lines,
                "gaps": stats.gaps,
            },
            indent=2,
        )
    )
    return 0 if stats.undelivered == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
