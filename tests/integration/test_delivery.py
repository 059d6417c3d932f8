"""Delivery failures against a real client library: retried, counted, never silently dropped."""

from __future__ import annotations

import pytest

from tasks.core.messages import RawTick
from tasks.io.broker import free_port
from tasks.io.kafka import make_producer
from tasks.io.publisher import TickPublisher
from tasks.settings import Settings

pytestmark = pytest.mark.integration


def test_records_that_cannot_be_delivered_are_retried_then_counted():
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")  # nobody listens
    producer = make_producer(settings, **{"message.timeout.ms": 300})
    publisher = TickPublisher(producer, "ticks.raw", max_attempts=2)
    for seq in range(3):
        tick = RawTick(
            "BTC-USD",
            "2026-01-01T00:00:00Z",
            seq,
            "2026-01-01T00:00:00Z",
            "s",
            "update",
            0,
            {"product_id": "BTC-USD", "price": "1"},
        )
        publisher.publish(tick)
    assert publisher.flush(20) == 3
    assert publisher.stats.failed == 3
    assert publisher.stats.errors == 6 and publisher.stats.retried == 3
    assert publisher.stats.delivered == 0
