"""Delivering records to Kafka so that none is dropped silently: the one retry loop of every
producer (capture and replay through :class:`~tasks.io.publisher.TickPublisher`, the featurizer
and the scorer through :class:`~tasks.io.consumer_loop.ConsumerLoop`).

Every record ends in exactly one of these outcomes, each counted:

- acknowledged by the broker (``delivered``; its ``on_ack`` runs);
- refused for good: larger than the broker takes (``refused``; logged with its ``where``, its
  ``on_refused`` runs); sending it again cannot help;
- given up after ``max_attempts`` failed deliveries (``failed``; only with a limit: a consumer
  loop has none and retries until it is stopped, since it must not commit what is not out);
- still in flight (:attr:`Delivery.in_flight`).

Records sent together (:meth:`Delivery.send_group`, a consumer loop's poll batch) share a
:class:`DeliveryGroup`, settled once each of them is acknowledged or refused: a loop keeps
polling while earlier batches are in flight and commits each batch's offsets once its group is
settled, so the round trip to the broker overlaps the work on the next batch.

A failed delivery is produced again after a pause that grows with its attempts. The producer is
idempotent with ``acks=all`` (:func:`tasks.io.kafka.make_producer`), so librdkafka's own retries
cannot duplicate; a re-produce after a reported failure can (at-least-once), and record ids let
readers drop such duplicates.

A broker that restarts without its state (the embedded one keeps everything in memory) leaves an
idempotent producer failing forever, or fatally broken. Given a
:class:`~tasks.io.kafka.BrokerWatch` and a ``new_producer`` factory, a delivery notices (the watch
creates the topics again), takes back every record not yet acknowledged and sends them again
through a new producer. Records the broker acknowledged before it restarted are gone with it:
``stats.acked_before_restart`` says how many.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from tasks.io.kafka import BrokerState, BrokerWatch

log = logging.getLogger(__name__)

_TAKEN_BACK = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
_TOO_LARGE = (KafkaError.MSG_SIZE_TOO_LARGE,)
_FIRST_BACKOFF_S = 0.1
_BACKOFF_MAX_S = 5.0
_WAIT_STEP_S = 0.5  # waits for acknowledgements in steps this long, watching the broker between


class DeliveryGroup:
    """Records sent together; settled once every one is acknowledged or refused."""

    __slots__ = ("pending", "settled_at")

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.settled_at: float | None = time.monotonic() if pending == 0 else None

    @property
    def settled(self) -> bool:
        return self.pending == 0

    def settle_one(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.settled_at = time.monotonic()


@dataclass(slots=True)
class Outgoing:
    """A record to produce, what to do once the broker acknowledged it, and (``where``) how to
    name it in a log line: a file and line, a source offset."""

    topic: str
    key: bytes | str | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    on_ack: Callable[[], None] | None = None
    on_refused: Callable[[str], None] | None = None
    where: str = ""
    attempts: int = field(default=0, compare=False)
    group: DeliveryGroup | None = field(default=None, compare=False, repr=False)


@dataclass
class DeliveryStats:
    delivered: int = 0  # acknowledged by the broker
    errors: int = 0  # failed delivery reports, retried or not
    retried: int = 0  # records produced again after a failure
    failed: int = 0  # records given up on after max_attempts
    refused: int = 0  # records the broker can never take (over its message size)
    broker_restarts: int = 0  # times the broker came back without its topics
    resent: int = 0  # records taken back from a producer the broker forgot, and sent again
    acked_before_restart: int = 0  # acknowledged by a broker that has since lost them


class Delivery:
    """Produces :class:`Outgoing` records through ``producer`` and follows each to its outcome.

    ``producer`` is a ``confluent_kafka.Producer`` (or anything with ``produce``, ``poll``,
    ``flush``, ``purge`` and ``__len__``). Call :meth:`poll` often: it serves delivery reports,
    produces again what failed once its pause is over and, given a ``watch`` and a
    ``new_producer`` factory, rebuilds the producer after a broker restart or a fatal error
    (:class:`~tasks.io.kafka.BrokerUnavailable` once the broker has been away too long).
    ``on_error`` hears of each failed delivery report.
    """

    def __init__(
        self,
        producer: Any,
        *,
        max_attempts: int | None = None,
        watch: BrokerWatch | None = None,
        new_producer: Callable[[], Any] | None = None,
        on_error: Callable[[], None] | None = None,
        stats: DeliveryStats | None = None,
    ) -> None:
        self.producer = producer
        self.max_attempts = max_attempts
        self.watch = watch
        self.new_producer = new_producer
        self.on_error = on_error
        self.stats = stats or DeliveryStats()
        self._outstanding = 0  # produced, report not yet served
        self._retry: list[tuple[float, int, Outgoing]] = []  # (due, order, record): a heap
        self._order = 0
        self._retired: list[Any] = []  # replaced producers whose reports are still due
        self._replace = False  # the producer hit a fatal error: build a new one
        self.restart_pending = False  # a broker restart not yet taken by :meth:`take_restart`

    # -- sending -----------------------------------------------------------------------------

    def send(self, out: Outgoing) -> None:
        """Produce ``out``; waits while the local queue is full rather than dropping it."""
        out.attempts += 1
        report = partial(self._on_report, out)
        headers = {"headers": out.headers} if out.headers is not None else {}
        while True:
            try:
                self.producer.produce(
                    out.topic, value=out.value, key=out.key, on_delivery=report, **headers
                )
                self._outstanding += 1
                return
            except BufferError:  # local queue full: let deliveries drain, then try again
                self.producer.poll(0.05)
                self._watch_broker()
            except KafkaException as exc:  # refused at once (too large): as if reported
                self._outstanding += 1
                self._on_report(out, exc.args[0], None)
                return

    def _on_report(self, out: Outgoing, err: Any, _msg: Any) -> None:
        self._outstanding -= 1
        if err is None:
            self.stats.delivered += 1
            if out.on_ack is not None:
                out.on_ack()
            if out.group is not None:
                out.group.settle_one()
            return
        code = getattr(err, "code", lambda: None)()
        if code in _TAKEN_BACK:  # taken back from a replaced producer: not a failed attempt
            self.stats.resent += 1
            out.attempts -= 1
            self._schedule(out, 0.0)
            return
        if code in _TOO_LARGE:
            self._refuse(out, err)
            return
        self.stats.errors += 1
        if self.on_error is not None:
            self.on_error()
        if self.watch is not None:
            self.watch.suspect()  # a broker away or restarted: the watch tells which
        fatal = bool(getattr(err, "fatal", lambda: False)())
        if fatal and self.new_producer is not None:
            self._replace = True  # the record goes again on the new producer
            fatal = False
        if fatal or (self.max_attempts is not None and out.attempts >= self.max_attempts):
            self.stats.failed += 1
            log.error(
                "giving up on a record for %s after %d attempt(s)%s: %s",
                out.topic,
                out.attempts,
                f" ({out.where})" if out.where else "",
                err,
            )
            return
        pause = min(_FIRST_BACKOFF_S * 2 ** (out.attempts - 1), _BACKOFF_MAX_S)
        log.warning(
            "delivery to %s failed (attempt %d%s): %s; retrying in %.1f s",
            out.topic,
            out.attempts,
            f", {out.where}" if out.where else "",
            err,
            pause,
        )
        self._schedule(out, pause)

    def _refuse(self, out: Outgoing, err: Any) -> None:
        self.stats.refused += 1
        size = len(out.value or b"") + len(out.key or b"")
        reason = f"{size} bytes is over the broker's message size ({err})"
        log.error("not sent to %s%s: %s", out.topic, f" ({out.where})" if out.where else "", reason)
        if out.on_refused is not None:
            out.on_refused(reason)
        if out.group is not None:
            out.group.settle_one()

    def _schedule(self, out: Outgoing, pause: float) -> None:
        self._order += 1
        heapq.heappush(self._retry, (time.monotonic() + pause, self._order, out))

    # -- serving reports ---------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports, watch the broker, and produce again what is due."""
        self.producer.poll(timeout)
        self._retired = [old for old in self._retired if old.poll(0) or len(old)]
        self._watch_broker()
        now = time.monotonic()
        while self._retry and self._retry[0][0] <= now:
            _due, _order, out = heapq.heappop(self._retry)
            self.stats.retried += 1
            self.send(out)

    def _watch_broker(self) -> None:
        """Rebuild the producer when the broker restarted (or the producer is fatally broken)."""
        watch = self.watch
        if watch is None or not (watch.suspecting or self._replace):
            return  # the common case, per record: nothing to look at
        restarted = watch.check() is BrokerState.RESTARTED
        if restarted:
            self.stats.broker_restarts += 1
            self.stats.acked_before_restart = self.stats.delivered
            self.restart_pending = True
        if (restarted or self._replace) and self.new_producer is not None:
            self._replace_producer("a broker restart" if restarted else "a fatal producer error")

    def _replace_producer(self, why: str) -> None:
        self._replace = False
        old, self.producer = self.producer, self.new_producer()
        old.purge(in_queue=True, in_flight=True, blocking=False)
        old.poll(0)  # the purged records' reports: back into the retry list
        if len(old):
            self._retired.append(old)
        log.warning("new producer after %s; %d record(s) to send again", why, len(self._retry))

    def take_restart(self) -> bool:
        """Whether the broker restarted since the last call (a consumer must then rejoin)."""
        restarted, self.restart_pending = self.restart_pending, False
        return restarted

    @property
    def in_flight(self) -> int:
        """Records produced and not yet reported, plus those waiting to be produced again."""
        return self._outstanding + len(self._retry)

    @property
    def undelivered(self) -> int:
        """Records given up on or refused, plus records still in flight."""
        return self.stats.failed + self.stats.refused + self.in_flight

    # -- waiting -----------------------------------------------------------------------------

    def wait(
        self,
        stop: threading.Event | None = None,
        timeout: float | None = None,
        group: DeliveryGroup | None = None,
    ) -> bool:
        """Serve reports until nothing is in flight, or until ``group`` is settled (True); False
        at ``timeout``, or once ``stop`` is set while records wait to be sent again (or a
        record of ``group`` was given up on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.in_flight and (group is None or not group.settled):
            now = time.monotonic()
            if stop is not None and stop.is_set() and self._retry:
                log.warning("stopping with %d unacknowledged record(s)", self.in_flight)
                return False
            if deadline is not None and now >= deadline:
                return False
            step = _WAIT_STEP_S if deadline is None else min(_WAIT_STEP_S, deadline - now)
            if self._outstanding:
                if group is None:
                    self.producer.flush(step)
                else:  # returns at the first report
                    self.producer.poll(step)
            elif self._retry:  # only pauses before sending again
                pause = min(step, max(self._retry[0][0] - now, 0.0))
                (stop or threading.Event()).wait(pause)
            self.poll(0)
        return group is None or group.settled

    def send_group(self, outs: list[Outgoing]) -> DeliveryGroup:
        """Send ``outs`` without waiting; the group tells when each is acknowledged or refused."""
        group = DeliveryGroup(len(outs))
        for out in outs:
            out.group = group
            self.send(out)
        return group
