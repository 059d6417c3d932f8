"""Featurizer integration test helpers: recordings, producing, reading back, comparing."""

from __future__ import annotations

import gzip
import json
import math
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tasks.core.features import FEATURE_NAMES
from tasks.core.messages import RawTick
from tasks.core.timeutil import format_ts
from tasks.io.kafka import ensure_topics, make_producer, require_broker
from tasks.io.recordings import BadLine, read_ticks
from tasks.settings import Settings
from tasks.stages.backfill import batch_features

# Restarts compare exactly. A restarted featurizer rebuilds its engine by re-reading at least
# tasks.core.features.restart_lookback_s (935 s) of event time before it produces again, and the
# engine's state (window sums included: their two summing stacks split at fixed event-time
# boundaries) is a fixed function of the ticks its windows hold, so its features, and the
# duplicates a crash causes, are bit-identical to an uninterrupted run's and the batch path's.
# Before, the sums split wherever the engine's run length put them, so restarted features
# differed in the last bits on about half the rows (benchmarks/bench_restart.py: up to 1.4e-15
# absolute on the real recordings, 3.8e-15 on a synthetic stream, 1.1e-10 relative) and the
# tests compared within isclose(rel=1e-9, abs=1e-13).


def write_recording(
    path: Path,
    *,
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD"),
    ticks: int = 3000,
    seconds: float = 900.0,
    seed: int = 0,
    start: float = 1767225600.0,
    gap_at: float | None = 0.5,
) -> Path:
    """A gzip NDJSON recording of random-walk tickers in the exchange's envelope format.

    Some envelopes carry two tickers, heartbeats are interleaved, a few tickers lack quantities,
    and a 45 s silence at ``gap_at`` (a fraction of the ticks) makes the engine restart windows.
    """
    rng = random.Random(seed)
    mids = {p: 50_000.0 / (i + 1) for i, p in enumerate(products)}
    ts = start
    seq = 0
    written = 0
    gap_tick = int(ticks * gap_at) if gap_at is not None else -1
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        while written < ticks:
            ts += rng.expovariate(ticks / seconds)
            if written == gap_tick:
                ts += 45.0
            tickers = []
            for product in rng.sample(products, 2 if rng.random() < 0.1 else 1):
                mid = mids[product] = mids[product] * math.exp(rng.gauss(0.0, 2e-4))
                half = max(0.005, mid * rng.uniform(0.0, 1e-4))
                ticker = {
                    "type": "ticker",
                    "product_id": product,
                    "price": f"{mid + rng.choice((-half, half)):.2f}",
                    "volume_24_h": f"{rng.uniform(1e3, 2e3):.8f}",
                    "best_bid": f"{mid - half:.2f}",
                    "best_ask": f"{mid + half:.2f}",
                }
                if rng.random() > 0.05:
                    ticker["best_bid_quantity"] = f"{rng.uniform(0, 2):.8f}"
                    ticker["best_ask_quantity"] = f"{rng.uniform(0, 2):.8f}"
                tickers.append(ticker)
            envelope = {
                "channel": "ticker",
                "client_id": "",
                "timestamp": format_ts(ts),
                "sequence_num": seq,
                "events": [{"type": "update", "tickers": tickers}],
            }
            fh.write(json.dumps(envelope) + "\n")
            seq += 1
            written += len(tickers)
            if seq % 50 == 0:
                heartbeat = {
                    "channel": "heartbeats",
                    "timestamp": format_ts(ts),
                    "sequence_num": seq,
                    "events": [{"heartbeat_counter": seq}],
                }
                fh.write(json.dumps(heartbeat) + "\n")
                seq += 1
    return path


def raw_ticks(paths: Iterable[Path]) -> list[RawTick]:
    ticks = [t for t in read_ticks(paths) if not isinstance(t, BadLine)]
    assert ticks, "recording without ticks"
    return ticks


def produce(
    settings: Settings,
    records: Iterable[tuple[bytes | None, bytes | None]],
    *,
    rate_per_s: float | None = None,
) -> int:
    """Produce (key, value) pairs onto the raw topic, optionally paced; wait for every ack."""
    ensure_topics(settings)
    producer = make_producer(settings)
    failed: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            failed.append(str(err))

    started = time.monotonic()
    count = 0
    for key, value in records:
        producer.produce(settings.raw_topic, key=key, value=value, on_delivery=on_delivery)
        count += 1
        if rate_per_s and count % 20 == 0:
            producer.poll(0)
            ahead = count / rate_per_s - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(30)
    assert not failed, failed[:3]
    return count


def tick_records(ticks: Iterable[RawTick]) -> list[tuple[bytes, bytes]]:
    return [(t.product_id.encode(), t.to_bytes()) for t in ticks]


def read_topic(
    settings: Settings,
    topic: str,
    *,
    done: Callable[[list], bool] = lambda _records: False,
    quiet_s: float = 3.0,
    timeout_s: float = 60.0,
) -> list:
    """Every message of ``topic`` from the beginning, until ``done(messages)`` or ``quiet_s`` of
    silence (the embedded broker's high watermark cannot tell where the end is)."""
    admin = require_broker(settings)
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(500, 0.2)
            batch = [m for m in batch if m.error() is None]
            if batch:
                messages.extend(batch)
                last = time.monotonic()
                if done(messages):
                    break
            elif time.monotonic() - last >= quiet_s:
                break
    finally:
        consumer.close()
    return messages


def feature_records(messages: list) -> list[dict]:
    return [json.loads(m.value()) for m in messages]


def featurize_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CRYPTOVOL_RAW_TOPIC": settings.raw_topic,
        "CRYPTOVOL_FEATURES_TOPIC": settings.features_topic,
        "CRYPTOVOL_DLQ_TOPIC": settings.dlq_topic,
        "CRYPTOVOL_PREDICTIONS_TOPIC": settings.predictions_topic,
        "CRYPTOVOL_DATA_DIR": str(settings.data_dir),
    }


def start_featurize(settings: Settings, *args: str, log_path: Path) -> subprocess.Popen:
    """``cryptovol featurize`` (the installed console script) as a subprocess on these topics."""
    script = Path(sys.executable).with_name("cryptovol")
    group = f"featurizer-{settings.raw_topic}"  # one group per test's topics
    cmd = [str(script), "featurize", "--group", group, "--metrics-port", "0", *args]
    return subprocess.Popen(
        cmd,
        env=featurize_env(settings),
        stdout=subprocess.PIPE,
        stderr=log_path.open("ab"),
        text=True,
    )


def finish(proc: subprocess.Popen, timeout_s: float = 90.0) -> dict:
    """Wait for a featurizer that stops by itself; its final statistics."""
    out, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, f"featurize exited with {proc.returncode}"
    return json.loads(out.strip().splitlines()[-1])


def batch_rows(paths: Iterable[Path]) -> dict[str, tuple[float, ...]]:
    """record_id -> feature values from the batch path."""
    from tasks.stages.backfill import batch_features

    rows = {}
    for row in batch_features(list(paths)):
        assert row.record_id not in rows, f"batch path repeats {row.record_id}"
        rows[row.record_id] = row.values
    return rows


def stream_values(record: dict) -> tuple[float, ...]:
    features = record["features"]
    assert tuple(features) == FEATURE_NAMES
    return tuple(math.nan if v is None else float(v) for v in features.values())


def mismatches(expected: tuple[float, ...], got: tuple[float, ...]) -> list[str]:
    """Feature names whose values are not bit-identical (NaN equals NaN)."""
    bad = []
    for name, a, b in zip(FEATURE_NAMES, expected, got, strict=True):
        if a != b and not (math.isnan(a) and math.isnan(b)):
            bad.append(f"{name}: {a!r} != {b!r}")
    return bad


def compare_with_batch(batch: dict[str, tuple[float, ...]], records: list[dict]) -> list[str]:
    """Differences between the stream's records and the batch rows, as readable lines."""
    problems = []
    stream_ids = {r["record_id"] for r in records}
    missing = set(batch) - stream_ids
    extra = stream_ids - set(batch)
    if missing:
        problems.append(f"{len(missing)} ticks without features, e.g. {sorted(missing)[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected record ids, e.g. {sorted(extra)[:3]}")
    for record in records:
        expected = batch.get(record["record_id"])
        if expected is None:
            continue
        bad = mismatches(expected, stream_values(record))
        if bad:
            problems.append(f"{record['record_id']}: {bad[:3]}")
    return problems


def feature_values(tmp_path) -> list[bytes]:
    """``ticks.features`` records of a generated recording, as the featurizer writes them."""
    path = write_recording(tmp_path / "rec.ndjson.gz", ticks=800, seconds=400, seed=11)
    return [
        json.dumps(row.to_record(), separators=(",", ":"), allow_nan=False).encode()
        for row in batch_features([path])
    ]
