"""The consumer loop the featurizer and the scorer share: they supply only their record handling.

Delivery is at least once. A polled batch is handed to the service's :class:`RecordHandler`, the
records it makes (and dead letters) are sent (:class:`~tasks.io.delivery.Delivery`), and the
batch's offsets are committed only once every one of them is acknowledged. The loop does not wait
for that before it polls again: up to ``max_in_flight`` batches are out at once, and the offsets
of the batches acknowledged so far, oldest first, are committed together (asynchronously; at a
rebalance and at the end, synchronously). So the broker's round trip overlaps the work on the next
batch. A crash before a commit makes the next run handle those batches again; outputs carry their
input's record id, so a reader drops the repeats.

One record never stops the loop: whatever is raised while handling it (bad JSON, nesting too deep
for the parser, a number too large for a float, a bug) sends that record to the dead-letter topic
with the reason in its ``error`` header (capped), and its offset is committed with the batch, so
a restart does not meet it again.

A broker that restarts without its state (the embedded broker keeps everything in memory) is
noticed by a :class:`~tasks.io.kafka.BrokerWatch`, from the clients' errors: the topics are
created again (the dead-letter topic included), the batch in flight is delivered through a new
producer to the new broker (its offsets, which point into the lost log, are not committed), and a
new consumer joins the group there. Records the broker held but the loop had not read are gone
with it: replay the raw archive to bring them back. A broker away for longer than
``down_timeout_s`` (:data:`~tasks.io.kafka.BROKER_DOWN_TIMEOUT_S` by default) stops the loop with
:class:`~tasks.io.kafka.BrokerUnavailable`.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry, Histogram, start_http_server

from tasks.io.delivery import Delivery, DeliveryGroup, Outgoing
from tasks.io.kafka import BrokerWatch, make_consumer, make_producer, poll_batch
from tasks.settings import Settings

log = logging.getLogger(__name__)

MAX_ERROR_HEADER = 1000  # characters of an error kept in a dead letter's header
_JOIN_GRACE_S = 30.0  # the idle clock runs before the first assignment only after this long
_PROGRESS_EVERY_S = 10.0


@dataclass
class LoopStats:
    """What the loop counts; each service's stats add their own."""

    dlq: int = 0  # dead letters acknowledged
    errors: int = 0  # consume, record, delivery and commit errors
    commits: int = 0
    delivery_retries: int = 0  # records produced again after a failed delivery
    broker_restarts: int = 0  # times the broker came back without its topics

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class LoopMetrics(Protocol):
    """The Prometheus metrics the loop updates (each service names them)."""

    registry: CollectorRegistry
    dlq: Any  # Counter
    errors: Any  # Counter labelled by stage


class RecordHandler:
    """A service's part of the loop. Only :meth:`handle` is required.

    ``bad_input`` are the exceptions that mean a malformed record (dead-lettered with their
    message, not counted as errors); anything else raised by :meth:`handle` is dead-lettered too,
    named by its type, and counted as an error.
    """

    bad_input: tuple[type[Exception], ...] = ()

    def begin_batch(self, consumer: Any, msgs: list[Message]) -> list[Message]:
        """The polled records to handle and commit (a warm-up may take some for itself)."""
        return msgs

    def handle(self, msg: Message, polled_at: float) -> list[Outgoing]:
        """The records ``msg`` makes; raise to dead-letter it."""
        raise NotImplementedError

    def end_batch(
        self, polled_at: float, dead_letter: Callable[[Message, str], Outgoing]
    ) -> list[Outgoing]:
        """Records made from the batch as a whole (after every :meth:`handle`)."""
        return []

    def batch_context(self) -> Any:
        """What :meth:`batch_delivered` needs to know of the batch just handled (after
        :meth:`end_batch`)."""
        return None

    def batch_delivered(self, context: Any, polled_at: float, settled_at: float) -> None:
        """Every record made from a batch is acknowledged (or refused for good)."""

    def between_polls(self) -> None:
        """Runs once per poll, records or not."""

    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions assigned (inside a poll)."""

    def on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions revoked (inside a poll)."""

    def reread_after_rebalance(self, consumer: Any) -> bool:
        """A rebalance ran inside the poll that returned records: True drops them (the handler
        seeks back to read them again)."""
        return False

    def on_rejoin(self) -> None:
        """A new consumer is about to join the group on a restarted broker."""


@dataclass
class _SentBatch:
    """A handled batch whose records are out: its offsets wait for their acknowledgements."""

    offsets: dict[tuple[str, int], int]  # empty after a broker restart: nothing to commit
    group: DeliveryGroup
    polled_at: float
    context: Any = field(default=None, repr=False)


class ConsumerLoop:
    """Poll, handle, send, commit once acknowledged; the broker watched, the idle clock kept."""

    def __init__(
        self,
        settings: Settings,
        handler: RecordHandler,
        *,
        group: str,
        role: str,
        topic: str,
        dlq_topic: str,
        topics: dict[str, int],
        stats: LoopStats,
        metrics: LoopMetrics,
        batch_size: int = 500,
        poll_timeout_s: float = 0.2,
        down_timeout_s: float | None = None,
        max_in_flight: int = 4,
    ) -> None:
        """``topic`` is read, ``topics`` (name -> partitions) are created again after a broker
        restart; ``role`` names the loop in dead letters' headers (``<role>_group``);
        ``max_in_flight`` batches at most wait for acknowledgements (1: each is acknowledged and
        committed before the next poll)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.settings = settings
        self.handler = handler
        self.group = group
        self.role = role
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.stats = stats
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.max_in_flight = max_in_flight
        self._sent: deque[_SentBatch] = deque()  # oldest first
        self._stop = threading.Event()
        watch_options = {} if down_timeout_s is None else {"down_timeout_s": down_timeout_s}
        self.watch = BrokerWatch(settings, topics, **watch_options)
        self.assigned_at: float | None = None
        self.generation = 0  # bumped by every assignment change
        self._last_consume_warning = -math.inf
        self.delivery = Delivery(
            self._new_producer(),
            watch=self.watch,
            new_producer=self._new_producer,
            on_error=lambda: self.count_error("delivery"),
        )
        self.consumer: Any = self._new_consumer()

    def _new_consumer(self) -> Any:
        return make_consumer(
            self.settings,
            self.group,
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            error_cb=self.watch.error_cb,
            on_commit=self._on_commit,
        )

    def _new_producer(self) -> Any:
        # The loop no longer flushes each batch (which sent at once): a record waits up to
        # linger.ms before it goes out. 1 ms keeps a live stream's hop short; under load the
        # records of a poll batch are produced together and leave in a few requests anyway.
        return make_producer(self.settings, error_cb=self.watch.error_cb, **{"linger.ms": 1})

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.handler.on_assign(consumer, partitions)
        self.generation += 1
        self.assigned_at = time.monotonic()

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # The batches out are acknowledged and committed before the partitions go to another
        # member, which starts from the committed offsets (not when leaving a lost broker).
        if self.consumer is not None:
            self._settle_all(self._stop)
        self.handler.on_revoke(consumer, partitions)
        self.generation += 1

    def count_error(self, stage: str, n: int = 1) -> None:
        self.stats.errors += n
        self.metrics.errors.labels(stage).inc(n)

    # -- the loop ----------------------------------------------------------------------------

    def run(
        self, stop_event: threading.Event | None = None, max_idle_s: float | None = None
    ) -> None:
        """Consume until ``stop_event`` is set or no record came for ``max_idle_s`` seconds
        (the idle clock starts once partitions are assigned: a group join takes seconds); then
        wait for the batches out and commit them."""
        stop = self._stop = stop_event or threading.Event()
        started = last_input = last_report = time.monotonic()
        while not stop.is_set():
            self.delivery.poll(0)  # serves acknowledgements; watches the broker if suspect
            if self.delivery.take_restart():
                self._rejoin()
                started = last_input = time.monotonic()
                continue
            self._commit_settled()
            if len(self._sent) >= self.max_in_flight:
                self.delivery.wait(stop, group=self._sent[0].group)
                continue
            generation = self.generation
            # with batches out, a poll must not sleep on their acknowledgements
            msgs = poll_batch(
                self.consumer, self.batch_size, 0 if self._sent else self.poll_timeout_s
            )
            now = time.monotonic()
            self.handler.between_polls()
            rebalanced = self.generation != generation and bool(msgs)
            if rebalanced and self.handler.reread_after_rebalance(self.consumer):
                continue
            if not msgs:
                if self._sent:  # waiting for acknowledgements is not being idle
                    self.delivery.poll(self.poll_timeout_s)  # returns at the first report
                    last_input = now
                    continue
                if self.watch.suspecting:  # waiting for the broker is not being idle
                    last_input = now
                idle_since = max(last_input, self.assigned_at or started + _JOIN_GRACE_S)
                if max_idle_s is not None and now - idle_since >= max_idle_s:
                    log.info("no input for %.1f s: stopping", now - idle_since)
                    break
                continue
            last_input = now
            self._handle_batch(msgs, now)
            if now - last_report >= _PROGRESS_EVERY_S:
                last_report = now
                log.info("progress: %s", self.stats.as_dict())
        self._settle_all(stop)

    def _handle_batch(self, msgs: list[Message], polled_at: float) -> None:
        good = [msg for msg in msgs if not self._consume_error(msg, polled_at)]
        outs: list[Outgoing] = []
        offsets: dict[tuple[str, int], int] = {}
        handle = self.handler.handle
        for msg in self.handler.begin_batch(self.consumer, good):
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
            try:
                outs += handle(msg, polled_at)
            except Exception as exc:  # whatever one record does is that record's problem
                reason = rejection(exc, self.handler.bad_input)
                if not isinstance(exc, self.handler.bad_input):
                    log.warning(
                        "dead-lettering %s[%d]@%d: %s",
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        reason,
                        exc_info=not isinstance(exc, RecursionError),  # its trace is 1000 lines
                    )
                    self.count_error("record")
                outs.append(self.dead_letter(msg, reason))
        outs += self.handler.end_batch(polled_at, self.dead_letter)
        if not offsets:
            return
        context = self.handler.batch_context()
        self._sent.append(_SentBatch(offsets, self.delivery.send_group(outs), polled_at, context))

    def _commit_settled(self, asynchronous: bool = True) -> None:
        """Commit the offsets of the batches acknowledged so far, oldest first (a later batch's
        offsets wait for every earlier one's: a commit covers all before it)."""
        offsets: dict[tuple[str, int], int] = {}
        while self._sent and self._sent[0].group.settled:
            batch = self._sent.popleft()
            offsets.update(batch.offsets)
            self.handler.batch_delivered(batch.context, batch.polled_at, batch.group.settled_at)
        self.stats.delivery_retries = self.delivery.stats.retried
        # not after a broker restart: those offsets point into a log that is gone
        if offsets and not self.delivery.restart_pending:
            self._commit(offsets, asynchronous)

    def _settle_all(self, stop: threading.Event) -> None:
        """Wait for every batch out (unless ``stop`` comes while some must be sent again) and
        commit what is acknowledged, synchronously."""
        self.delivery.wait(stop)
        self._commit_settled(asynchronous=False)

    def _consume_error(self, msg: Message, polled_at: float) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.fatal():
            raise KafkaException(err)
        self.count_error("consume")
        self.watch.suspect()  # a topic gone or a broker away: the watch tells which
        if polled_at - self._last_consume_warning >= 1.0:
            self._last_consume_warning = polled_at
            log.warning("consume error: %s", err)
        return True

    def dead_letter(self, msg: Message, error: str) -> Outgoing:
        return dead_letter(
            msg, error, self.dlq_topic, self.role, self.group, on_ack=self._dead_letter_acked
        )

    def _dead_letter_acked(self) -> None:
        self.stats.dlq += 1
        self.metrics.dlq.inc()

    def _commit(self, offsets: dict[tuple[str, int], int], asynchronous: bool = False) -> None:
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=asynchronous,
            )
            self.stats.commits += 1
        except KafkaException as exc:
            # The records are out; a later commit or a reprocessing after a restart covers them.
            self.count_error("commit")
            log.warning("commit failed: %s", exc)

    def _on_commit(self, err: Any, _partitions: list[TopicPartition]) -> None:
        """An asynchronous commit's outcome (served by a later poll)."""
        if err is not None:
            self.count_error("commit")
            log.warning("commit failed: %s", err)

    def _rejoin(self) -> None:
        """A new consumer on the restarted broker (the producer is new already)."""
        self.stats.broker_restarts = self.delivery.stats.broker_restarts
        for batch in self._sent:  # sent again to the new broker; their offsets are void
            batch.offsets = {}
        self.handler.on_rejoin()
        old, self.consumer = self.consumer, None
        try:
            old.close()
        except KafkaException as exc:  # its group is gone with the broker
            log.info("closing the consumer of the lost broker: %s", exc)
        self.consumer = self._new_consumer()
        self.assigned_at = None
        self.generation += 1
        log.warning("rejoined group %s on the restarted broker", self.group)

    def close(self) -> None:
        """Leave the group and release the clients (offsets are committed batch by batch)."""
        self.delivery.producer.flush(self.settings.kafka_connect_timeout_s)
        self.consumer.close()


def dead_letter(
    msg: Message,
    error: str,
    topic: str,
    role: str,
    group: str,
    on_ack: Callable[[], None] | None = None,
) -> Outgoing:
    """``msg`` as it came, for the dead-letter ``topic``, with why (capped) and where from."""
    headers = [
        ("error", error[:MAX_ERROR_HEADER].encode("utf-8", "backslashreplace")),
        ("source_topic", msg.topic().encode()),
        ("source_partition", str(msg.partition()).encode()),
        ("source_offset", str(msg.offset()).encode()),
        (f"{role}_group", group.encode()),
    ]
    where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
    return Outgoing(topic, msg.key(), msg.value(), headers, on_ack, where=where)


def rejection(exc: Exception, bad_input: tuple[type[Exception], ...]) -> str:
    """Why a record is dead-lettered: a malformed record's own message, else the exception's
    type and message."""
    return str(exc) if isinstance(exc, bad_input) else f"{type(exc).__name__}: {exc}"


def observe_many(histogram: Histogram, value: float, count: int) -> None:
    """What ``count`` calls of ``histogram.observe(value)`` add, in one step."""
    index = bisect.bisect_left(histogram._upper_bounds, value)  # buckets are "le"
    histogram._buckets[index].inc(count)
    histogram._sum.inc(value * count)


@contextmanager
def metrics_server(settings: Settings, registry: CollectorRegistry, port: int | None) -> Iterator:
    """Prometheus ``/metrics`` of ``registry`` on ``port`` while inside (0 or None: none)."""
    if not port:
        yield
        return
    server, _thread = start_http_server(port, addr=settings.metrics_host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
