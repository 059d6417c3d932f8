"""Producing a batch and waiting until every record of it is acknowledged: what lets a consumer
commit its input offsets only once its output is safe (at-least-once, nothing lost)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

log = logging.getLogger(__name__)

_BACKOFF_MAX_S = 5.0


@dataclass
class Outgoing:
    """A record to produce, and what to do once the broker has acknowledged it."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    on_ack: Callable[[], None] | None = None


def deliver_all(
    producer: Producer,
    outs: list[Outgoing],
    stop: threading.Event,
    *,
    on_failures: Callable[[int], None] | None = None,
) -> bool:
    """Produce ``outs`` and wait for every acknowledgement, re-sending failures with a growing
    pause. True once all are acknowledged; False if ``stop`` is set first (the caller must not
    commit). A fatal producer error raises :class:`KafkaException` (nothing more can be sent).
    ``on_failures(n)`` hears of each round's failed deliveries (for counting)."""
    backoff = 0.1
    fatal: list[KafkaError] = []

    def report(out: Outgoing, failed: list[Outgoing], err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failed.append(out)
            if err.fatal():
                fatal.append(err)
        elif out.on_ack is not None:
            out.on_ack()

    while outs:
        failed: list[Outgoing] = []
        for out in outs:
            while True:
                try:
                    producer.produce(
                        out.topic,
                        value=out.value,
                        key=out.key,
                        headers=out.headers,
                        on_delivery=partial(report, out, failed),
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.1)
        producer.flush()
        if fatal:
            raise KafkaException(fatal[0])
        if not failed:
            return True
        if on_failures is not None:
            on_failures(len(failed))
        if stop.is_set():
            log.warning("stopping with %d unacknowledged records", len(failed))
            return False
        log.warning("%d records not acknowledged; retrying in %.1f s", len(failed), backoff)
        stop.wait(backoff)
        backoff = min(backoff * 2, _BACKOFF_MAX_S)
        outs = failed
    return True
