"""The streaming featurizer: ``ticks.raw`` -> :class:`FeatureEngine` -> ``ticks.features``.

It runs the consumer loop it shares with the scorer (:mod:`tasks.io.consumer_loop`: delivery at
least once, commits after acknowledgement, dead letters, broker restarts) and supplies the record
handling: :class:`TickHandler`. A crash before a commit makes the next run process the batch
again: the duplicates it produces carry the same ``record_id`` (product, source, sequence,
index), so a reader drops them.

Engine state lives in memory. When partitions are assigned (a start, a restart, a rebalance), each
partition gets a fresh engine that first re-reads the history before its committed offset without
producing anything (the warm-up). The engine's state depends only on the recent ticks
(:func:`tasks.core.features.restart_lookback_s`), so after a long enough warm-up the features
produced are bit-identical to an uninterrupted run's, and the duplicates a crash causes carry
exactly the values first produced. A warm-up is long enough once, for every product it saw:

- its ticks span ``lookback_s`` of event time (``restart_lookback_s``: 935 s by default), or
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

Malformed records go to the dead-letter topic (``ticks.raw.dlq``) with the error in the headers,
are counted, and never stop the featurizer: whatever goes wrong with one record (bad JSON, nesting
too deep for the parser, an event time far from its receive time, an engine error) is that
record's problem.

After a broker restart (the loop rebuilds its clients and creates the topics again) the engines
are carried over to the new consumer's assignment, so features go on from the state before the
restart. Records the broker held but the featurizer had not yet read are gone with it: replay the
raw archive to bring them back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    KafkaException,
    Message,
    TopicPartition,
)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tasks.core.features import (
    FEATURE_NAMES,
    EngineConfig,
    FeatureEngine,
    FeatureRow,
    restart_lookback_s,
)
from tasks.core.messages import MessageError, tick_from_bytes
from tasks.io.consumer_loop import (
    ConsumerLoop,
    LoopStats,
    RecordHandler,
    metrics_server,
    observe_many,
)
from tasks.io.delivery import Outgoing
from tasks.io.kafka import ensure_topics, require_broker, topic_specs
from tasks.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GROUP = "cryptovol-featurizer"
# Event time a warm-up must span for bit-identical features with the default engine settings.
DEFAULT_LOOKBACK_S = restart_lookback_s(EngineConfig())
# First guess of how many records before the committed offset a warm-up needs; grows if short.
DEFAULT_WARMUP_RECORDS = 20_000
_REWIND_GROWTH = 4


@dataclass
class FeaturizeStats(LoopStats):
    ticks_in: int = 0  # raw records consumed after warm-up, malformed ones included
    features_out: int = 0  # feature records acknowledged by the broker
    duplicates: int = 0  # ticks the engine dropped as duplicates
    late_dropped: int = 0  # ticks the engine dropped as too late
    warmup_ticks: int = 0  # records re-read to rebuild engine state, not produced
    rewinds: int = 0  # warm-ups that turned out short and re-read further back


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


_ENCODER = msgspec.json.Encoder()


def feature_payload(row: FeatureRow) -> bytes:
    """The feature record's JSON (msgspec: a tenth of ``json.dumps``'s time, the same values
    when read back). A NaN is null; an infinity is an error naming the feature, as JSON has none
    (msgspec alone would write it as null)."""
    if math.inf in row.values or -math.inf in row.values:
        infinite = [n for n, v in zip(FEATURE_NAMES, row.values, strict=True) if math.isinf(v)]
        raise ValueError(f"feature(s) {', '.join(infinite)} infinite: JSON has no infinity")
    return _ENCODER.encode(row.to_record())


class TickHandler(RecordHandler):
    """The featurizer's part of the loop: per-partition engines rebuilt by a warm-up on
    assignment, and what becomes of one raw record: a feature record, or nothing (a duplicate or
    a tick too late, counted). Whatever :meth:`handle` raises makes the record a dead letter."""

    bad_input = (MessageError,)

    def __init__(
        self,
        settings: Settings,
        stats: FeaturizeStats,
        metrics: FeaturizeMetrics,
        *,
        engine_config: EngineConfig | None = None,
        lookback_s: float | None = None,
        warmup_records: int = DEFAULT_WARMUP_RECORDS,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.metrics = metrics
        self.engine_config = engine_config or EngineConfig()
        # a shorter look-back than the engine needs gives features that differ after a restart
        self.lookback_s = (
            restart_lookback_s(self.engine_config) if lookback_s is None else lookback_s
        )
        self.warmup_records = warmup_records
        self.partitions: dict[int, _Partition] = {}
        self._carried: dict[int, FeatureEngine] = {}  # engines kept across a broker restart
        self._batch_features = 0  # feature records made from the batch in hand
        self._batch_latest_ts = math.nan

    # -- one record --------------------------------------------------------------------------

    def handle(self, msg: Message, polled_at: float) -> list[Outgoing]:
        engine = self.partitions[msg.partition()].engine
        value = msg.value()
        if value is None:
            raise MessageError("empty record")
        tick = tick_from_bytes(value)
        duplicates, late = engine.stats.duplicates, engine.stats.late_dropped
        jumps = engine.stats.sequence_jumps
        row = engine.process(tick)
        if row is None:
            if engine.stats.duplicates != duplicates:
                self.stats.duplicates += 1
                self.metrics.duplicates.inc()
            elif engine.stats.late_dropped != late:
                self.stats.late_dropped += 1
                self.metrics.late_dropped.inc()
            elif engine.stats.sequence_jumps != jumps:
                raise MessageError(
                    f"sequence_num {tick.sequence_num} jumps far ahead of its source's"
                )
            return []
        self._batch_features += 1
        self._batch_latest_ts = row.ts
        payload = feature_payload(row)
        return [Outgoing(self.settings.features_topic, row.product_id.encode(), payload)]

    def batch_context(self) -> tuple[int, float]:
        """The batch's feature records and the event time of its last."""
        return self._batch_features, self._batch_latest_ts

    def batch_delivered(
        self, context: tuple[int, float], polled_at: float, settled_at: float
    ) -> None:
        """Counted once per batch; each record's latency is taken to the acknowledgement of the
        batch's last (an upper bound: the offsets are committed no earlier)."""
        features, latest_ts = context
        if not features:
            return
        self.stats.features_out += features
        self.metrics.features_out.inc(features)
        observe_many(self.metrics.latency, settled_at - polled_at, features)
        self.metrics.event_lag.set(time.time() - latest_ts)

    # -- warm-up -----------------------------------------------------------------------------

    def begin_batch(self, consumer: Any, msgs: list[Message]) -> list[Message]:
        """The records to produce from: records of a warm-up only rebuild their engine."""
        self._batch_features = 0
        live: list[Message] = []
        rewound: set[int] = set()
        for msg in msgs:
            partition = msg.partition()
            state = self.partitions.get(partition)
            if state is None or partition in rewound:
                continue  # revoked, or re-read from further back: later records come again
            offset = msg.offset()
            if not state.live:
                if offset < state.resume_at:
                    self._warm(msg, state)
                    continue
                if not state.covered(self.lookback_s):
                    self._rewind(consumer, msg.topic(), partition, state)
                    rewound.add(partition)
                    continue
                state.live = True
                log.info(
                    "partition %d warm after %d records; producing from %d",
                    partition,
                    offset - state.start,
                    offset,
                )
            live.append(msg)
        self.stats.ticks_in += len(live)
        self.metrics.ticks_in.inc(len(live))
        return live

    def _warm(self, msg: Message, state: _Partition) -> None:
        self.stats.warmup_ticks += 1
        self.metrics.warmup_ticks.inc()
        value = msg.value()
        try:
            tick = tick_from_bytes(value if value is not None else b"")
            row = state.engine.process(tick)
        except Exception:  # it went to the dead-letter topic when it was first consumed
            return
        state.warm(row, tick.ts, tick.product_id)

    def _rewind(self, consumer: Any, topic: str, partition: int, state: _Partition) -> None:
        """The warm-up was too short: start it again from further back with a fresh engine."""
        span = state.resume_at - state.start
        state.start = max(state.low, state.resume_at - _REWIND_GROWTH * max(span, 1))
        state.engine = self._new_engine()
        state.products.clear()
        state.first_ts = math.inf
        self.stats.rewinds += 1
        log.info("warm-up of %s[%d] too short; re-reading from %d", topic, partition, state.start)
        consumer.seek(TopicPartition(topic, partition, state.start))

    def _new_engine(self) -> FeatureEngine:
        return FeatureEngine(self.engine_config)

    # -- assignment --------------------------------------------------------------------------

    def _committed(self, consumer: Any, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Committed offsets, retried: raising inside a rebalance callback would stop the loop."""
        for attempt in range(1, 4):
            try:
                return consumer.committed(partitions, timeout=self.settings.kafka_connect_timeout_s)
            except KafkaException as exc:
                log.warning("reading committed offsets failed (attempt %d): %s", attempt, exc)
                self.stats.errors += 1
        return consumer.committed(partitions, timeout=self.settings.kafka_connect_timeout_s)

    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        committed = self._committed(consumer, partitions)
        assignment: list[TopicPartition] = []
        self.partitions = {}
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
            self.partitions[tp.partition] = state
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
        self.metrics.partitions.set(len(assignment))

    def on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.partitions.pop(tp.partition, None)
        self.metrics.partitions.set(len(self.partitions))

    def reread_after_rebalance(self, consumer: Any) -> bool:
        """The poll's records may mix the old assignment's with the new one's: drop them all and
        read every assigned partition from its start again."""
        topic = self.settings.raw_topic
        log.info("assignment changed in a poll: re-reading %d partitions", len(self.partitions))
        for partition, state in self.partitions.items():
            consumer.seek(TopicPartition(topic, partition, state.start))
        return True

    def on_rejoin(self) -> None:
        """The engines carry over to the new consumer's assignment."""
        self._carried = {p: state.engine for p, state in self.partitions.items()}
        self.partitions = {}
        self.metrics.partitions.set(0)
        log.info("%d engine(s) carried over to the restarted broker", len(self._carried))


class Featurizer:
    """The featurizer's handler in the shared consumer loop; use :func:`run_featurizer` unless
    you need the pieces."""

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
        self.metrics = metrics or FeaturizeMetrics()
        self.stats = FeaturizeStats()
        self.handler = TickHandler(
            settings,
            self.stats,
            self.metrics,
            engine_config=engine_config,
            lookback_s=lookback_s,
            warmup_records=warmup_records,
        )
        self.loop = ConsumerLoop(
            settings,
            self.handler,
            group=group,
            role="featurizer",
            topic=settings.raw_topic,
            dlq_topic=settings.dlq_topic,
            topics=topic_specs(settings),
            stats=self.stats,
            metrics=self.metrics,
            batch_size=batch_size,
            poll_timeout_s=poll_timeout_s,
            down_timeout_s=down_timeout_s,
        )

    def run(
        self, stop_event: threading.Event | None = None, max_idle_s: float | None = None
    ) -> FeaturizeStats:
        """Consume until ``stop_event`` is set or no record came for ``max_idle_s`` seconds."""
        self.loop.run(stop_event, max_idle_s)
        return self.stats

    def close(self) -> None:
        self.loop.close()


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
    with metrics_server(settings, metrics.registry, metrics_port):
        featurizer = Featurizer(settings, group, metrics=metrics, **options)
        try:
            return featurizer.run(stop_event, max_idle_s)
        finally:
            featurizer.close()
