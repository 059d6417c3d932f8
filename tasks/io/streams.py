"""Reading recent windows of the topics back for the monitor: feature records, predictions and raw
ticks, as the stream wrote them.

A window is every record the broker stamped at or after ``since`` (wall clock) and before the read
began, so a live stream does not keep the read going. Partitions are assigned directly (no group
join, nothing committed) and positioned with ``offsets_for_times``; the embedded broker answers
that with the start of the log, so there the whole log is read and filtered. A partition ends at
its first record stamped after the read began, or after ``idle_s`` without a record (the embedded
broker's high watermarks cannot tell where the end is; on loopback a fetch with data pending
returns at once, so a second of silence means the end).

Records are deduplicated by id (delivery is at least once); malformed ones are counted and skipped,
never fatal: the monitor reads what the stream produced, good and bad.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, Consumer, TopicPartition

from tasks.core.features import FEATURE_NAMES
from tasks.core.messages import MessageError, Tick, tick_from_bytes
from tasks.io.kafka import require_broker
from tasks.settings import Settings

log = logging.getLogger("cryptovol.streams")

_CHUNK = 65_536  # feature rows per array while reading
PREDICTION_COLUMNS = (
    "record_id",
    "product_id",
    "ts",
    "score",
    "spike",
    "threshold",
    "model_version",
)


def iter_window(
    settings: Settings,
    topic: str,
    since: float,
    *,
    idle_s: float = 1.0,
    timeout_s: float = 600.0,
) -> Iterator[bytes]:
    """Values of ``topic`` (every partition) stamped from ``since`` (epoch s) until the read
    began, as they arrive (nothing is held: a day of records is a gigabyte of JSON)."""
    admin = require_broker(settings)
    metadata = admin.list_topics(topic, timeout=settings.kafka_connect_timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        return
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"cryptovol-monitor-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    started_ms = int(time.time() * 1000)
    since_ms = int(since * 1000)
    try:
        wanted = [TopicPartition(topic, p, since_ms) for p in sorted(metadata.partitions)]
        try:
            positions = consumer.offsets_for_times(wanted, timeout=settings.kafka_connect_timeout_s)
        except Exception:  # brokers without timestamp look-ups: read from the start
            positions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        open_partitions = {tp.partition for tp in positions if tp.offset >= 0}
        consumer.assign(
            [TopicPartition(topic, tp.partition, tp.offset) for tp in positions if tp.offset >= 0]
        )
        last = deadline = time.monotonic()
        deadline += timeout_s
        while open_partitions and time.monotonic() - last < idle_s:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took over {timeout_s:.0f} s")
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is not None:
                    log.warning("reading %s: %s", topic, msg.error())
                    continue
                last = time.monotonic()
                if msg.partition() not in open_partitions:
                    continue
                kind, stamp = msg.timestamp()
                if kind != TIMESTAMP_NOT_AVAILABLE and stamp >= started_ms:
                    open_partitions.discard(msg.partition())
                    consumer.incremental_unassign([TopicPartition(topic, msg.partition())])
                    continue
                if kind == TIMESTAMP_NOT_AVAILABLE or stamp >= since_ms:
                    value = msg.value()
                    if value is not None:
                        yield value
    finally:
        consumer.close()


def feature_records(values: Iterable[bytes]) -> tuple[pd.DataFrame, int]:
    """``ticks.features`` values as rows (``product_id``, ``ts`` as UTC datetimes, ``record_id``
    and every feature, NaN where null), unique by record id, in time order per product; and the
    number of malformed records skipped. Features are gathered in float arrays, not objects."""
    products, times, ids, chunks = [], [], [], []
    chunk = np.empty((_CHUNK, len(FEATURE_NAMES)))
    filled, malformed, seen = 0, 0, set()
    for value in values:
        try:
            record = json.loads(value)
            record_id = record["record_id"]
            features = record["features"]
            head = (str(record["product_id"]), float(record["event_ts"]))
            numbers = [features.get(name) for name in FEATURE_NAMES]
            chunk[filled] = [np.nan if v is None else v for v in numbers]
        except (ValueError, KeyError, TypeError, AttributeError):
            malformed += 1
            continue
        if record_id in seen:
            continue
        seen.add(record_id)
        products.append(head[0])
        times.append(head[1])
        ids.append(record_id)
        filled += 1
        if filled == _CHUNK:
            chunks.append(chunk)
            chunk, filled = np.empty((_CHUNK, len(FEATURE_NAMES))), 0
    chunks.append(chunk[:filled])
    frame = pd.DataFrame(np.concatenate(chunks), columns=list(FEATURE_NAMES))
    frame.insert(0, "record_id", ids)
    frame.insert(0, "ts", pd.to_datetime(np.asarray(times, dtype=float), unit="s", utc=True))
    frame.insert(0, "product_id", products)
    frame = frame.sort_values(["product_id", "ts"], kind="stable", ignore_index=True)
    return frame, malformed


def prediction_records(values: Iterable[bytes]) -> tuple[pd.DataFrame, int]:
    """``ticks.predictions`` values as rows of :data:`PREDICTION_COLUMNS` (the first of each
    record id kept) and the number of malformed records skipped."""
    rows, malformed, seen = [], 0, set()
    for value in values:
        try:
            record = json.loads(value)
            row = (
                str(record["record_id"]),
                str(record["product_id"]),
                pd.Timestamp(record["ts"]),
                float(record["score"]),
                bool(record["spike"]),
                float(record["threshold"]),
                str(record["model_version"]),
            )
        except (ValueError, KeyError, TypeError):
            malformed += 1
            continue
        if row[0] in seen:
            continue
        seen.add(row[0])
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    if len(frame):
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame, malformed


def raw_ticks(values: Iterable[bytes]) -> tuple[list[Tick], int]:
    """``ticks.raw`` values as ticks, and the number of malformed records skipped."""
    ticks, malformed = [], 0
    for value in values:
        try:
            ticks.append(tick_from_bytes(value))
        except MessageError:
            malformed += 1
    return ticks, malformed
