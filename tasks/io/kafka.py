"""Kafka clients for every component: one place for the settings that make delivery safe.

Works unchanged against the embedded broker, Apache Kafka or Redpanda: only
``KAFKA_BOOTSTRAP_SERVERS`` changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tasks.settings import Settings

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """No Kafka-protocol broker answered within the connect timeout."""


def broker_hint(bootstrap: str) -> str:
    return (
        f"no Kafka broker answered at {bootstrap}. Start the embedded one with "
        f"`uv run cryptovol broker` (or point KAFKA_BOOTSTRAP_SERVERS at a running cluster)."
    )


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})


def require_broker(settings: Settings, timeout: float | None = None) -> AdminClient:
    """An admin client to a broker that answers, or :class:`BrokerUnavailable` within seconds.

    The probe keeps librdkafka quiet (its connection-refused lines would bury our own message).
    """
    probe = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers, "log_level": 2})
    try:
        probe.list_topics(timeout=timeout or settings.kafka_connect_timeout_s)
    except KafkaException as exc:
        raise BrokerUnavailable(broker_hint(settings.kafka_bootstrap_servers)) from exc
    return admin_client(settings)


def topic_specs(settings: Settings) -> dict[str, int]:
    """Topic name -> partitions. Keyed topics share the raw topic's partitioning."""
    return {
        settings.raw_topic: settings.raw_partitions,
        settings.features_topic: settings.raw_partitions,
        settings.predictions_topic: settings.raw_partitions,
        settings.dlq_topic: 1,
    }


def ensure_topics(settings: Settings, topics: dict[str, int] | None = None) -> list[str]:
    """Create the topics that are missing; return the names created."""
    admin = require_broker(settings)
    wanted = topics or topic_specs(settings)
    existing = set(admin.list_topics(timeout=settings.kafka_connect_timeout_s).topics)
    missing = [
        NewTopic(name, partitions, 1) for name, partitions in wanted.items() if name not in existing
    ]
    created: list[str] = []
    for name, future in admin.create_topics(missing).items() if missing else []:
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent, ``acks=all`` producer: retries cannot duplicate or reorder a partition."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "none",
        "message.timeout.ms": 30000,
    }
    config.update(overrides)
    return Producer(config)


def make_consumer(
    settings: Settings,
    group_id: str,
    topics: Iterable[str],
    *,
    on_assign: Callable[..., None] | None = None,
    on_revoke: Callable[..., None] | None = None,
    **overrides: Any,
) -> Consumer:
    """A consumer that commits nothing by itself: callers commit after their output is safe.

    ``on_assign``/``on_revoke`` are the rebalance callbacks, for callers that keep state per
    partition.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        # The embedded broker answers a fetch only when this wait is over, even when records
        # arrived meanwhile (Kafka answers at once): librdkafka's 500 ms default put up to half
        # a second on every hop of the stream. 20 ms costs an idle consumer ~2 % of a core there.
        "fetch.wait.max.ms": 20,
        "enable.partition.eof": False,
    }
    config.update(overrides)
    consumer = Consumer(config)
    callbacks = {"on_assign": on_assign, "on_revoke": on_revoke}
    consumer.subscribe(list(topics), **{k: v for k, v in callbacks.items() if v is not None})
    return consumer


def poll_batch(consumer: Consumer, max_records: int, timeout_s: float) -> list[Any]:
    """Up to ``max_records`` records, returned as soon as one is there (``timeout_s`` at most
    without any): ``Consumer.consume`` alone waits for a full batch or the whole timeout, which
    at a live stream's few records per second added its timeout to every record's latency."""
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
