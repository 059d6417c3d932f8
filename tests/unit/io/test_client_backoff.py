"""Exchange client pieces that need no socket: backoff, subscribe requests, confirmations."""

from __future__ import annotations

import json
import random

from tasks.core.messages import parse_envelope
from tasks.io.exchange_client import backoff_delay, confirmed_products, subscribe_messages


def test_backoff_starts_well_under_a_second_doubles_and_is_capped():
    rng = random.Random(1)
    first = [backoff_delay(1, 0.1, 10.0, rng) for _ in range(200)]
    assert all(0.05 <= d <= 0.1 for d in first)
    assert len({round(d, 6) for d in first}) > 100  # jittered
    assert all(0.2 <= backoff_delay(3, 0.1, 10.0, rng) <= 0.4 for _ in range(50))
    assert all(5.0 <= backoff_delay(30, 0.1, 10.0, rng) <= 10.0 for _ in range(50))


def test_one_subscribe_per_channel():
    requests = [
        json.loads(r) for r in subscribe_messages(["BTC-USD", "ETH-USD"], ["ticker", "heartbeats"])
    ]
    assert requests == [
        {"type": "subscribe", "channel": "ticker", "product_ids": ["BTC-USD", "ETH-USD"]},
        {"type": "subscribe", "channel": "heartbeats"},
    ]


def test_confirmed_products_come_from_the_subscriptions_envelope():
    envelope = parse_envelope(
        {
            "channel": "subscriptions",
            "timestamp": "2026-01-01T00:00:00Z",
            "sequence_num": 1,
            "events": [{"subscriptions": {"ticker": ["BTC-USD"], "heartbeats": ["heartbeats"]}}],
        }
    )
    assert confirmed_products(envelope) == {"BTC-USD"}
    empty = parse_envelope({"channel": "subscriptions", "timestamp": "x", "events": [{}]})
    assert confirmed_products(empty) == set()
