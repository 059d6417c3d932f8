"""Publishing raw ticks to Kafka so that no record is ever dropped silently.

Every record's delivery report is counted. A failed delivery is produced again, up to
``max_attempts`` in all; what still fails is counted and logged as undelivered. The producer is
idempotent with ``acks=all`` (:func:`tasks.io.kafka.make_producer`), so librdkafka's own retries
cannot duplicate; a re-produce after a reported failure can (at-least-once), and record ids
(product, source, sequence, index) let consumers drop such duplicates.

A broker that restarts without its state (the embedded one keeps everything in memory) leaves an
idempotent producer failing forever. With a :class:`~tasks.io.kafka.BrokerWatch`, the publisher
notices, takes back every record not yet acknowledged, and sends them again through a new
producer to the topics the watch created again: each record is then delivered after the restart
or counted undelivered. Records the broker acknowledged before it restarted are gone with it:
``stats.acked_before_restart`` says how many, and the raw archive or the recordings hold them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError

from tasks.core.messages import RawTick
from tasks.io.kafka import BrokerState, BrokerUnavailable, BrokerWatch, make_producer
from tasks.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 3
_TAKEN_BACK = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


@dataclass
class PublishStats:
    published: int = 0  # records handed to the publisher
    delivered: int = 0  # acknowledged by the broker
    errors: int = 0  # failed delivery reports, retried or not
    retried: int = 0  # records produced again after a failure
    failed: int = 0  # records given up on after max_attempts
    broker_restarts: int = 0  # times the broker came back without its topics
    resent: int = 0  # records taken back from a producer the broker forgot, and sent again
    acked_before_restart: int = 0  # acknowledged by a broker that has since lost them


class TickPublisher:
    """Produces :class:`RawTick` records keyed by product id and tracks every outcome.

    ``producer`` is a ``confluent_kafka.Producer`` (or anything with ``produce``, ``poll``,
    ``flush`` and ``__len__``). Call :meth:`poll` often: it serves delivery reports, re-produces
    failed records and, given a ``watch`` and a ``new_producer`` factory, rebuilds the producer
    after a broker restart.
    """

    def __init__(
        self,
        producer: Any,
        topic: str,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        on_error: Callable[[], None] | None = None,
        watch: BrokerWatch | None = None,
        new_producer: Callable[[], Any] | None = None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.max_attempts = max_attempts
        self.on_error = on_error
        self.watch = watch
        self.new_producer = new_producer
        self.stats = PublishStats()
        self._retry: list[tuple[str, bytes, int]] = []
        self._replace = False  # the producer hit a fatal error: build a new one

    def publish(self, tick: RawTick) -> None:
        value = tick.to_bytes()  # may raise on a poison ticker: the caller counts it
        self.stats.published += 1
        self._produce(tick.product_id, value, 1)

    def _produce(self, key: str, value: bytes, attempt: int) -> None:
        def report(err: Any, _msg: Any) -> None:
            self._on_delivery(err, key, value, attempt)

        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key, on_delivery=report)
                return
            except BufferError:  # local queue full: let deliveries drain, then try again
                self.producer.poll(0.05)
                self._watch_broker()

    def _on_delivery(self, err: Any, key: str, value: bytes, attempt: int) -> None:
        if err is None:
            self.stats.delivered += 1
            return
        code = getattr(err, "code", lambda: None)()
        if code in _TAKEN_BACK:  # taken back from a forgotten producer: not a failed attempt
            self.stats.resent += 1
            self._retry.append((key, value, attempt))
            return
        self.stats.errors += 1
        if self.on_error is not None:
            self.on_error()
        fatal = bool(getattr(err, "fatal", lambda: False)())
        if self.watch is not None:
            self.watch.suspect()
        if fatal and self.new_producer is not None:
            self._replace = True
            fatal = False
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

    def _watch_broker(self) -> None:
        """Rebuild the producer when the broker restarted (or the producer is fatally broken).

        Raises :class:`~tasks.io.kafka.BrokerUnavailable` once the broker has been away for the
        watch's ``down_timeout_s``.
        """
        watch = self.watch
        if watch is None or not (watch.suspecting or self._replace):
            return  # the common case, per record: nothing to look at
        restarted = watch.check() is BrokerState.RESTARTED
        if not (restarted or self._replace) or self.new_producer is None:
            return
        if restarted:
            self.stats.broker_restarts += 1
            self.stats.acked_before_restart = self.stats.delivered
        self._replace = False
        old, self.producer = self.producer, self.new_producer()
        old.purge(in_queue=True, in_flight=True, blocking=False)
        old.poll(0)  # the purged records' reports: back into the retry list
        log.warning(
            "new producer for %s after %s; %d record(s) to send again",
            self.topic,
            "a broker restart" if restarted else "a fatal producer error",
            len(self._retry),
        )

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports and re-produce what failed."""
        self.producer.poll(timeout)
        self._watch_broker()
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
        """Wait up to ``timeout`` s for every report (retries included); return the undelivered.

        A broker away for good ends the wait early: what is left is counted undelivered.
        """
        deadline = time.monotonic() + timeout
        try:
            while self.in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.producer.flush(min(remaining, 0.5))
                self.poll(0)
        except BrokerUnavailable as exc:
            log.error("%s", exc)
        if self.undelivered:
            log.error(
                "%d record(s) for %s not delivered (%d given up, %d still in flight)",
                self.undelivered,
                self.topic,
                self.stats.failed,
                self.in_flight,
            )
        return self.undelivered


def open_publisher(settings: Settings, topic: str | None = None, **options: Any) -> TickPublisher:
    """A publisher to ``topic`` (default: the raw topic) that survives broker restarts.

    The topics must exist (:func:`tasks.io.kafka.ensure_topics`): the watch records their ids.
    """
    watch = BrokerWatch(settings)

    def new_producer() -> Any:
        return make_producer(settings, error_cb=watch.error_cb)

    return TickPublisher(
        new_producer(),
        topic or settings.raw_topic,
        watch=watch,
        new_producer=new_producer,
        **options,
    )
