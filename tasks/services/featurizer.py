"""The streaming featurizer: ``ticks.raw`` -> :class:`FeatureEngine` -> ``ticks.features``.

Delivery is at least once. A batch of raw records is processed, its feature records (and dead
letters) are produced, and the batch's offsets are committed only once every one of those records
is acknowledged. A crash before the commit makes the next run process the batch again: the
duplicates it produces carry the same ``record_id`` (product, source, sequence, index), so a reader
drops them.

Engine state lives in memory. When partitions are assigned (a start, a restart, a rebalance), each
partition gets a fresh engine that first re-reads the history before its committed offset without
producing anything (the warm-up). The engine's state depends only on the recent ticks
(:func:`tasks.core.features.restart_lookback_s`), so after a long enough warm-up the features
produced are bit-identical to an uninterrupted run's, and the duplicates a crash causes carry
exactly the values first produced. A warm-up is long enough once, for every product it saw:

- its ticks span ``lookback_s`` of event time (``restart_lookback_s``: 335 s by default), or
- the engine restarted the product's windows after a gap, more than ``max_gap_s +
  late_tolerance_s`` after the product's first tick in the warm-up (an uninterrupted run, whose
  latest tick before the warm-up is at most ``late_tolerance_s`` later than that first one,
  restarted there too), or
- the product's first tick came more than ``max_gap_s + late_tolerance_s`` after the warm-up's
  first tick (silent for longer than a gap: an uninterrupted run restarted there too);

if not, it rewinds further back. This assumes a partition's records are in event-time order up to
``late_tolerance_s``, as capture and replay write them (the engine drops later ones). Products are
keyed, so each lives in one partition and a per-partition engine sees every tick of its products,
in order.

Malformed records go to the dead-letter topic with the error in the headers, are counted, and
never stop the featurizer: whatever goes wrong with one record (bad JSON, nesting too deep for
the parser, an event time far from its receive time, an engine error) is that record's problem.

A broker that restarts without its state (the embedded broker keeps everything in memory) is
noticed by a :class:`~tasks.io.kafka.BrokerWatch`: the topics are created again, the batch in
flight is delivered through a new producer to the new broker (its offsets, which point into the
log that is gone, are not committed), and a new consumer joins the group on it. The engines are
carried over, so features go on from the state before the restart. Records the broker held but
the featurizer had not yet read are gone with it: replay the raw archive to bring them back. A
broker away for longer than :data:`~tasks.io.kafka.BROKER_DOWN_TIMEOUT_S` stops the featurizer
with :class:`~tasks.io.kafka.BrokerUnavailable`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tasks.core.features import EngineConfig, FeatureEngine, FeatureRow, restart_lookback_s
from tasks.core.messages import MessageError, RawTick, to_tick
from tasks.io.kafka import (
    BrokerState,
    BrokerWatch,
    ensure_topics,
    make_consumer,
    make_producer,
    poll_batch,
    require_broker,
)
from tasks.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GROUP = "cryptovol-featurizer"
# Event time a warm-up must span for bit-identical features with the default engine settings.
DEFAULT_LOOKBACK_S = restart_lookback_s(EngineConfig())
# First guess of how many records before the committed offset a warm-up needs; grows if short.
DEFAULT_WARMUP_RECORDS = 20_000
_REWIND_GROWTH = 4
_RETRY_BACKOFF_MAX_S = 5.0
_JOIN_GRACE_S = 30.0  # the idle clock runs before the first assignment only after this long
_FLUSH_STEP_S = 0.5  # waits for acknowledgements in steps this long, watching the broker between
_MAX_ERROR_HEADER = 1000  # characters of an error kept in a dead letter's header


@dataclass
class FeaturizeStats:
    ticks_in: int = 0  # raw records consumed after warm-up, malformed ones included
    features_out: int = 0  # feature records acknowledged by the broker
    dlq: int = 0  # dead letters acknowledged
    errors: int = 0  # consume, engine, delivery and commit errors
    duplicates: int = 0  # ticks the engine dropped as duplicates
    late_dropped: int = 0  # ticks the engine dropped as too late
    warmup_ticks: int = 0  # records re-read to rebuild engine state, not produced
    rewinds: int = 0  # warm-ups that turned out short and re-read further back
    commits: int = 0
    delivery_retries: int = 0
    broker_restarts: int = 0  # times the broker came back without its topics

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FeaturizeMetrics:
    """Prometheus metrics on a registry of their own (one per featurizer, so tests can run many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.ticks_in = Counter(
            "cryptovol_featurize_ticks_in", "Raw records consumed (after warm-up)", registry=r
        )
        self.features_out = Counter(
            "cryptovol_featurize_features_out", "Feature records acknowledged", registry=r
        )
        self.dlq = Counter(
            "cryptovol_featurize_dlq", "Records sent to the dead-letter topic", registry=r
        )
        self.errors = Counter(
            "cryptovol_featurize_errors", "Errors by stage", ["stage"], registry=r
        )
        self.duplicates = Counter(
            "cryptovol_featurize_duplicates", "Ticks dropped as duplicates", registry=r
        )
        self.late_dropped = Counter(
            "cryptovol_featurize_late_dropped", "Ticks dropped as too late", registry=r
        )
        self.warmup_ticks = Counter(
            "cryptovol_featurize_warmup_ticks",
            "Records re-read to rebuild engine state",
            registry=r,
        )
        self.latency = Histogram(
            "cryptovol_featurize_latency_seconds",
            "From the poll that returned a tick to the acknowledgement of its features",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=r,
        )
        self.event_lag = Gauge(
            "cryptovol_featurize_event_lag_seconds",
            "Wall clock minus the event time of the last acknowledged feature record",
            registry=r,
        )
        self.partitions = Gauge(
            "cryptovol_featurize_assigned_partitions", "Partitions assigned", registry=r
        )


@dataclass
class _WarmProduct:
    first_ts: float  # event time of the product's first tick in the warm-up
    last_ts: float  # the engine's latest event time for the product
    first_segment: int | None = None
    restarted: bool = False  # the engine restarted the windows as an uninterrupted run did

    def covered(self, lookback_s: float, partition_first_ts: float, sure_gap_s: float) -> bool:
        """Whether the warm-up rebuilt this product's state as an uninterrupted run has it."""
        return (
            self.restarted
            or self.last_ts - self.first_ts >= lookback_s
            # silent for longer than a gap before its first tick: it restarted there anyway
            or self.first_ts - partition_first_ts > sure_gap_s
        )


@dataclass
class _Partition:
    """One assigned partition: its engine and where producing resumes."""

    engine: FeatureEngine
    resume_at: int  # offsets below this were produced before: warm-up only
    low: int  # the partition's first offset
    start: int  # where reading starts: the warm-up's first offset, or where producing starts
    live: bool
    products: dict[str, _WarmProduct] = field(default_factory=dict)
    first_ts: float = math.inf  # event time of the earliest tick the warm-up's engine took

    def warm(self, row: FeatureRow | None, ts: float, product_id: str) -> None:
        seen = self.products.get(product_id)
        if seen is None:
            seen = self.products[product_id] = _WarmProduct(ts, ts)
        if row is None:  # a duplicate or a tick too late: it changed nothing
            return
        self.first_ts = min(self.first_ts, row.ts)
        seen.last_ts = max(seen.last_ts, row.ts)
        if seen.first_segment is None:
            seen.first_segment = row.segment
        elif row.segment != seen.first_segment and row.ts - seen.first_ts > self.sure_gap_s:
            seen.restarted = True

    @property
    def sure_gap_s(self) -> float:
        """A tick this long after a product's first tick in the warm-up (or the warm-up's first
        tick) that finds a gap found one in an uninterrupted run too: that run's latest tick
        before the warm-up came at most late_tolerance_s after it."""
        config = self.engine.config
        return config.max_gap_s + config.late_tolerance_s

    def covered(self, lookback_s: float) -> bool:
        if self.start <= self.low:
            return True
        sure_gap_s = self.sure_gap_s
        return all(p.covered(lookback_s, self.first_ts, sure_gap_s) for p in self.products.values())


@dataclass
class _Out:
    """A record to produce, and what to count once it is acknowledged."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    kind: str  # "feature" or "dlq"
    polled_at: float
    event_ts: float = 0.0


class RecordHandler:
    """What becomes of one raw record: a feature record, a dead letter, or nothing (a duplicate
    or a tick too late, counted). It touches no Kafka client, so it can be exercised alone; any
    exception raised while handling a record makes that record a dead letter."""

    def __init__(
        self, settings: Settings, group: str, stats: FeaturizeStats, metrics: FeaturizeMetrics
    ) -> None:
        self.settings = settings
        self.group = group
        self.stats = stats
        self.metrics = metrics

    def process(
        self, msg: Message, engine: FeatureEngine, polled_at: float, outs: list[_Out]
    ) -> None:
        value = msg.value()
        stats = self.stats
        try:
            if value is None:
                raise MessageError("empty record")
            tick = to_tick(RawTick.from_bytes(value))
        except MessageError as exc:
            outs.append(self.dead_letter(msg, str(exc), polled_at))
            return
        except Exception as exc:  # anything else wrong with this record is its own problem
            stats.errors += 1
            self.metrics.errors.labels("decode").inc()
            outs.append(self.dead_letter(msg, f"unreadable record: {exc!r}", polled_at))
            return
        duplicates, late = engine.stats.duplicates, engine.stats.late_dropped
        jumps = engine.stats.sequence_jumps
        try:
            row = engine.process(tick)
            payload = (
                None
                if row is None
                else json.dumps(row.to_record(), separators=(",", ":"), allow_nan=False).encode()
            )
        except Exception as exc:  # an engine bug must not stop the stream: park the record
            log.exception("engine failed on %s", tick.record_id)
            stats.errors += 1
            self.metrics.errors.labels("engine").inc()
            outs.append(self.dead_letter(msg, f"engine error: {exc!r}", polled_at))
            return
        if row is None:
            if engine.stats.duplicates != duplicates:
                stats.duplicates += 1
                self.metrics.duplicates.inc()
            elif engine.stats.late_dropped != late:
                stats.late_dropped += 1
                self.metrics.late_dropped.inc()
            elif engine.stats.sequence_jumps != jumps:
                reason = f"sequence_num {tick.sequence_num} jumps far ahead of its source's"
                outs.append(self.dead_letter(msg, reason, polled_at))
            return
        key = row.product_id.encode()
        outs.append(
            _Out(self.settings.features_topic, key, payload, None, "feature", polled_at, row.ts)
        )

    def dead_letter(self, msg: Message, error: str, polled_at: float) -> _Out:
        headers = [
            ("error", error[:_MAX_ERROR_HEADER].encode("utf-8", "backslashreplace")),
            ("source_topic", msg.topic().encode()),
            ("source_partition", str(msg.partition()).encode()),
            ("source_offset", str(msg.offset()).encode()),
            ("featurizer_group", self.group.encode()),
        ]
        return _Out(self.settings.dlq_topic, msg.key(), msg.value(), headers, "dlq", polled_at)


class Featurizer:
    """The consumer loop; use :func:`run_featurizer` unless you need the pieces."""

    def __init__(
        self,
        settings: Settings,
        group: str = DEFAULT_GROUP,
        *,
        batch_size: int = 500,
        poll_timeout_s: float = 0.2,
        lookback_s: float | None = None,
        warmup_records: int = DEFAULT_WARMUP_RECORDS,
        engine_config: EngineConfig | None = None,
        metrics: FeaturizeMetrics | None = None,
        down_timeout_s: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.settings = settings
        self.group = group
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.engine_config = engine_config or EngineConfig()
        # a shorter look-back than the engine needs gives features that differ after a restart
        self.lookback_s = (
            restart_lookback_s(self.engine_config) if lookback_s is None else lookback_s
        )
        self.warmup_records = warmup_records
        self.metrics = metrics or FeaturizeMetrics()
        self.stats = FeaturizeStats()
        self._records = RecordHandler(settings, group, self.stats, self.metrics)
        self._partitions: dict[int, _Partition] = {}
        self._assigned_at: float | None = None
        self._generation = 0  # bumped by every assignment change
        self._fatal: KafkaError | None = None
        watch_options = {} if down_timeout_s is None else {"down_timeout_s": down_timeout_s}
        self._watch = BrokerWatch(settings, **watch_options)
        self._carried: dict[int, FeatureEngine] = {}  # engines kept across a broker restart
        self._broker_restarted = False  # noticed while delivering: rejoin before the next poll
        self._last_consume_warning = -math.inf
        self._consumer = self._new_consumer()
        self._producer = self._new_producer()

    def _new_consumer(self) -> Any:
        return make_consumer(
            self.settings,
            self.group,
            [self.settings.raw_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            error_cb=self._watch.error_cb,
        )

    def _new_producer(self) -> Any:
        return make_producer(self.settings, error_cb=self._watch.error_cb)

    # -- rebalancing -------------------------------------------------------------------------

    def _committed(self, consumer: Any, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Committed offsets, retried: raising inside a rebalance callback would stop the loop."""
        for attempt in range(1, 4):
            try:
                return consumer.committed(partitions, timeout=self.settings.kafka_connect_timeout_s)
            except KafkaException as exc:
                log.warning("reading committed offsets failed (attempt %d): %s", attempt, exc)
                self.stats.errors += 1
        return consumer.committed(partitions, timeout=self.settings.kafka_connect_timeout_s)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        committed = self._committed(consumer, partitions)
        assignment: list[TopicPartition] = []
        self._partitions = {}
        for tp in committed:
            low, _high = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition),
                timeout=self.settings.kafka_connect_timeout_s,
                cached=False,
            )
            resume_at = tp.offset
            if resume_at == OFFSET_INVALID or resume_at <= low:
                # nothing produced before (or it is gone): produce all there is; after a broker
                # restart, with the engine that saw the stream up to it
                start = resume_at if resume_at == low else OFFSET_BEGINNING
                engine = self._carried.pop(tp.partition, None) or self._new_engine()
                state = _Partition(engine, resume_at, low, start, live=True)
            else:
                start = max(low, resume_at - self.warmup_records)
                state = _Partition(self._new_engine(), resume_at, low, start, live=False)
            self._partitions[tp.partition] = state
            assignment.append(TopicPartition(tp.topic, tp.partition, start))
            log.info(
                "assigned %s[%d]: committed %s, low %d, %s",
                tp.topic,
                tp.partition,
                resume_at if resume_at != OFFSET_INVALID else "none",
                low,
                "live" if state.live else f"warm-up from {start}",
            )
        consumer.assign(assignment)
        self._carried.clear()
        self._generation += 1
        self._assigned_at = time.monotonic()
        self.metrics.partitions.set(len(assignment))

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Every batch is acknowledged and committed before the next poll, so nothing is pending.
        for tp in partitions:
            self._partitions.pop(tp.partition, None)
        self._generation += 1
        self.metrics.partitions.set(len(self._partitions))

    def _new_engine(self) -> FeatureEngine:
        return FeatureEngine(self.engine_config)

    def _rewind(self, topic: str, partition: int, state: _Partition) -> None:
        """The warm-up was too short: start it again from further back with a fresh engine."""
        span = state.resume_at - state.start
        state.start = max(state.low, state.resume_at - _REWIND_GROWTH * max(span, 1))
        state.engine = self._new_engine()
        state.products.clear()
        state.first_ts = math.inf
        self.stats.rewinds += 1
        log.info("warm-up of %s[%d] too short; re-reading from %d", topic, partition, state.start)
        self._consumer.seek(TopicPartition(topic, partition, state.start))

    def _reread_assignment(self) -> None:
        """A rebalance ran inside the last poll, whose records may mix the old assignment's with
        the new one's: drop them all and read every assigned partition from its start again."""
        topic = self.settings.raw_topic
        log.info("assignment changed in a poll: re-reading %d partitions", len(self._partitions))
        for partition, state in self._partitions.items():
            self._consumer.seek(TopicPartition(topic, partition, state.start))

    # -- processing --------------------------------------------------------------------------

    def _warm(self, msg: Message, state: _Partition) -> None:
        self.stats.warmup_ticks += 1
        self.metrics.warmup_ticks.inc()
        value = msg.value()
        try:
            tick = to_tick(RawTick.from_bytes(value if value is not None else b""))
            row = state.engine.process(tick)
        except Exception:  # it went to the dead-letter topic when it was first consumed
            return
        state.warm(row, tick.ts, tick.product_id)

    # -- delivery ----------------------------------------------------------------------------

    def _on_delivery(
        self, out: _Out, failed: list[_Out], err: KafkaError | None, _msg: Any
    ) -> None:
        if err is not None:
            failed.append(out)
            if err.fatal():
                self._fatal = err
            return
        now = time.monotonic()
        if out.kind == "feature":
            self.stats.features_out += 1
            self.metrics.features_out.inc()
            self.metrics.latency.observe(now - out.polled_at)
            self.metrics.event_lag.set(time.time() - out.event_ts)
        else:
            self.stats.dlq += 1
            self.metrics.dlq.inc()

    def _deliver(self, outs: list[_Out], stop: threading.Event) -> bool:
        """Produce and wait for every acknowledgement; re-send failures until done or stopped.

        While waiting, the broker is watched: after a restart the records not yet acknowledged
        are taken back and sent again through a new producer (:meth:`_after_broker_restart`).
        """
        backoff = 0.1
        while outs:
            failed: list[_Out] = []
            for out in outs:
                while True:
                    try:
                        self._producer.produce(
                            out.topic,
                            value=out.value,
                            key=out.key,
                            headers=out.headers,
                            on_delivery=partial(self._on_delivery, out, failed),
                        )
                        break
                    except BufferError:  # local queue full: let deliveries drain
                        self._producer.poll(0.1)
            while self._producer.flush(_FLUSH_STEP_S) > 0 or self._fatal is not None:
                if self._watch.check() is BrokerState.RESTARTED:
                    self._after_broker_restart()
                elif self._fatal is not None:  # unusable producer: the batch goes on a new one
                    log.warning("producer failed fatally (%s); replacing it", self._fatal)
                    self._replace_producer()
            if not failed:
                return True
            self.stats.errors += len(failed)
            self.metrics.errors.labels("delivery").inc(len(failed))
            self._watch.suspect()
            if stop.is_set():
                log.warning(
                    "stopping with %d undelivered records; their batch stays uncommitted",
                    len(failed),
                )
                return False
            self.stats.delivery_retries += 1
            log.warning("%d records not acknowledged; retrying in %.1f s", len(failed), backoff)
            stop.wait(backoff)
            if self._watch.check() is BrokerState.RESTARTED:
                self._after_broker_restart()
            backoff = min(backoff * 2, _RETRY_BACKOFF_MAX_S)
            outs = failed
        return True

    def _replace_producer(self) -> None:
        """A new producer; the old one's unacknowledged records fail into their batch's retry."""
        old, self._producer = self._producer, self._new_producer()
        self._fatal = None
        old.purge(in_queue=True, in_flight=True, blocking=False)
        old.poll(0)  # their delivery reports: failed, so _deliver sends them again

    def _after_broker_restart(self) -> None:
        """The broker came back without its topics (the watch created them again)."""
        self.stats.broker_restarts += 1
        self._replace_producer()
        self._broker_restarted = True

    def _rejoin(self) -> None:
        """A new consumer on the restarted broker; the engines carry over to its assignment."""
        self._carried = {p: state.engine for p, state in self._partitions.items()}
        self._partitions = {}
        old, self._consumer = self._consumer, None
        try:
            old.close()
        except KafkaException as exc:  # its group is gone with the broker
            log.info("closing the consumer of the lost broker: %s", exc)
        self._consumer = self._new_consumer()
        self._assigned_at = None
        self._generation += 1
        self.metrics.partitions.set(0)
        log.warning(
            "rejoined group %s on the restarted broker; %d engine(s) carried over",
            self.group,
            len(self._carried),
        )

    def _commit(self, offsets: dict[int, int]) -> None:
        topic = self.settings.raw_topic
        try:
            self._consumer.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )
            self.stats.commits += 1
        except KafkaException as exc:
            # The records are out; a later commit or a reprocessing after restart covers them.
            self.stats.errors += 1
            self.metrics.errors.labels("commit").inc()
            log.warning("commit failed: %s", exc)

    # -- the loop ----------------------------------------------------------------------------

    def run(
        self, stop_event: threading.Event | None = None, max_idle_s: float | None = None
    ) -> FeaturizeStats:
        """Consume until ``stop_event`` is set or no record came for ``max_idle_s`` seconds."""
        stop = stop_event or threading.Event()
        started = last_input = time.monotonic()
        last_report = started
        while not stop.is_set():
            if self._broker_restarted or self._watch.check() is BrokerState.RESTARTED:
                if not self._broker_restarted:
                    self.stats.broker_restarts += 1
                    self._replace_producer()
                self._broker_restarted = False
                self._rejoin()
                started = last_input = time.monotonic()
                continue
            generation = self._generation
            msgs = poll_batch(self._consumer, self.batch_size, self.poll_timeout_s)
            now = time.monotonic()
            if self._generation != generation:
                if msgs:
                    self._reread_assignment()
                continue
            if not msgs:
                if self._watch.suspecting:  # waiting for the broker is not being idle
                    last_input = now
                # the idle clock starts once partitions are assigned (a group join takes seconds)
                assigned = self._assigned_at or started + _JOIN_GRACE_S
                idle_since = max(last_input, assigned)
                if max_idle_s is not None and now - idle_since >= max_idle_s:
                    log.info("no input for %.1f s: stopping", now - idle_since)
                    break
                continue
            last_input = now
            self._handle_batch(msgs, now, stop)
            if now - last_report >= 10.0:
                last_report = now
                log.info("progress: %s", self.stats.as_dict())
        return self.stats

    def _handle_batch(self, msgs: list[Message], polled_at: float, stop: threading.Event) -> None:
        outs: list[_Out] = []
        offsets: dict[int, int] = {}
        rewound: set[int] = set()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                self.stats.errors += 1
                self.metrics.errors.labels("consume").inc()
                self._watch.suspect()  # a topic gone or a broker away: the watch tells which
                if polled_at - self._last_consume_warning >= 1.0:
                    self._last_consume_warning = polled_at
                    log.warning("consume error: %s", err)
                continue
            partition = msg.partition()
            state = self._partitions.get(partition)
            if state is None or partition in rewound:
                continue  # revoked, or re-read from further back: later records come again
            offset = msg.offset()
            if not state.live:
                if offset < state.resume_at:
                    self._warm(msg, state)
                    continue
                if not state.covered(self.lookback_s):
                    self._rewind(msg.topic(), partition, state)
                    rewound.add(partition)
                    continue
                state.live = True
                log.info(
                    "partition %d warm after %d records; producing from %d",
                    partition,
                    offset - state.start,
                    offset,
                )
            self.stats.ticks_in += 1
            self.metrics.ticks_in.inc()
            self._records.process(msg, state.engine, polled_at, outs)
            offsets[partition] = offset + 1
        if not offsets:
            return
        if self._deliver(outs, stop) and not self._broker_restarted:
            self._commit(offsets)  # not after a restart: these offsets point into a lost log

    def close(self) -> None:
        """Leave the group and release the clients (offsets are committed batch by batch)."""
        self._producer.flush(self.settings.kafka_connect_timeout_s)
        self._consumer.close()


def run_featurizer(
    settings: Settings,
    group: str = DEFAULT_GROUP,
    stop_event: threading.Event | None = None,
    max_idle_s: float | None = None,
    metrics_port: int | None = None,
    **options: Any,
) -> FeaturizeStats:
    """Run the featurizer in this process until stopped or idle; ``metrics_port`` 0/None: no server.

    ``options`` go to :class:`Featurizer` (batch size, lookback, engine configuration...).
    """
    require_broker(settings)
    ensure_topics(settings)
    metrics = options.pop("metrics", None) or FeaturizeMetrics()
    server = None
    if metrics_port:
        server, _thread = start_http_server(
            metrics_port, addr=settings.metrics_host, registry=metrics.registry
        )
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, metrics_port)
    featurizer = Featurizer(settings, group, metrics=metrics, **options)
    try:
        return featurizer.run(stop_event, max_idle_s)
    finally:
        featurizer.close()
        if server is not None:
            server.shutdown()
            server.server_close()
