"""The embedded broker killed and started again under replay and featurize.

The broker keeps everything in memory, so the restarted one has lost its topics, its records and
the group's offsets. What the components promise (docs/reliability.md): every record is either
delivered after the restart or reported undelivered (replay also reports how many the lost
broker had acknowledged), and both commands resume, or stop with a clear error, within a bounded
time. Before, the idempotent producers kept failing forever against the new broker.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from featurize_support import (
    feature_values,
    featurize_env,
    raw_ticks,
    read_topic,
    write_recording,
)

from tasks.core.messages import RawTick
from tasks.io.broker import free_port, port_open, start_broker, stop_broker
from tasks.io.kafka import BrokerUnavailable, ensure_topics, make_producer
from tasks.io.publisher import open_publisher
from tasks.services.featurizer import Featurizer
from tasks.services.scorer import run_scorer, scorer_topics
from tasks.settings import Settings

pytestmark = pytest.mark.integration

CRYPTOVOL = Path(sys.executable).with_name("cryptovol")


def _settings(port: int, tmp_path: Path) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        raw_topic=f"ticks.raw.{suffix}",
        features_topic=f"ticks.features.{suffix}",
        predictions_topic=f"ticks.predictions.{suffix}",
        dlq_topic=f"ticks.raw.dlq.{suffix}",
        features_dlq_topic=f"ticks.features.dlq.{suffix}",
        data_dir=tmp_path / "data",
    )


def _restart(broker: subprocess.Popen, port: int, log: Path, down_s: float) -> subprocess.Popen:
    broker.kill()  # SIGKILL: memory lost, nothing flushed
    broker.wait()
    time.sleep(down_s)
    return start_broker("127.0.0.1", port, log_path=log)


def _tick(seq: int) -> RawTick:
    ts = f"2026-01-01T00:{seq // 60:02d}:{seq % 60:02d}.000000Z"
    ticker = {"product_id": "BTC-USD", "price": "100", "best_bid": "99", "best_ask": "101"}
    return RawTick("BTC-USD", ts, seq, ts, "conn-1", "update", 0, ticker)


def test_a_publisher_sends_again_what_a_restarted_broker_had_not_acknowledged(tmp_path):
    """The capture and replay path, in process: new producer, topics created again."""
    port = free_port()
    log = tmp_path / "broker.log"
    broker = start_broker("127.0.0.1", port, log_path=log)
    settings = _settings(port, tmp_path)
    try:
        ensure_topics(settings)
        publisher = open_publisher(settings)
        for seq in range(50):
            publisher.publish(_tick(seq))
        assert publisher.flush(10) == 0
        broker = _restart(broker, port, log, down_s=0.5)
        for seq in range(50, 100):
            publisher.publish(_tick(seq))
        started = time.monotonic()
        assert publisher.flush(30) == 0  # before: every one of them timed out, again and again
        assert time.monotonic() - started < 20
        stats = publisher.stats
        assert stats.broker_restarts == 1 and stats.acked_before_restart == 50
        assert stats.delivered == 100
        on_new = read_topic(settings, settings.raw_topic, done=lambda m: len(m) >= 50)
        assert sorted(RawTick.from_bytes(m.value()).sequence_num for m in on_new) == list(
            range(50, 100)
        )
        # the topics came back with their partitions, not with the broker's defaults
        assert len(read_partitions(settings)) == settings.raw_partitions
    finally:
        stop_broker(broker)


def read_partitions(settings: Settings) -> dict:
    from tasks.io.kafka import require_broker

    topics = require_broker(settings).list_topics(timeout=5).topics
    return topics[settings.raw_topic].partitions


def test_a_featurizer_whose_broker_stays_away_stops_with_a_clear_error(tmp_path):
    port = free_port()
    broker = start_broker("127.0.0.1", port, log_path=tmp_path / "broker.log")
    settings = _settings(port, tmp_path)
    try:
        ensure_topics(settings)
        featurizer = Featurizer(settings, "g-away", down_timeout_s=3)
        outcome: dict = {}

        def run() -> None:
            try:
                featurizer.run(max_idle_s=60)
            except BrokerUnavailable as exc:
                outcome["error"] = str(exc)

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(2)
        broker.kill()
        broker.wait()
        thread.join(30)
        assert not thread.is_alive(), "the featurizer kept waiting for a broker that is gone"
        assert "has not answered" in outcome["error"] and f":{port}" in outcome["error"]
        started = time.monotonic()
        featurizer.close()  # as run_featurizer does on its way out: bounded too
        assert time.monotonic() - started < 15
    finally:
        stop_broker(broker)


@pytest.mark.slow
def test_replay_and_featurize_survive_a_broker_restart(tmp_path):
    port = free_port()
    log = tmp_path / "broker.log"
    broker = start_broker("127.0.0.1", port, log_path=log)
    settings = _settings(port, tmp_path)
    recording = write_recording(tmp_path / "sim.ndjson.gz", ticks=4000, seconds=600, seed=5)
    everything = {t.record_id for t in raw_ticks([recording])}
    env = featurize_env(settings)
    featurize = replay = None
    try:
        ensure_topics(settings)
        featurize = subprocess.Popen(
            [str(CRYPTOVOL), "featurize", "--group", "g-restart", "--metrics-port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "featurize.log").open("wb"),
            text=True,
        )
        replay = subprocess.Popen(  # 600 s of ticks at 40x: about 15 s
            [str(CRYPTOVOL), "replay", str(recording), "--speed", "40"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "replay.log").open("wb"),
            text=True,
        )
        time.sleep(6)
        assert replay.poll() is None, "the replay ended before the broker went away"
        broker = _restart(broker, port, log, down_s=2.0)
        restarted = time.monotonic()

        out, _ = replay.communicate(timeout=120)
        replayed = json.loads(out)
        assert replay.returncode == 0, (tmp_path / "replay.log").read_text()[-3000:]
        assert time.monotonic() - restarted < 60  # resumed within a bounded time
        assert replayed["broker_restarts"] == 1 and replayed["undelivered"] == 0
        raw_after = {
            RawTick.from_bytes(m.value()).record_id
            for m in read_topic(settings, settings.raw_topic, quiet_s=3)
        }
        assert raw_after <= everything
        # each record is on the new broker, or was acknowledged by the old one (and lost with
        # it, counted), or reported undelivered: none is lost silently
        assert len(everything - raw_after) == replayed["acked_before_restart"]
        assert 0 < replayed["acked_before_restart"] < len(everything)

        # the featurizer rejoined the new broker and featurized everything that reached it
        features = read_topic(settings, settings.features_topic, quiet_s=5)
        featured = {json.loads(m.value())["record_id"] for m in features}
        dead = read_topic(settings, settings.dlq_topic, quiet_s=1)
        assert not dead
        assert raw_after <= featured
        featurize.send_signal(signal.SIGINT)
        out, _ = featurize.communicate(timeout=60)
        stats = json.loads(out.strip().splitlines()[-1])
        assert featurize.returncode == 0
        assert stats["broker_restarts"] >= 1
    finally:
        for proc in (replay, featurize):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
        stop_broker(broker)
        assert not port_open("127.0.0.1", port)


def _produce_features(settings: Settings, values: list[bytes]) -> None:
    producer = make_producer(settings)
    for value in values:
        producer.produce(settings.features_topic, key=b"BTC-USD", value=value)
    assert producer.flush(30) == 0


def _wait_for_topics(settings: Settings, names: set[str], timeout_s: float) -> bool:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers, "log_level": 2})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if names <= set(admin.list_topics(timeout=1).topics):
                return True
        except KafkaException:
            pass
        time.sleep(0.5)
    return False


class _ScorerThread(threading.Thread):
    """``run_scorer`` in a thread, keeping what it returned or raised."""

    def __init__(self, settings: Settings, group: str, **options) -> None:
        super().__init__()
        self.stop = threading.Event()
        self.args = (settings, group)
        self.options = options
        self.stats = self.error = None

    def run(self) -> None:
        try:
            self.stats = run_scorer(*self.args, stop_event=self.stop, **self.options)
        except BrokerUnavailable as exc:
            self.error = exc


@pytest.mark.slow
def test_the_scorer_survives_a_broker_restart(tmp_path, sqlite_registry):
    port = free_port()
    log = tmp_path / "broker.log"
    broker = start_broker("127.0.0.1", port, log_path=log)
    settings = _settings(port, tmp_path).model_copy(
        update={"mlflow_tracking_uri": sqlite_registry.mlflow_tracking_uri}
    )
    values = feature_values(tmp_path)
    before, after = values[:30], values[30:50]
    scorer = None
    try:
        ensure_topics(settings, scorer_topics(settings))
        _produce_features(settings, before)
        scorer = _ScorerThread(settings, "g-scorer-restart", batch_size=10)
        scorer.start()
        scored = read_topic(
            settings, settings.predictions_topic, done=lambda m: len(m) >= 30, quiet_s=60
        )
        assert len(scored) == 30
        broker = _restart(broker, port, log, down_s=2.0)

        # before: the scorer died on a fatal idempotent-producer error or retried forever, and
        # never created its topics again (the dead-letter topic included)
        assert _wait_for_topics(settings, set(scorer_topics(settings)), timeout_s=60)
        # a stream going on, record by record (a single batched produce right after the restart
        # was, in about one run of two, never fetched by the rejoined consumer: the embedded
        # broker's offsets after a batched produce are wrong, docs/reliability.md)
        for value in [*after, b"{not a feature record"]:
            _produce_features(settings, [value])
        predictions = read_topic(
            settings, settings.predictions_topic, done=lambda m: len(m) >= 20, quiet_s=30
        )
        assert sorted(json.loads(m.value())["record_id"] for m in predictions) == sorted(
            json.loads(v)["record_id"] for v in after
        ), scorer.stats
        (letter,) = read_topic(settings, settings.features_dlq_topic, done=len, quiet_s=30)
        assert letter.value() == b"{not a feature record"
        scorer.stop.set()
        scorer.join(30)
        assert not scorer.is_alive() and scorer.error is None
        assert scorer.stats.broker_restarts == 1
        assert scorer.stats.predictions_out == len(before) + len(after)
    finally:
        if scorer is not None:
            scorer.stop.set()
            scorer.join(30)
        stop_broker(broker)


def test_a_scorer_whose_broker_stays_away_stops_with_a_clear_error(tmp_path, sqlite_registry):
    port = free_port()
    broker = start_broker("127.0.0.1", port, log_path=tmp_path / "broker.log")
    settings = _settings(port, tmp_path).model_copy(
        update={"mlflow_tracking_uri": sqlite_registry.mlflow_tracking_uri}
    )
    scorer = _ScorerThread(settings, "g-scorer-away", down_timeout_s=3)
    try:
        scorer.start()
        time.sleep(2)
        broker.kill()
        broker.wait()
        scorer.join(40)
        assert not scorer.is_alive(), "the scorer kept waiting for a broker that is gone"
        assert "has not answered" in str(scorer.error) and f":{port}" in str(scorer.error)
    finally:
        scorer.stop.set()
        scorer.join(30)
        stop_broker(broker)
