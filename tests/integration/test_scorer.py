"""The scorer on a real broker and a real MLflow store: every feature record gets one prediction
with its id, scored by the registered champion exactly as the predictor scores it; records that
cannot be scored go to the dead-letter topic with the reason; offsets are committed only after
the predictions are acknowledged, so a restart scores nothing twice; predicted spikes are alerts."""

from __future__ import annotations

import json
import logging
import math
import uuid

import numpy as np
import pytest
from featurize_support import feature_values, read_topic
from prometheus_client import CollectorRegistry

from data_contracts.predictions import PREDICTION_COLUMNS, predictions_frame
from data_contracts.validate import validate_frame
from tasks.core.predictions import feature_array
from tasks.io import model_store, registry
from tasks.io.kafka import ensure_topics, make_producer
from tasks.services.scorer import ScorerMetrics, run_scorer, scorer_topics
from tasks.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def store(sqlite_registry) -> str:
    """The tracking URI of a SQLite store whose champion is a quick HAR model."""
    return sqlite_registry.mlflow_tracking_uri


@pytest.fixture
def settings(broker_address, store, tmp_path) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap_servers=broker_address,
        features_topic=f"ticks.features.{suffix}",
        predictions_topic=f"ticks.predictions.{suffix}",
        features_dlq_topic=f"ticks.features.dlq.{suffix}",
        data_dir=tmp_path / "data",
        mlflow_tracking_uri=store,
    )


def produce(settings: Settings, values: list[tuple[bytes | None, bytes]]) -> None:
    ensure_topics(settings, scorer_topics(settings))
    producer = make_producer(settings)
    for key, value in values:
        producer.produce(settings.features_topic, key=key, value=value)
    assert producer.flush(30) == 0


def test_scores_every_record_once_and_parks_the_rest(settings, tmp_path, caplog):
    good = feature_values(tmp_path)
    first = json.loads(good[0])
    bad = {
        "not JSON": b"{oops",
        "features.ret_std": json.dumps(
            {**first, "features": {**first["features"], "ret_std": "high"}}
        ).encode(),
        "feature set fs0": json.dumps({**first, "feature_set_version": "fs0"}).encode(),
        "record_id": json.dumps({k: v for k, v in first.items() if k != "record_id"}).encode(),
    }
    values = [(b"BTC-USD", v) for v in good] + [(b"BTC-USD", v) for v in bad.values()]
    values.append((b"BTC-USD", good[7]))  # delivered twice: scored twice, one id
    produce(settings, values)

    metrics = ScorerMetrics(CollectorRegistry())
    with caplog.at_level(logging.WARNING, logger="cryptovol.alerts"):
        stats = run_scorer(settings, "scorer-test", max_idle_s=1.5, metrics=metrics)

    assert stats.features_in == len(values)
    assert stats.predictions_out == len(good) + 1 and stats.dlq == len(bad)
    assert stats.errors == 0 and stats.commits >= 1
    expected_count = len(good) + 1
    messages = read_topic(
        settings, settings.predictions_topic, done=lambda m: len(m) > expected_count
    )
    predictions = [json.loads(m.value()) for m in messages]
    assert len(predictions) == len(good) + 1
    ids = [p["record_id"] for p in predictions]
    assert set(ids) == {json.loads(v)["record_id"] for v in good}
    assert ids.count(json.loads(good[7])["record_id"]) == 2
    assert all(list(p) == list(PREDICTION_COLUMNS) for p in predictions)

    # the champion's scores, exactly as its predictor gives them on the same feature values
    client = registry.connect(settings)
    champion = registry.alias_version(client, "volatility-spike", "champion")
    predictor = model_store.load_predictor(f"models:/volatility-spike/{champion}")
    by_id = {json.loads(v)["record_id"]: json.loads(v) for v in good}
    rows = [{**by_id[p["record_id"]]["features"]} for p in predictions]
    X, _ = feature_array(rows, predictor.feature_names)
    expected = predictor.predict_array(X)
    # equal up to the last bit a matrix product may give another batch size (the stream's batches
    # are whatever a poll returned)
    np.testing.assert_allclose([p["score"] for p in predictions], expected, rtol=1e-12, atol=0)
    for p in predictions:
        assert p["spike"] == (p["score"] >= predictor.threshold)
        assert (p["model_name"], p["model_version"], p["model_variant"]) == (
            "volatility-spike",
            champion,
            "ml",
        )
        assert p["ts"] == by_id[p["record_id"]]["ts"] and p["latency_ms"] >= 0
    assert validate_frame("predictions", predictions_frame(predictions)).success

    # one alert line per predicted spike, counted by product
    spikes = sum(p["spike"] for p in predictions)
    assert spikes == stats.spikes
    assert sum("SPIKE" in r.getMessage() for r in caplog.records) == spikes
    r = metrics.registry
    by_product = sum(
        r.get_sample_value("cryptovol_scorer_spikes_total", {"product": product}) or 0
        for product in ("BTC-USD", "ETH-USD")
    )
    assert by_product == spikes
    assert r.get_sample_value("cryptovol_scorer_features_in_total") == len(values)
    assert r.get_sample_value("cryptovol_scorer_predictions_out_total") == len(good) + 1
    assert r.get_sample_value("cryptovol_scorer_dlq_total") == len(bad)
    assert r.get_sample_value("cryptovol_scorer_latency_seconds_count") == len(good) + 1
    assert r.get_sample_value("cryptovol_scorer_event_lag_seconds") > 0
    assert r.get_sample_value("cryptovol_scorer_model_version", {"variant": "ml"}) == float(
        champion
    )
    assert r.get_sample_value("cryptovol_scorer_registry_up", {"variant": "ml"}) == 1.0

    # the dead letters keep their bytes and say why
    letters = read_topic(settings, settings.features_dlq_topic, done=lambda m: len(m) > len(bad))
    reasons = sorted(dict(m.headers())["error"].decode() for m in letters)
    assert len(letters) == len(bad)
    for field in bad:
        assert any(field in reason for reason in reasons), (field, reasons)
    assert {m.value() for m in letters} == set(bad.values())

    # committed after acknowledgement: the same group scores nothing again
    again = run_scorer(settings, "scorer-test", max_idle_s=1.5)
    assert again.features_in == 0 and again.predictions_out == 0


def test_baseline_variant_and_missing_values(settings, tmp_path):
    record = json.loads(feature_values(tmp_path)[0])  # a segment's first tick: mostly null
    assert any(v is None for v in record["features"].values())
    produce(settings, [(b"BTC-USD", json.dumps(record).encode())])
    stats = run_scorer(settings, "scorer-baseline", max_idle_s=1.5, variant="baseline")
    assert stats.predictions_out == 1
    messages = read_topic(settings, settings.predictions_topic, done=len)
    (prediction,) = [json.loads(m.value()) for m in messages]
    assert prediction["model_name"] == "volatility-spike-baseline"
    assert prediction["model_variant"] == "baseline" and math.isfinite(prediction["score"])


def test_a_record_that_breaks_the_parse_step_is_parked_and_never_seen_again(settings, tmp_path):
    good = feature_values(tmp_path)[:50]
    first = json.loads(good[0])
    poison = {
        "deep": b'{"features":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "400 digits": json.dumps(
            {**first, "features": {**first["features"], "ret_std": 10**400}}
        ).encode(),
    }
    values = [(b"BTC-USD", v) for v in good[:20]]
    values += [(b"BTC-USD", v) for v in poison.values()]
    values += [(b"BTC-USD", v) for v in good[20:]]
    produce(settings, values)

    # before: the parse step raised out of the scorer, the offset was never committed, and every
    # restart crashed on the same record
    stats = run_scorer(settings, "scorer-poison", max_idle_s=1.5, batch_size=10)
    assert stats.features_in == len(values)
    assert stats.predictions_out == len(good) and stats.dlq == len(poison)
    letters = read_topic(settings, settings.features_dlq_topic, done=lambda m: len(m) >= 2)
    assert {m.value() for m in letters} == set(poison.values())
    for m in letters:
        assert dict(m.headers())["error"]  # the reason, whatever the parse step called it
    again = run_scorer(settings, "scorer-poison", max_idle_s=1.5)
    assert again.features_in == 0 and again.dlq == 0
