"""Publishing raw ticks to Kafka so that no record is ever dropped silently.

Capture and replay hand ticks to a :class:`TickPublisher`, which delivers them through
:class:`~tasks.io.delivery.Delivery` (the one retry loop of every producer): each record is
acknowledged, refused for good (over the broker's message size, logged with where it came from),
given up after ``max_attempts`` failed deliveries, or still in flight, and each outcome is counted.
After a broker restart the records it had not acknowledged are sent again through a new producer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.core.messages import RawTick
from tasks.io.delivery import Delivery, DeliveryStats, Outgoing
from tasks.io.kafka import BrokerUnavailable, BrokerWatch, make_producer
from tasks.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 3


@dataclass
class PublishStats(DeliveryStats):
    published: int = 0  # records handed to the publisher


class TickPublisher:
    """Produces :class:`RawTick` records keyed by product id and tracks every outcome.

    Call :meth:`poll` often: it serves delivery reports, re-produces failed records and, given a
    ``watch`` and a ``new_producer`` factory, rebuilds the producer after a broker restart.
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
        self.topic = topic
        self.stats = PublishStats()
        self.delivery = Delivery(
            producer,
            max_attempts=max_attempts,
            watch=watch,
            new_producer=new_producer,
            on_error=on_error,
            stats=self.stats,
        )

    def publish(self, tick: RawTick, where: str = "") -> None:
        """Send ``tick``; ``where`` (a file and line) names it in the log if it is refused."""
        value = tick.to_bytes()  # may raise on a poison ticker: the caller counts it
        self.stats.published += 1
        self.delivery.send(Outgoing(self.topic, tick.product_id, value, where=where))

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports and re-produce what failed."""
        self.delivery.poll(timeout)

    @property
    def in_flight(self) -> int:
        return self.delivery.in_flight

    @property
    def undelivered(self) -> int:
        """Records given up on or refused, plus records still waiting for a report."""
        return self.delivery.undelivered

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` s for every report (retries included); return the undelivered.

        A broker away for good ends the wait early: what is left is counted undelivered.
        """
        started = time.monotonic()
        try:
            self.delivery.wait(timeout=timeout)
        except BrokerUnavailable as exc:
            log.error("%s", exc)
        if self.undelivered:
            log.error(
                "%d record(s) for %s not delivered (%d given up, %d refused, %d still in flight "
                "after %.1f s)",
                self.undelivered,
                self.topic,
                self.stats.failed,
                self.stats.refused,
                self.in_flight,
                time.monotonic() - started,
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
