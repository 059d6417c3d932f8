"""The real-time scorer: ``ticks.features`` -> the served model -> ``ticks.predictions``.

A consumer group, like the featurizer, and with its delivery discipline: a polled batch of
feature records is scored in one call of the predictor, its predictions (and dead letters) are
produced, and the batch's offsets are committed only once every one of them is acknowledged. A
crash before the commit scores the batch again; each prediction carries the id of the feature
record it scores, so the repeats keep their ids and a reader drops them.

The model comes from the same :class:`tasks.io.model_source.ModelSource` as the HTTP service: the
registry's champion (or the baseline with ``MODEL_VARIANT=baseline``), watched and swapped
without a restart. A batch reads the current model once, so its predictions all name one version.

A prediction at or above the model's threshold is a spike: one alert line on the
``cryptovol.alerts`` logger, and ``cryptovol_scorer_spikes_total{product}``. A record that cannot
be scored (not a feature record, a value that is not a number, another feature set than the
model's) goes to the dead-letter topic (``ticks.features.dlq``) with the reason in its headers.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from confluent_kafka import KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tasks.core.predictions import (
    FeatureRecord,
    FeatureRecordError,
    feature_array,
    parse_feature_record,
    prediction_record,
)
from tasks.io.delivery import Outgoing, deliver_all
from tasks.io.kafka import (
    ensure_topics,
    make_consumer,
    make_producer,
    poll_batch,
    require_broker,
)
from tasks.io.model_source import ModelSource, ModelSourceMetrics, ServedModel
from tasks.settings import Settings

log = logging.getLogger(__name__)
alerts = logging.getLogger("cryptovol.alerts")

DEFAULT_GROUP = "cryptovol-scorer"
PREFIX = "cryptovol_scorer"
_JOIN_GRACE_S = 30.0  # the idle clock runs before the first assignment only after this long


@dataclass
class ScoreStats:
    features_in: int = 0  # feature records consumed, malformed ones included
    predictions_out: int = 0  # predictions acknowledged by the broker
    spikes: int = 0  # acknowledged predictions at or above the threshold
    dlq: int = 0  # dead letters acknowledged
    errors: int = 0  # consume, scoring, delivery and commit errors
    commits: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class ScorerMetrics:
    """Prometheus metrics on a registry of their own (one per scorer, so tests can run many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.features_in = Counter(f"{PREFIX}_features_in", "Feature records consumed", registry=r)
        self.predictions_out = Counter(
            f"{PREFIX}_predictions_out", "Predictions acknowledged", registry=r
        )
        self.spikes = Counter(
            f"{PREFIX}_spikes", "Predicted spikes acknowledged", ["product"], registry=r
        )
        self.dlq = Counter(f"{PREFIX}_dlq", "Feature records that could not be scored", registry=r)
        self.errors = Counter(f"{PREFIX}_errors", "Errors by stage", ["stage"], registry=r)
        self.latency = Histogram(
            f"{PREFIX}_latency_seconds",
            "From the poll that returned a feature record to the acknowledgement of its prediction",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=r,
        )
        self.event_lag = Gauge(
            f"{PREFIX}_event_lag_seconds",
            "Wall clock minus the feature time of the last acknowledged prediction",
            registry=r,
        )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Scorer:
    """The consumer loop; use :func:`run_scorer` unless you need the pieces."""

    def __init__(
        self,
        settings: Settings,
        source: ModelSource,
        group: str = DEFAULT_GROUP,
        *,
        batch_size: int = 500,
        poll_timeout_s: float = 0.2,
        metrics: ScorerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.group = group
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.metrics = metrics or ScorerMetrics()
        self.stats = ScoreStats()
        self._assigned_at: float | None = None
        self._consumer = make_consumer(
            settings,
            group,
            [settings.features_topic],
            on_assign=self._on_assign,
        )
        self._producer = make_producer(settings)

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # Nothing to rebuild: every batch is committed before the next poll, and a prediction
        # depends on its feature record alone.
        self._assigned_at = time.monotonic()
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def run(
        self, stop_event: threading.Event | None = None, max_idle_s: float | None = None
    ) -> ScoreStats:
        """Consume until ``stop_event`` is set or no record came for ``max_idle_s`` seconds
        (the idle clock starts once partitions are assigned: a group join takes seconds)."""
        stop = stop_event or threading.Event()
        started = last_input = last_report = time.monotonic()
        while not stop.is_set():
            msgs = poll_batch(self._consumer, self.batch_size, self.poll_timeout_s)
            now = time.monotonic()
            self.source.refresh_metrics()
            if not msgs:
                idle_since = max(last_input, self._assigned_at or started + _JOIN_GRACE_S)
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
        model = self.source.current  # one model for the whole batch
        records: list[tuple[Message, FeatureRecord]] = []
        outs: list[Outgoing] = []
        offsets: dict[tuple[str, int], int] = {}
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                self._count_error("consume")
                log.warning("consume error: %s", err)
                continue
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
            self.stats.features_in += 1
            self.metrics.features_in.inc()
            try:
                record = parse_feature_record(msg.value())
                expected = model.predictor.feature_set_version
                if record.feature_set_version != expected:
                    raise FeatureRecordError(
                        f"feature set {record.feature_set_version}, the model "
                        f"(version {model.version}) expects {expected}"
                    )
            except FeatureRecordError as exc:
                outs.append(self._dead_letter(msg, str(exc)))
                continue
            records.append((msg, record))
        if records:
            outs += self._score(model, records, polled_at)
        if not offsets:
            return
        if deliver_all(self._producer, outs, stop, on_failures=self._delivery_failed):
            self._commit(offsets)

    def _score(
        self, model: ServedModel, records: list[tuple[Message, FeatureRecord]], polled_at: float
    ) -> list[Outgoing]:
        predictor = model.predictor
        X, _ = feature_array([r.features for _, r in records], predictor.feature_names)
        try:
            scores = predictor.predict_array(X)
        except Exception as exc:  # a model bug must not stop the stream: park the records
            log.exception("scoring failed with %s version %s", model.name, model.version)
            self._count_error("score")
            return [self._dead_letter(msg, f"scoring error: {exc!r}") for msg, _ in records]
        scored_at = _now_iso()
        latency_ms = (time.monotonic() - polled_at) * 1000.0
        topic = self.settings.predictions_topic
        outs = []
        for (msg, record), score in zip(records, scores.tolist(), strict=True):
            if not math.isfinite(score):
                self._count_error("score")
                outs.append(self._dead_letter(msg, f"the model gave a non-finite score {score}"))
                continue
            prediction = prediction_record(record, score, model.stamp, scored_at, latency_ms)
            outs.append(
                Outgoing(
                    topic,
                    record.product_id.encode(),
                    _dumps(prediction),
                    on_ack=partial(self._acked, prediction, record.event_ts, polled_at),
                )
            )
        return outs

    def _acked(self, prediction: dict[str, Any], event_ts: float, polled_at: float) -> None:
        self.stats.predictions_out += 1
        self.metrics.predictions_out.inc()
        self.metrics.latency.observe(time.monotonic() - polled_at)
        self.metrics.event_lag.set(time.time() - event_ts)
        spikes = self.metrics.spikes.labels(prediction["product_id"])  # exists at 0 from the start
        if prediction["spike"]:
            self.stats.spikes += 1
            spikes.inc()
            alerts.warning(
                "SPIKE %s at %s: score %.3f >= threshold %.3f (%s version %s, %s) record %s",
                prediction["product_id"],
                prediction["ts"],
                prediction["score"],
                prediction["threshold"],
                prediction["model_name"],
                prediction["model_version"],
                prediction["model_variant"],
                prediction["record_id"],
            )

    def _dead_letter(self, msg: Message, error: str) -> Outgoing:
        headers = [
            ("error", error.encode()),
            ("source_topic", msg.topic().encode()),
            ("source_partition", str(msg.partition()).encode()),
            ("source_offset", str(msg.offset()).encode()),
            ("scorer_group", self.group.encode()),
        ]
        return Outgoing(
            self.settings.features_dlq_topic, msg.key(), msg.value(), headers, self._dlq_acked
        )

    def _dlq_acked(self) -> None:
        self.stats.dlq += 1
        self.metrics.dlq.inc()

    def _delivery_failed(self, count: int) -> None:
        self.stats.errors += count
        self.metrics.errors.labels("delivery").inc(count)

    def _count_error(self, stage: str) -> None:
        self.stats.errors += 1
        self.metrics.errors.labels(stage).inc()

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )
            self.stats.commits += 1
        except KafkaException as exc:
            # The predictions are out; a later commit or a re-scoring after restart covers them.
            self._count_error("commit")
            log.warning("commit failed: %s", exc)

    def close(self) -> None:
        """Leave the group and release the clients (offsets are committed batch by batch)."""
        self._producer.flush(self.settings.kafka_connect_timeout_s)
        self._consumer.close()


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()


def scorer_topics(settings: Settings) -> dict[str, int]:
    """The topics the scorer reads and writes, with their partition counts."""
    return {
        settings.features_topic: settings.raw_partitions,
        settings.predictions_topic: settings.raw_partitions,
        settings.features_dlq_topic: 1,
    }


def run_scorer(
    settings: Settings,
    group: str = DEFAULT_GROUP,
    stop_event: threading.Event | None = None,
    max_idle_s: float | None = None,
    metrics_port: int | None = None,
    *,
    variant: str | None = None,
    **options: Any,
) -> ScoreStats:
    """Run the scorer in this process until stopped or idle; ``metrics_port`` 0/None: no server.

    Raises :class:`tasks.io.kafka.BrokerUnavailable` without a broker, and
    :class:`tasks.io.model_source.NoChampion` or :class:`tasks.io.registry.RegistryUnavailable`
    when there is no model to load. ``options`` go to :class:`Scorer` (batch size, poll timeout).
    """
    require_broker(settings)
    ensure_topics(settings, scorer_topics(settings))
    metrics = options.pop("metrics", None) or ScorerMetrics()
    variant = variant or settings.model_variant
    source = ModelSource(
        settings,
        variant=variant,
        metrics=ModelSourceMetrics(PREFIX, variant, metrics.registry),
    )
    source.load()
    server = None
    if metrics_port:
        server, _thread = start_http_server(
            metrics_port, addr=settings.metrics_host, registry=metrics.registry
        )
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, metrics_port)
    source.start()
    scorer = Scorer(settings, source, group, metrics=metrics, **options)
    try:
        return scorer.run(stop_event, max_idle_s)
    finally:
        scorer.close()
        source.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
