"""The monitor on replayed streams, end to end: a champion trained on the real recordings, real
recordings and simulated markets replayed through the broker, the featurizer and the scorer, a
real Prometheus and Pushgateway, MLflow on SQLite.

- Live model quality on a replayed real recording equals an offline `cryptovol evaluate` of the
  same model on the same rows.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from monitoring_support import (
    model_store_settings,
    stream_through_pipeline,
    train_champion,
)

from monitoring.live import stream_quality
from tasks import cli
from tasks.core.dataset import feature_frame
from tasks.core.evaluation import threshold_metrics
from tasks.core.features import FeatureEngine
from tasks.core.labels import LabelSpec
from tasks.core.messages import to_tick
from tasks.io import model_store, registry
from tasks.io.recordings import BadLine, read_ticks
from tasks.settings import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.shared_data]

HELD_OUT = ("BTC-USD_20251206_064716.ndjson.gz",)  # replayed, never trained on


def _topics(settings, broker_address: str):
    suffix = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "kafka_bootstrap_servers": broker_address,
            "raw_topic": f"ticks.raw.{suffix}",
            "features_topic": f"ticks.features.{suffix}",
            "predictions_topic": f"ticks.predictions.{suffix}",
            "dlq_topic": f"ticks.raw.dlq.{suffix}",
        }
    )


@pytest.fixture(scope="module")
def champion(shared_recordings, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    settings = model_store_settings(root)
    training = [str(p) for p in shared_recordings if p.name not in HELD_OUT]
    version = train_champion(settings, training)
    return settings, version, root


def test_live_quality_equals_offline_evaluation(
    champion, shared_recordings, broker_address, tmp_path, monkeypatch, capsys
):
    base, version, _root = champion
    settings = _topics(base, broker_address)
    recording = [str(p) for p in shared_recordings if p.name in HELD_OUT]
    stream_through_pipeline(settings, recording, tmp_path)
    model = model_store.load_predictor(registry.model_uri(settings))

    live, notes = stream_quality(settings, model.label, time.time())
    assert live is not None, notes
    figures = live["24h"]  # the whole replay: it spans less than a day

    for key, value in {
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "CRYPTOVOL_DATA_DIR": str(settings.data_dir),
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        capsys.readouterr()
        uri = f"models:/{registry.model_name(settings)}/{version}"
        assert cli.main(["evaluate", "--model-uri", uri, "--data", *recording, "--json"]) == 0
        offline = json.loads(capsys.readouterr().out)
    finally:
        get_settings.cache_clear()

    assert figures["rows"] == offline["rows"] > 500
    assert figures["positives"] == offline["positives"] > 0
    assert figures["pr_auc"] == pytest.approx(offline["pr_auc"], abs=1e-12)
    assert figures["persistence_pr_auc"] == pytest.approx(offline["persistence_pr_auc"], abs=1e-12)
    assert figures["zscore_pr_auc"] == pytest.approx(offline["baseline_pr_auc"], abs=1e-12)
    assert figures["roc_auc"] == pytest.approx(offline["roc_auc"], abs=1e-12)
    assert figures["model_versions"] == [version]

    # precision and recall at the served threshold, offline from the same ticks and model
    ticks = [to_tick(t) for t in read_ticks(map(Path, recording)) if not isinstance(t, BadLine)]
    rows, y = LabelSpec.from_dict(model.label).labelled(feature_frame(ticks, FeatureEngine()))
    at_threshold = threshold_metrics(y, model.predict_proba(rows), model.threshold)
    assert figures["precision"] == pytest.approx(at_threshold["precision"])
    assert figures["recall"] == pytest.approx(at_threshold["recall"])
    assert figures["spike_rate"] == pytest.approx(y.mean())
