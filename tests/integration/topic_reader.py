"""Reading a whole topic back in tests, without a consumer-group join (assigned partitions)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tasks.core.messages import RawTick
from tasks.settings import Settings


def read_raw_ticks(
    settings: Settings, topic: str, *, expected: int | None = None, idle_s: float = 3.0
) -> list[tuple[bytes, RawTick]]:
    """(key, record) of every record on ``topic``, read until ``idle_s`` pass without one (1 s
    once ``expected`` are in, to catch extras): the embedded broker's watermarks lie."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[tuple[bytes, RawTick]] = []
        last = time.monotonic()
        while time.monotonic() - last < (
            min(idle_s, 1.0) if expected is not None and len(records) >= expected else idle_s
        ):
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            records.append((msg.key(), RawTick.from_bytes(msg.value())))
            last = time.monotonic()
        return records
    finally:
        consumer.close()
