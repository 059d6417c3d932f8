"""A real recording through the whole stream, as the user runs it: ``cryptovol replay`` onto the
broker, ``cryptovol featurize``, ``cryptovol score`` (all subprocesses), with the champion of a
real MLflow server. Every feature record gets exactly one prediction (repeats by id aside), and
the BentoML service scores the same feature rows to the same values."""

from __future__ import annotations

import json
import subprocess
import uuid

import httpx
import numpy as np
import pytest
from featurize_support import featurize_env, read_topic
from serving_support import tool

from tasks.settings import Settings
from tasks.stack.servers import PROJECT_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.shared_data]


def run(args: list[str], env: dict, log_path, timeout: float = 300) -> dict:
    with log_path.open("ab") as log:
        proc = subprocess.run(
            [tool("cryptovol"), *args],
            env=env,
            cwd=PROJECT_DIR,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            timeout=timeout,
        )
    assert proc.returncode == 0, (
        f"{args[0]} exited {proc.returncode}: {log_path.read_text()[-2000:]}"
    )
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def test_replayed_recording_is_scored_once_per_feature_record(
    shared_recordings, broker_address, serving_stack, bento, tmp_path
):
    # Two consecutive files of one session (3,694 ticks), 31 s apart.
    files = [
        str(p)
        for p in shared_recordings
        if p.name.startswith(("BTC-USD_20251206_0131", "BTC-USD_20251206_0136"))
    ]
    assert len(files) == 2
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap_servers=broker_address,
        raw_topic=f"ticks.raw.{suffix}",
        features_topic=f"ticks.features.{suffix}",
        predictions_topic=f"ticks.predictions.{suffix}",
        dlq_topic=f"ticks.raw.dlq.{suffix}",
        data_dir=tmp_path / "data",
    )
    env = {
        **featurize_env(settings),
        "CRYPTOVOL_FEATURES_DLQ_TOPIC": f"ticks.features.dlq.{suffix}",
        "MLFLOW_TRACKING_URI": serving_stack.registry.url,
    }
    log = tmp_path / "stream.log"
    replayed = run(["replay", *files, "--speed", "max"], env, log)
    assert replayed["undelivered"] == 0 and replayed["tickers"] == 3694
    featurized = run(
        ["featurize", "--group", f"f-{suffix}", "--metrics-port", "0", "--max-idle-seconds", "3"],
        env,
        log,
    )
    scored = run(
        ["score", "--group", f"s-{suffix}", "--metrics-port", "0", "--max-idle-seconds", "3"],
        env,
        log,
    )
    assert featurized["features_out"] > 3600
    assert scored["features_in"] == featurized["features_out"]
    assert scored["dlq"] == scored["errors"] == 0

    features = [
        json.loads(m.value())
        for m in read_topic(
            settings,
            settings.features_topic,
            done=lambda m: len(m) >= featurized["features_out"],
        )
    ]
    predictions = [
        json.loads(m.value())
        for m in read_topic(
            settings,
            settings.predictions_topic,
            done=lambda m: len(m) >= scored["predictions_out"],
        )
    ]
    feature_ids = {f["record_id"] for f in features}
    by_id: dict[str, list[dict]] = {}
    for p in predictions:
        by_id.setdefault(p["record_id"], []).append(p)
    assert set(by_id) == feature_ids, "every feature record gets a prediction, and only those"
    for repeats in by_id.values():  # a repeat (at-least-once) is the same prediction
        assert len({(p["score"], p["model_version"]) for p in repeats}) == 1

    # the service scores the same rows to the same values, with the same model version
    first = {}
    for f in features:
        first.setdefault(f["record_id"], f)
    rows = [first[i]["features"] for i in sorted(first)]
    served_scores, versions = [], set()
    with httpx.Client(base_url=bento.url, timeout=60) as client:
        for start in range(0, len(rows), 1000):
            body = client.post("/predict", json={"rows": rows[start : start + 1000]}).json()
            served_scores += body["scores"]
            versions.add(body["version"])
    stream_scores = [by_id[i][0]["score"] for i in sorted(first)]
    assert versions == {p["model_version"] for p in predictions}
    # the same model and code; only the batches differ (up to 500 records per poll in the
    # stream, 1,000 rows per request here), and a matrix product's last bit can depend on that
    np.testing.assert_allclose(served_scores, stream_scores, rtol=1e-12, atol=0)
