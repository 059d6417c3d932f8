"""Spike alerts end to end: a simulated wild market replayed through the real broker, the
featurizer and the scorer (with the registered champion) into a real Alertmanager running the
shipped configuration, which delivers to the local inbox receiver.

- every spike episode on ``ticks.alerts`` is one notification, resolved once the episode closes,
  and the episodes are the ones the same tracker finds in ``ticks.predictions`` afterwards;
- a silence created through Alertmanager's API holds (one product silenced, the other notified);
- a dead feed's downstream alerts are inhibited (NoTicks holds back StreamLagHigh and the
  freshness burn; an alert it does not cause still goes out).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from monitoring_support import SPIKY_MARKET, require_monitoring_tools, wait_until

from monitoring.alerting import inbox_server, read_inbox, render_config
from monitoring.servers import ToolMissing, binary, start_alertmanager
from tasks.core.episodes import episodes_of, observation_of
from tasks.io.broker import free_port
from tasks.io.streams import iter_window
from tasks.sim.writer import write_recordings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

QUIET_S = 30.0  # event seconds without a flagged prediction that close an episode
SPEED = 5.0  # replay speed: an episode lasts at least QUIET_S / SPEED = 6 s of wall time


def _notifications(path, alertname):
    return [n for n in read_inbox(path) if n["commonLabels"].get("alertname") == alertname]


def _post_alerts(url, alerts):
    now = datetime.now(UTC)
    body = [
        {
            "labels": {"system": "cryptovol", **labels},
            "annotations": {"summary": labels["alertname"]},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=10)).isoformat(),
        }
        for labels in alerts
    ]
    httpx.post(f"{url}/api/v2/alerts", json=body, timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def alerting(tmp_path_factory):
    """The local inbox (in this process), and Alertmanager with the shipped routes sending to it."""
    require_monitoring_tools()
    try:
        binary("prometheus-alertmanager")
    except ToolMissing as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("alerting")
    inbox_path = root / "inbox.jsonl"
    server = inbox_server(inbox_path, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from tasks.settings import Settings

    config = render_config(
        Settings(), root / "alertmanager.yml", inbox=f"http://127.0.0.1:{server.server_port}/"
    )
    port = free_port()
    manager = start_alertmanager(config, port, root / "state", root / "alertmanager.log")
    try:
        yield f"http://127.0.0.1:{port}", inbox_path
    finally:
        manager.stop()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def wild_replay(alerting, sqlite_registry, broker_address, tmp_path_factory):
    """The spiky market through featurizer and scorer, with ETH-USD silenced beforehand."""
    from tasks.services.featurizer import run_featurizer
    from tasks.services.replay import run_replay
    from tasks.services.scorer import run_scorer

    url, inbox_path = alerting
    root = tmp_path_factory.mktemp("wild-alerts")
    write_recordings(
        root / "wild", ("BTC-USD", "ETH-USD"), seed=21, minutes=10, params=SPIKY_MARKET
    )
    suffix = uuid.uuid4().hex[:8]
    settings = sqlite_registry.model_copy(
        update={
            "kafka_bootstrap_servers": broker_address,
            "raw_topic": f"ticks.raw.{suffix}",
            "features_topic": f"ticks.features.{suffix}",
            "predictions_topic": f"ticks.predictions.{suffix}",
            "alerts_topic": f"ticks.alerts.{suffix}",
            "dlq_topic": f"ticks.raw.dlq.{suffix}",
            "features_dlq_topic": f"ticks.features.dlq.{suffix}",
            "alertmanager_url": url,
            "episode_quiet_s": QUIET_S,
            "pushgateway_url": "",
        }
    )
    now = datetime.now(UTC)
    silence = httpx.post(
        f"{url}/api/v2/silences",
        json={
            "matchers": [
                {"name": "alertname", "value": "VolatilitySpike", "isRegex": False},
                {"name": "product", "value": "ETH-USD", "isRegex": False},
            ],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "test",
            "comment": "ETH-USD maintenance",
        },
        timeout=10,
    )
    silence.raise_for_status()
    stop = threading.Event()
    workers = [
        threading.Thread(target=run_featurizer, args=(settings, f"f-{suffix}", stop)),
        threading.Thread(target=run_scorer, args=(settings, f"s-{suffix}", stop)),
    ]
    for worker in workers:
        worker.start()
    try:
        run_replay(settings, [root / "wild"], speed=SPEED)

        def all_resolved():
            records = _records(settings)
            opened = {r["episode_id"] for r in records if r["event"] == "opened"}
            closed = {r["episode_id"] for r in records if r["event"] == "closed"}
            resolved = {
                n["groupLabels"]["episode"]
                for n in _notifications(inbox_path, "VolatilitySpike")
                if n["status"] == "resolved"
            }
            btc = {e for e in opened if e.startswith("BTC-USD/")}
            return opened and opened == closed and btc <= resolved

        assert wait_until(all_resolved, timeout=QUIET_S + 90, step=1.0), "episodes did not close"
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
    return settings, inbox_path


def _records(settings, topic=None):
    return [json.loads(v) for v in iter_window(settings, topic or settings.alerts_topic, 0.0)]


def test_one_notification_per_spike_episode_resolved_when_it_closes(wild_replay):
    settings, inbox_path = wild_replay
    records = _records(settings)
    opened = [r for r in records if r["event"] == "opened"]
    btc = {r["episode_id"] for r in opened if r["product_id"] == "BTC-USD"}
    assert len(btc) >= 2, f"the market gave {len(btc)} BTC-USD episodes"
    by_episode: dict[str, list[str]] = {}
    for notification in _notifications(inbox_path, "VolatilitySpike"):
        (alert,) = notification["alerts"]
        by_episode.setdefault(alert["labels"]["episode"], []).append(notification["status"])
    assert set(by_episode) == btc
    assert all(statuses == ["firing", "resolved"] for statuses in by_episode.values()), by_episode
    first = next(r for r in opened if r["product_id"] == "BTC-USD")
    assert first["score"] >= first["threshold"] and first["model_version"] == "1"


def test_the_scorer_s_episodes_are_the_tracker_s_on_the_recorded_predictions(wild_replay):
    settings, _ = wild_replay
    features = {r["record_id"]: r["features"] for r in _records(settings, settings.features_topic)}
    from tasks.io.model_source import ModelSource

    source = ModelSource(settings)
    source.load()
    label = source.current.predictor.label
    predictions = {r["record_id"]: r for r in _records(settings, settings.predictions_topic)}
    observations = [observation_of(p, features[i], label) for i, p in predictions.items()]
    offline = {e.episode_id for e in episodes_of(observations, QUIET_S)}
    streamed = {r["episode_id"] for r in _records(settings) if r["event"] == "opened"}
    assert streamed == offline


def test_a_silence_created_through_the_api_holds(wild_replay):
    settings, inbox_path = wild_replay
    eth = {
        r["episode_id"]
        for r in _records(settings)
        if r["event"] == "opened" and r["product_id"] == "ETH-USD"
    }
    assert eth, "no ETH-USD episode to silence"
    notified = {n["groupLabels"]["episode"] for n in _notifications(inbox_path, "VolatilitySpike")}
    assert not eth & notified


def test_a_dead_feed_inhibits_the_alerts_it_causes_downstream(alerting):
    url, inbox_path = alerting
    _post_alerts(
        url,
        [
            {"alertname": "NoTicks", "severity": "critical", "instance": "capture:9101"},
            {"alertname": "StreamLagHigh", "severity": "warning", "needs_feed": "true"},
            {
                "alertname": "ErrorBudgetBurnFast",
                "severity": "critical",
                "burn": "fast",
                "slo": "prediction_freshness",
                "needs_feed": "true",
            },
            {"alertname": "SequenceGaps", "severity": "warning", "instance": "capture:9101"},
        ],
    )

    def delivered():
        names = {n["commonLabels"]["alertname"] for n in read_inbox(inbox_path)}
        return {"NoTicks", "SequenceGaps"} <= names and names

    names = wait_until(delivered, timeout=90, step=1.0)  # the warning route waits 30 s
    assert names and {"NoTicks", "SequenceGaps"} <= names
    assert not names & {"StreamLagHigh", "ErrorBudgetBurnFast"}
    state = {
        a["labels"]["alertname"]: a["status"]
        for a in httpx.get(f"{url}/api/v2/alerts", timeout=10).json()
    }
    for downstream in ("StreamLagHigh", "ErrorBudgetBurnFast"):
        assert state[downstream]["state"] == "suppressed"
        assert state[downstream]["inhibitedBy"], downstream
