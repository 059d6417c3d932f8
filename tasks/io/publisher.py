"""Publishing raw ticks to Kafka so that no record is ever dropped silently.

Every record's delivery report is counted. A failed delivery is produced again, up to
``max_attempts`` in all; what still fails is counted and logged as undelivered. The producer is
idempotent with ``acks=all`` (:func:`tasks.io.kafka.make_producer`), so librdkafka's own retries
cannot duplicate; a re-produce after a reported failure can (at-least-once), and record ids
(product, source, sequence, index) let consumers drop such duplicates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.core.messages import RawTick

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 3


@dataclass
class PublishStats:
    published: int = 0  # records handed to the publisher
    delivered: int = 0  # acknowledged by the broker
    errors: int = 0  # failed delivery reports, retried or not
    retried: int = 0  # records produced again after a failure
    failed: int = 0  # records given up on after max_attempts


class TickPublisher:
    """Produces :class:`RawTick` records keyed by product id and tracks every outcome.

    ``producer`` is a ``confluent_kafka.Producer`` (or anything with ``produce``, ``poll``,
    ``flush`` and ``__len__``). Call :meth:`poll` often: it serves delivery reports and
    re-produces failed records.
    """

    def __init__(
        self,
        producer: Any,
        topic: str,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.max_attempts = max_attempts
        self.on_error = on_error
        self.stats = PublishStats()
        self._retry: list[tuple[str, bytes, int]] = []

    def publish(self, tick: RawTick) -> None:
        self.stats.published += 1
        self._produce(tick.product_id, tick.to_bytes(), 1)

    def _produce(self, key: str, value: bytes, attempt: int) -> None:
        def report(err: Any, _msg: Any) -> None:
            self._on_delivery(err, key, value, attempt)

        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key, on_delivery=report)
                return
            except BufferError:  # local queue full: let deliveries drain, then try again
                self.producer.poll(0.05)

    def _on_delivery(self, err: Any, key: str, value: bytes, attempt: int) -> None:
        if err is None:
            self.stats.delivered += 1
            return
        self.stats.errors += 1
        if self.on_error is not None:
            self.on_error()
        fatal = bool(getattr(err, "fatal", lambda: False)())
        if attempt < self.max_attempts and not fatal:
            log.warning(
                "delivery to %s failed (attempt %d, key %s): %s; retrying",
                self.topic,
                attempt,
                key,
                err,
            )
            self._retry.append((key, value, attempt + 1))
        else:
            self.stats.failed += 1
            log.error(
                "giving up on a record for %s after %d attempts (key %s): %s",
                self.topic,
                attempt,
                key,
                err,
            )

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports and re-produce what failed."""
        self.producer.poll(timeout)
        while self._retry:
            key, value, attempt = self._retry.pop(0)
            self.stats.retried += 1
            self._produce(key, value, attempt)

    @property
    def in_flight(self) -> int:
        return len(self.producer) + len(self._retry)

    @property
    def undelivered(self) -> int:
        """Records given up on plus records still waiting for a report."""
        return self.stats.failed + self.in_flight

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` s for every report (retries included); return the undelivered."""
        deadline = time.monotonic() + timeout
        while self.in_flight:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.producer.flush(min(remaining, 1.0))
            self.poll(0)
        if self.undelivered:
            log.error(
                "%d record(s) for %s not delivered (%d given up, %d still in flight)",
                self.undelivered,
                self.topic,
                self.stats.failed,
                self.in_flight,
            )
        return self.undelivered
