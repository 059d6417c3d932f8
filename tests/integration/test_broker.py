import time

import pytest

from tasks.io.kafka import BrokerUnavailable, ensure_topics, require_broker
from tasks.settings import Settings

pytestmark = pytest.mark.integration


def test_topics_are_created_with_partitions(kafka_settings):
    created = ensure_topics(kafka_settings)
    assert kafka_settings.raw_topic in created
    meta = require_broker(kafka_settings).list_topics(timeout=5)
    assert len(meta.topics[kafka_settings.raw_topic].partitions) == 3
    assert ensure_topics(kafka_settings) == []


def test_unreachable_broker_fails_fast_with_a_hint():
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", kafka_connect_timeout_s=2)
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="cryptovol broker"):
        require_broker(settings)
    assert time.monotonic() - start < 10
