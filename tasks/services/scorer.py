"""The real-time scorer: ``ticks.features`` -> the served model -> ``ticks.predictions``.

It runs the consumer loop it shares with the featurizer (:mod:`tasks.io.consumer_loop`: delivery
at least once, commits after acknowledgement, dead letters, broker restarts) and supplies the
record handling: :class:`FeatureHandler`. A polled batch of feature records is scored in one call
of the predictor. A crash before a commit scores the batch again; each prediction carries the id
of the feature record it scores, so the repeats keep their ids and a reader drops them.

The model comes from the same :class:`tasks.io.model_source.ModelSource` as the HTTP service: the
registry's champion (or the baseline with ``MODEL_VARIANT=baseline``), watched and swapped
without a restart. A batch reads the current model once, so its predictions all name one version.

A prediction at or above the model's threshold is a spike: one alert line on the
``cryptovol.alerts`` logger, and ``cryptovol_scorer_spikes_total{product}``. Spikes make episodes,
one alert each through Alertmanager and ``ticks.alerts`` (:mod:`tasks.io.spike_alerts`), fed
once per poll with the predictions acknowledged since. A record that cannot
be scored (not a feature record, a value that is not a number, another feature set than the
model's, anything that raises while it is read) goes to the dead-letter topic
(``ticks.features.dlq``) with the reason in its headers, and is committed with its batch.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tasks.core.episodes import Observation, observation_of
from tasks.core.predictions import (
    FeatureRecord,
    FeatureRecordError,
    feature_array,
    parse_feature_record,
    prediction_record,
)
from tasks.io.consumer_loop import (
    ConsumerLoop,
    LoopStats,
    RecordHandler,
    metrics_server,
    observe_many,
)
from tasks.io.delivery import Outgoing
from tasks.io.kafka import ensure_topics, require_broker
from tasks.io.model_source import ModelSource, ModelSourceMetrics, ServedModel
from tasks.io.spike_alerts import SpikeAlertMetrics, SpikeAlerts
from tasks.settings import Settings

log = logging.getLogger(__name__)
alerts = logging.getLogger("cryptovol.alerts")

DEFAULT_GROUP = "cryptovol-scorer"
PREFIX = "cryptovol_scorer"


@dataclass
class ScoreStats(LoopStats):
    features_in: int = 0  # feature records consumed, malformed ones included
    predictions_out: int = 0  # predictions acknowledged by the broker
    spikes: int = 0  # acknowledged predictions at or above the threshold


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
        self.episodes = SpikeAlertMetrics(PREFIX, r)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class _Scorable:
    msg: Message
    record: FeatureRecord


@dataclass
class _Scored:
    """A batch's predictions out, for when they are acknowledged."""

    predictions: list[dict[str, Any]]
    observations: list[Observation]
    latest_event_ts: float


class FeatureHandler(RecordHandler):
    """The scorer's part of the loop: a feature record read alone (whatever raises makes it a
    dead letter), then the batch scored in one call of the model."""

    bad_input = (FeatureRecordError,)

    def __init__(
        self, settings: Settings, source: ModelSource, stats: ScoreStats, metrics: ScorerMetrics
    ) -> None:
        self.settings = settings
        self.source = source
        self.stats = stats
        self.metrics = metrics
        self._model: ServedModel | None = None
        self._batch: list[_Scorable] = []
        self._scored = _Scored([], [], math.nan)
        self.spike_alerts = SpikeAlerts(settings, metrics.episodes)
        self._acked: list[Observation] = []  # since the last poll

    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Read on from the committed offsets, or from the beginning where there are none (a
        new group, or a broker that restarted without them), as the featurizer does. Nothing
        to rebuild: every batch is committed before the next poll, and a prediction depends on
        its feature record alone."""
        committed = consumer.committed(partitions, timeout=self.settings.kafka_connect_timeout_s)
        start = [
            TopicPartition(
                tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            )
            for tp in committed
        ]
        consumer.assign(start)
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in start])

    def between_polls(self) -> None:
        self.source.refresh_metrics()
        acked, self._acked = self._acked, []
        self.spike_alerts.observe(acked)

    def begin_batch(self, consumer: Any, msgs: list[Message]) -> list[Message]:
        self._model = self.source.current  # one model for the whole batch
        self._batch = []
        self.stats.features_in += len(msgs)
        self.metrics.features_in.inc(len(msgs))
        return msgs

    def handle(self, msg: Message, polled_at: float) -> list[Outgoing]:
        model = self._model
        record = parse_feature_record(msg.value())
        expected = model.predictor.feature_set_version
        if record.feature_set_version != expected:
            raise FeatureRecordError(
                f"feature set {record.feature_set_version}, the model "
                f"(version {model.version}) expects {expected}"
            )
        self._batch.append(_Scorable(msg, record))
        return []

    def end_batch(self, polled_at: float, dead_letter: Any) -> list[Outgoing]:
        """The batch's records scored in one call of the model."""
        batch, self._batch = self._batch, []
        self._scored = scored = _Scored([], [], math.nan)
        if not batch:
            return []
        model = self._model
        try:
            X, _ = feature_array(
                [item.record.features for item in batch], model.predictor.feature_names
            )
            scores = model.predictor.predict_array(X)
        except Exception as exc:  # a model bug must not stop the stream: park the records
            log.exception("scoring failed with %s version %s", model.name, model.version)
            self._count_error("score")
            return [dead_letter(item.msg, f"scoring error: {exc!r}") for item in batch]
        scored_at = _now_iso()
        latency_ms = (time.monotonic() - polled_at) * 1000.0
        label = model.predictor.label
        topic = self.settings.predictions_topic
        outs = []
        for item, score in zip(batch, scores.tolist(), strict=True):
            if not math.isfinite(score):
                self._count_error("score")
                outs.append(dead_letter(item.msg, f"the model gave a non-finite score {score}"))
                continue
            record = item.record
            prediction = prediction_record(record, score, model.stamp, scored_at, latency_ms)
            scored.predictions.append(prediction)
            observed = observation_of(prediction, record.features, label, record.event_ts)
            scored.observations.append(observed)
            scored.latest_event_ts = record.event_ts
            outs.append(Outgoing(topic, record.product_id.encode(), _ENCODER.encode(prediction)))
        return outs

    def batch_context(self) -> _Scored:
        return self._scored

    def batch_delivered(self, context: _Scored, polled_at: float, settled_at: float) -> None:
        """A batch's predictions acknowledged: counted once, each spike alerted."""
        predictions = context.predictions
        if not predictions:
            return
        self._acked += context.observations
        self.stats.predictions_out += len(predictions)
        self.metrics.predictions_out.inc(len(predictions))
        observe_many(self.metrics.latency, settled_at - polled_at, len(predictions))
        self.metrics.event_lag.set(time.time() - context.latest_event_ts)
        spikes: dict[str, int] = {}  # per product
        for prediction in predictions:
            product = prediction["product_id"]
            spikes[product] = spikes.get(product, 0) + prediction["spike"]
            if prediction["spike"]:
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
        for product, count in spikes.items():
            series = self.metrics.spikes.labels(product)  # exists at 0 from the first prediction
            if count:
                series.inc(count)
                self.stats.spikes += count

    def _count_error(self, stage: str) -> None:
        self.stats.errors += 1
        self.metrics.errors.labels(stage).inc()


class Scorer:
    """The scorer's handler in the shared consumer loop; use :func:`run_scorer` unless you need
    the pieces."""

    def __init__(
        self,
        settings: Settings,
        source: ModelSource,
        group: str = DEFAULT_GROUP,
        *,
        batch_size: int = 500,
        poll_timeout_s: float = 0.2,
        metrics: ScorerMetrics | None = None,
        down_timeout_s: float | None = None,
    ) -> None:
        self.metrics = metrics or ScorerMetrics()
        self.stats = ScoreStats()
        self.handler = FeatureHandler(settings, source, self.stats, self.metrics)
        self.loop = ConsumerLoop(
            settings,
            self.handler,
            group=group,
            role="scorer",
            topic=settings.features_topic,
            dlq_topic=settings.features_dlq_topic,
            topics=scorer_topics(settings),
            stats=self.stats,
            metrics=self.metrics,
            batch_size=batch_size,
            poll_timeout_s=poll_timeout_s,
            down_timeout_s=down_timeout_s,
        )

    def run(
        self, stop_event: threading.Event | None = None, max_idle_s: float | None = None
    ) -> ScoreStats:
        """Consume until ``stop_event`` is set or no record came for ``max_idle_s`` seconds."""
        self.loop.run(stop_event, max_idle_s)
        return self.stats

    def close(self) -> None:
        self.loop.close()
        self.handler.spike_alerts.close()


# a prediction's numbers are finite (a non-finite score is a dead letter; the threshold is
# checked at load), so msgspec's writing NaN as null never comes into play
_ENCODER = msgspec.json.Encoder()


def scorer_topics(settings: Settings) -> dict[str, int]:
    """The topics the scorer reads and writes, with their partition counts."""
    return {
        settings.features_topic: settings.raw_partitions,
        settings.predictions_topic: settings.raw_partitions,
        settings.features_dlq_topic: 1,
        settings.alerts_topic: settings.raw_partitions,
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

    Raises :class:`tasks.io.kafka.BrokerUnavailable` without a broker (at the start, or away
    for longer than ``down_timeout_s`` later), and :class:`tasks.io.model_source.NoChampion` or
    :class:`tasks.io.registry.RegistryUnavailable` when there is no model to load. ``options``
    go to :class:`Scorer` (batch size, poll timeout, down timeout).
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
    with metrics_server(settings, metrics.registry, metrics_port):
        source.start()
        scorer = Scorer(settings, source, group, metrics=metrics, **options)
        try:
            return scorer.run(stop_event, max_idle_s)
        finally:
            scorer.close()
            source.stop()
