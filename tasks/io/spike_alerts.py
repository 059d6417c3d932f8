"""Spike episodes out of the scorer: one alert per episode through Alertmanager's API (so it is
grouped, routed, silenced and inhibited like every alert), and every episode event on the
``ticks.alerts`` topic.

The scorer calls :meth:`SpikeAlerts.observe` once per poll with the predictions acknowledged
since the last (none on an idle poll), so episodes still close when a product (or the whole
feed) goes quiet: a product's stream time runs on from its last event time at the pace of the
wall clock.

An open episode's alert is posted with an end a lease ahead (``LEASE_S``) and posted again
before the lease runs out, as Prometheus does; closing the episode posts it with its end now,
which resolves it. An Alertmanager that does not answer costs one short timeout, then is left
alone for ``RETRY_S``; the posts wait and go out together once it answers again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from tasks.core.episodes import Episode, EpisodeEvent, EpisodeTracker, Observation
from tasks.io.kafka import make_producer
from tasks.settings import Settings

log = logging.getLogger("cryptovol.alerts")

ALERTNAME = "VolatilitySpike"
SCORERS = ("model", "persistence")
ALERTS_SCHEMA_VERSION = 1
LEASE_S = 300.0
REFRESH_S = 60.0
RETRY_S = 30.0
POST_TIMEOUT_S = 2.0


class SpikeAlertMetrics:
    def __init__(self, prefix: str, registry: CollectorRegistry) -> None:
        r = registry
        self.episodes = Counter(
            f"{prefix}_episodes", "Spike episodes opened", ["product", "scorer"], registry=r
        )
        self.outcomes = Counter(
            f"{prefix}_episode_outcomes",
            "Matured spike episodes by outcome (hit or false_alarm)",
            ["product", "scorer", "outcome"],
            registry=r,
        )
        self.open = Gauge(
            f"{prefix}_episodes_open", "Spike episodes open now", ["scorer"], registry=r
        )
        self.post_failures = Counter(
            f"{prefix}_alert_post_failures", "Posts to Alertmanager that failed", registry=r
        )

    def start_at_zero(self, products: Sequence[str]) -> None:
        """Every series at 0 from the start, so rates and dashboards have data before the first
        episode."""
        for scorer in SCORERS:
            self.open.labels(scorer)
            for product in products:
                self.episodes.labels(product, scorer)
                for outcome in ("hit", "false_alarm"):
                    self.outcomes.labels(product, scorer, outcome)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def alert_of(episode: Episode, starts_at: float, ends_at: float) -> dict:
    """Alertmanager's alert for an episode (``/api/v2/alerts``)."""
    volatility = "n/a" if episode.volatility is None else f"{episode.volatility:.5f}"
    return {
        "labels": {
            "alertname": ALERTNAME,
            "severity": "info",
            "system": "cryptovol",
            "product": episode.product_id,
            "episode": episode.episode_id,
        },
        "annotations": {
            "summary": (
                f"Volatility spike predicted for {episode.product_id} at {_iso(episode.opened_at)}:"
                f" probability {episode.score:.3f} >= {episode.threshold:.3f}"
                f" ({episode.model_variant} model version {episode.model_version}),"
                f" 60 s volatility {volatility}"
            ),
            "event_time": _iso(episode.opened_at),
            "probability": f"{episode.score:.4f}",
            "threshold": f"{episode.threshold:.4f}",
            "model_version": episode.model_version,
            "volatility": volatility,
        },
        "startsAt": _iso(starts_at),
        "endsAt": _iso(ends_at),
    }


class SpikeAlerts:
    """The episode trackers of the model and of persistence, and where their episodes go."""

    def __init__(
        self,
        settings: Settings,
        metrics: SpikeAlertMetrics,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.alertmanager = settings.alertmanager_url.rstrip("/")
        self.topic = settings.alerts_topic
        self.producer = make_producer(settings)
        self._flush_timeout_s = settings.kafka_connect_timeout_s
        self.metrics = metrics
        self.trackers = {
            scorer: EpisodeTracker(settings.episode_quiet_s, scorer=scorer) for scorer in SCORERS
        }
        metrics.start_at_zero(settings.products)
        self._wall, self._monotonic = wall, monotonic
        self._last_event: dict[str, tuple[float, float]] = {}  # product: (event time, monotonic)
        self._posted: dict[str, tuple[Episode, float, float]] = {}  # open: (episode, start, post)
        self._outbox: dict[str, dict] = {}  # alerts waiting for Alertmanager, by episode
        self._retry_at = 0.0

    def observe(self, observations: Sequence[Observation]) -> None:
        """One delivered prediction batch (or none: an idle poll)."""
        events: list[EpisodeEvent] = []
        for obs in observations:
            for tracker in self.trackers.values():
                events += tracker.observe(obs)
        now = self._monotonic()
        for obs in observations:
            self._last_event[obs.product_id] = (obs.ts, now)
        for product, (ts, seen) in self._last_event.items():  # a product gone quiet runs on
            for tracker in self.trackers.values():
                events += tracker.advance(product, ts + now - seen)
        for event in events:
            self._handle(event)
        for scorer, tracker in self.trackers.items():
            self.metrics.open.labels(scorer).set(len(tracker.open))
        self._refresh_leases()
        self._send()

    def _handle(self, event: EpisodeEvent) -> None:
        episode = event.episode
        if event.kind == "opened":
            self.metrics.episodes.labels(episode.product_id, episode.scorer).inc()
        elif event.kind == "matured" and episode.outcome is not None:
            self.metrics.outcomes.labels(episode.product_id, episode.scorer, episode.outcome).inc()
        if episode.scorer != "model":
            return
        now = self._wall()
        if event.kind == "opened":
            log.warning(
                "spike episode %s opened: probability %.3f >= %.3f (version %s)",
                episode.episode_id,
                episode.score,
                episode.threshold,
                episode.model_version,
            )
            self._posted[episode.episode_id] = (episode, now, now)
            self._outbox[episode.episode_id] = alert_of(episode, now, now + LEASE_S)
        elif event.kind == "closed":
            _, started, _ = self._posted.pop(episode.episode_id, (episode, now, now))
            log.info("spike episode %s closed", episode.episode_id)
            self._outbox[episode.episode_id] = alert_of(episode, started, now)
        record = {"schema_version": ALERTS_SCHEMA_VERSION, "event": event.kind, **episode.as_dict()}
        self.producer.produce(
            self.topic,
            key=episode.product_id.encode(),
            value=json.dumps(record, separators=(",", ":"), allow_nan=False).encode(),
            on_delivery=_log_failed_delivery,
        )
        self.producer.poll(0)

    def close(self) -> None:
        """Deliver the episode records still in flight (the alerts wait for the next start)."""
        self.producer.flush(self._flush_timeout_s)

    def _refresh_leases(self) -> None:
        now = self._wall()
        for episode_id, (episode, started, posted) in list(self._posted.items()):
            if now - posted >= REFRESH_S:
                self._posted[episode_id] = (episode, started, now)
                self._outbox[episode_id] = alert_of(episode, started, now + LEASE_S)

    def _send(self) -> None:
        if not self._outbox or not self.alertmanager or self._monotonic() < self._retry_at:
            return
        alerts = list(self._outbox.values())
        try:
            response = httpx.post(
                f"{self.alertmanager}/api/v2/alerts", json=alerts, timeout=POST_TIMEOUT_S
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self.metrics.post_failures.inc()
            self._retry_at = self._monotonic() + RETRY_S
            log.warning(
                "Alertmanager at %s: %s (retrying in %g s)", self.alertmanager, exc, RETRY_S
            )
            return
        self._outbox.clear()


def _log_failed_delivery(err, _msg) -> None:
    if err is not None:
        log.warning("spike episode record not delivered: %s", err)
