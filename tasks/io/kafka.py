"""Kafka clients for every component: one place for the settings that make delivery safe.

Works unchanged against the embedded broker, Apache Kafka or Redpanda: only
``KAFKA_BOOTSTRAP_SERVERS`` changes.

Producers never create topics by themselves (a topic auto-created on first use gets the broker's
default partition count, not ours): :func:`ensure_topics` does. :class:`BrokerWatch` tells a
broker that came back without its state (the embedded broker keeps everything in memory) from a
passing disconnection, so producers and consumers are rebuilt instead of retrying forever.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic

from tasks.settings import Settings

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """No Kafka-protocol broker answered within the connect timeout."""


BROKER_DOWN_TIMEOUT_S = 60.0  # a component stops with an error after this long without a broker
_CHECK_EVERY_S = 0.5
_PROBE_TIMEOUT_S = 1.0


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
        "allow.auto.create.topics": False,
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


class BrokerState(enum.Enum):
    OK = "ok"  # nothing wrong seen, or the broker came back with its topics
    DOWN = "down"  # no answer (yet)
    RESTARTED = "restarted"  # it answers, but its topics are new: whatever it held is gone


class BrokerWatch:
    """Notices that the broker lost its state, from clients' errors and a probe.

    Pass :meth:`error_cb` as the ``error_cb`` of producers and consumers, or call
    :meth:`suspect` on a failed delivery. While something is suspect, :meth:`check` probes the
    broker at most every half second: no answer is ``DOWN`` (raising :class:`BrokerUnavailable`
    once that has lasted ``down_timeout_s``); an answer with the topics of the last check is
    ``OK`` (a passing disconnection); topics missing or recreated (a new topic id) is
    ``RESTARTED``: the missing ones are created again (:func:`ensure_topics`), and the caller
    must rebuild its clients, since an idempotent producer never recovers from a broker that
    forgot it, and committed offsets point into a log that is gone.
    """

    def __init__(
        self,
        settings: Settings,
        topics: dict[str, int] | None = None,
        *,
        down_timeout_s: float = BROKER_DOWN_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.topics = topics or topic_specs(settings)
        self.down_timeout_s = down_timeout_s
        self.restarts = 0
        self._admin = AdminClient(
            {"bootstrap.servers": settings.kafka_bootstrap_servers, "log_level": 2}
        )
        try:
            self._ids = self._topic_ids()
        except KafkaException as exc:
            raise BrokerUnavailable(broker_hint(settings.kafka_bootstrap_servers)) from exc
        self._suspect_since: float | None = None
        self._last_check = 0.0

    def error_cb(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT) or err.fatal():
            self.suspect()

    def suspect(self) -> None:
        if self._suspect_since is None:
            self._suspect_since = time.monotonic()

    @property
    def suspecting(self) -> bool:
        return self._suspect_since is not None

    def check(self) -> BrokerState:
        """Where the broker stands; cheap when nothing is suspect."""
        since = self._suspect_since
        if since is None:
            return BrokerState.OK
        now = time.monotonic()
        if now - self._last_check < _CHECK_EVERY_S:
            return BrokerState.DOWN
        self._last_check = now
        try:
            ids = self._topic_ids()
        except KafkaException as exc:
            down_for = now - since
            if down_for >= self.down_timeout_s:
                bootstrap = self.settings.kafka_bootstrap_servers
                raise BrokerUnavailable(
                    f"the broker at {bootstrap} has not answered for {down_for:.0f} s; stopping. "
                    + broker_hint(bootstrap)
                ) from exc
            return BrokerState.DOWN
        self._suspect_since = None
        if ids == self._ids:
            return BrokerState.OK
        created = ensure_topics(self.settings, self.topics)
        self._ids = self._topic_ids()
        self.restarts += 1
        log.warning(
            "the broker at %s lost its topics (restarted?); created again: %s. Records it held "
            "are gone with it: replay them from the recordings or the raw archive",
            self.settings.kafka_bootstrap_servers,
            ", ".join(created) or "none",
        )
        return BrokerState.RESTARTED

    def _topic_ids(self) -> dict[str, str | None]:
        """Topic name -> id (None when missing); raises KafkaException when nobody answers."""
        present = self._admin.list_topics(timeout=_PROBE_TIMEOUT_S).topics
        ids: dict[str, str | None] = dict.fromkeys(self.topics)
        names = [name for name in self.topics if name in present]
        if names:
            futures = self._admin.describe_topics(
                TopicCollection(names), request_timeout=_PROBE_TIMEOUT_S
            )
            for name, future in futures.items():
                ids[name] = str(future.result().topic_id)
        return ids


def poll_batch(consumer: Consumer, max_records: int, timeout_s: float) -> list[Any]:
    """Up to ``max_records`` records, returned as soon as one is there (``timeout_s`` at most
    without any): ``Consumer.consume`` alone waits for a full batch or the whole timeout, which
    at a live stream's few records per second added its timeout to every record's latency."""
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
