"""Drift checks on a real MLflow store: the reference stored with the model, Evidently's report
read by name, the report folder, MLflow, the Pushgateway, the commands, and the stream path."""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from monitoring_support import (
    WILD_MARKET,
    model_store_settings,
    require_monitoring_tools,
    settings_env,
    start_cli,
    train_champion,
    wait_until,
)

from monitoring import drift, report_store
from monitoring.check import current_from_stream, run_check
from monitoring.servers import start_pushgateway
from tasks import cli
from tasks.core.dataset import feature_frame
from tasks.core.features import FEATURE_NAMES, FeatureEngine
from tasks.core.messages import to_tick
from tasks.io import registry
from tasks.io.broker import free_port
from tasks.io.kafka import ensure_topics, make_producer
from tasks.io.recordings import BadLine, read_ticks
from tasks.io.reference import REFERENCE_ROWS, load_reference, resolve_model
from tasks.settings import get_settings
from tasks.sim.writer import write_recordings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A champion trained on 90 simulated minutes, and two more hours to judge: one like the
    training data (another seed) and one of a wild market."""
    root = tmp_path_factory.mktemp("drift")
    data = {}
    for name, seed, params in (("train", 3, None), ("like", 4, None), ("wild", 5, WILD_MARKET)):
        minutes = 90 if name == "train" else 40
        write_recordings(root / name, ("BTC-USD",), seed=seed, minutes=minutes, params=params)
        data[name] = str(root / name)
    settings = model_store_settings(root)
    version = train_champion(settings, [data["train"]])
    return settings, data, version


def test_the_training_sample_is_stored_with_the_version(store):
    settings, _data, version = store
    model = resolve_model(settings, registry.model_uri(settings))
    assert model.version == version
    sample = load_reference(settings, model)
    assert 0 < len(sample) <= REFERENCE_ROWS
    assert set(FEATURE_NAMES) <= set(sample.columns)
    tags = registry.version_tags(registry.connect(settings), model.name, version)
    assert sample["ts"].max() <= pd.Timestamp(tags["train_end"])  # never the held-out part
    assert sample["ts"].is_monotonic_increasing


def test_a_wild_market_drifts_and_data_like_training_does_not(store):
    settings, data, version = store
    wild = run_check(settings, current=[data["wild"]], live=False, push=False)
    like = run_check(settings, current=[data["like"]], live=False, push=False)
    assert wild.entry["drift"]["share"] > settings.drift_share_limit
    assert wild.entry["drift"]["prediction"]["drifted"]  # the scores moved too
    assert like.entry["drift"]["share"] < settings.drift_share_limit
    assert wild.entry["model"]["version"] == like.entry["model"]["version"] == version

    folder = report_store.drift_dir(settings.reports_dir)
    history = report_store.read_history(folder)
    assert [e["report"] for e in history][-2:] == [wild.report.name, like.report.name]
    index = (folder / "index.html").read_text()
    assert index.index(like.report.name) < index.index(wild.report.name)  # newest first
    page = wild.report.read_text()
    assert "Drift report" in page and f"version {version}" in page
    assert '<script src="evidently-' in page  # the viewer is shared, not inlined
    assert len(page) < 6_000_000

    client = registry.connect(settings)
    run = client.get_run(wild.entry["mlflow_run_id"])
    assert run.data.tags["stage"] == "monitor"
    assert run.data.tags["model_version"] == version
    assert run.data.metrics["drift_share"] == pytest.approx(wild.entry["drift"]["share"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
    assert f"drift/{wild.report.name}" in artifacts
    tags = registry.version_tags(client, registry.model_name(settings), version)
    assert tags["monitor.last_run_id"] == like.entry["mlflow_run_id"]


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    """A partitioned store of 40 minutes of two products across a midnight: four partitions."""
    from tasks.sim.simulator import DEFAULT_START
    from tasks.stages.backfill import backfill

    root = tmp_path_factory.mktemp("two-days")
    write_recordings(
        root / "raw", ("BTC-USD", "ETH-USD"), seed=6, start=DEFAULT_START - 1200, minutes=40
    )
    backfill([root / "raw"], root / "features")
    return str(root / "features")


SAME_CHECK = ("current", "reference", "drift", "notes", "model")  # what a rerun must repeat


@pytest.mark.slow  # a local Dask cluster of two worker processes
def test_a_check_read_by_partition_on_dask_gives_the_same_report(store, two_days, monkeypatch):
    """The current data set read day by day on Dask workers, sampled where it is read, gives
    the check a one-process read gives: the same sample, figures and spans."""
    from distributed import get_task_stream

    from monitoring import check
    from tasks.io.dask_cluster import dask_client, run_on

    settings, _data, version = store
    monkeypatch.setattr(check, "CURRENT_ROWS", 1000)  # a sample drawn across every partition
    local = run_check(settings, current=[two_days], live=False, push=False, log_to_mlflow=False)
    with dask_client(workers=2) as client, get_task_stream(client) as stream:
        on_dask = run_check(
            settings,
            current=[two_days],
            live=False,
            push=False,
            log_to_mlflow=False,
            run_all=run_on(client),
        )
    read_on_workers = [t for t in stream.data if t["key"].startswith("read_day")]
    assert len(read_on_workers) == 4
    assert local.entry["current"]["rows"] > 1000
    assert "a sample of 1000" in " ".join(local.entry["notes"])
    for key in SAME_CHECK:
        assert on_dask.entry[key] == local.entry[key], key
    assert on_dask.entry["model"]["version"] == version


@pytest.mark.slow  # two flow runs on the session's Prefect server, one on a Dask task runner
def test_the_monitor_flow_reads_by_partition_as_tasks_on_dask(
    store, two_days, prefect_server, monkeypatch
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
    from session_services import prefect_api

    from flows.monitor import monitor
    from tasks.settings import get_settings

    settings, _data, _version = store
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        with prefect_api(prefect_server):
            local = monitor(current=[two_days], retrain=False)
            on_dask = monitor(current=[two_days], retrain=False, workers=2)
    finally:
        get_settings.cache_clear()
    for key in SAME_CHECK:
        assert on_dask[key] == local[key], key

    async def day_reads() -> int:
        async with get_client() as client:
            runs = await client.read_task_runs(
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="read-day"))
            )
        return len(runs)

    with prefect_api(prefect_server):
        assert asyncio.run(day_reads()) == 4  # the four days, as Prefect tasks (none in process)


def test_figures_are_read_by_name_and_checked():
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(rng.normal(size=(2000, 3)), columns=["a", "b", "c"])
    cur = pd.DataFrame(rng.normal(size=(1500, 3)), columns=["a", "b", "c"])
    cur["b"] += 2.0  # two standard deviations away
    cur["c"] = np.nan  # nothing to test on one side
    ref["score"], cur["score"] = rng.uniform(size=2000), rng.uniform(size=1500)
    figures = drift.snapshot_figures(drift.run_report(ref, cur, ["a", "b", "c"]))
    summary = drift.summarize(figures, ["a", "b", "c"])
    assert [f.feature for f in summary.features] == ["a", "b"]
    assert summary.drifted_features() == ["b"] and summary.share == 0.5
    assert summary.prediction is not None and not summary.prediction.drifted
    assert any("c: not tested" in n for n in summary.notes)

    shuffled = dict(
        figures, metrics=random.Random(1).sample(figures["metrics"], k=len(figures["metrics"]))
    )
    assert drift.summarize(shuffled, ["a", "b", "c"]) == summary
    count = next(
        m for m in figures["metrics"] if m["config"]["type"].endswith("DriftedColumnsCount")
    )
    count["value"]["count"] = 2.0
    with pytest.raises(drift.DriftReportError, match="Evidently counts 2"):
        drift.summarize(figures, ["a", "b", "c"])


def test_figures_reach_a_real_pushgateway(store, tmp_path):
    require_monitoring_tools()
    settings, data, version = store
    gateway = start_pushgateway(free_port(), tmp_path / "pushgateway.log")
    try:
        pushed = settings.model_copy(update={"pushgateway_url": gateway.url})
        result = run_check(pushed, current=[data["like"]], live=False, log_to_mlflow=False)
        assert result.entry["pushed"]
        text = urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5).read().decode()
    finally:
        gateway.stop()
    lines = [line for line in text.splitlines() if line.startswith("cryptovol_")]
    share = next(line for line in lines if line.startswith("cryptovol_drift_share{"))
    assert 'job="cryptovol_monitor"' in share
    assert float(share.split()[-1]) == pytest.approx(result.entry["drift"]["share"])
    scored = sum(line.startswith("cryptovol_drift_feature_score{") for line in lines)
    assert scored == len(FEATURE_NAMES)
    assert any(
        line.startswith("cryptovol_drift_model_version") and line.endswith(f" {version}")
        for line in lines
    )


def test_drift_and_reports_commands(store, tmp_path, monkeypatch, capsys):
    settings, data, _version = store
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CRYPTOVOL_PUSHGATEWAY_URL", "")
    get_settings.cache_clear()
    try:
        assert cli.main(["drift", "--current", data["like"], "--no-push", "--no-live"]) == 0
        out = capsys.readouterr().out
        assert "drift share" in out and "report: " in out
        assert (
            cli.main(["drift", "--current", data["like"], "--model-uri", "models:/nope@champion"])
            == 2  # a usage error: the URI names no model
        )
        assert "nope has no alias" in capsys.readouterr().err
        assert cli.main(["reports", "--print"]) == 0
        index = capsys.readouterr().out.strip()
        assert index.endswith("drift/index.html")
    finally:
        get_settings.cache_clear()

    port = free_port()
    server = start_cli(
        "reports", ["reports", "--port", str(port)], settings_env(settings), tmp_path
    )
    try:

        def fetch():
            try:
                return (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/drift/index.html", timeout=2)
                    .read()
                    .decode()
                )
            except OSError:
                return None

        page = wait_until(fetch, 20)
    finally:
        server.stop()
    assert page is not None and "cryptovol drift reports" in page


def test_the_stream_window_is_the_training_grid(broker_address, kafka_settings, tmp_path):
    """``--minutes`` reads ticks.features back and puts it on the label grid: the very rows and
    values a backfill of the same ticks gives, duplicates and malformed records aside."""
    write_recordings(tmp_path / "rec", ("BTC-USD", "ETH-USD"), seed=8, minutes=6)
    ticks = [
        to_tick(t)
        for t in read_ticks(sorted((tmp_path / "rec").glob("*.ndjson.gz")))
        if not isinstance(t, BadLine)
    ]
    engine = FeatureEngine()
    records = [row.to_record() for row in map(engine.process, ticks) if row is not None]
    settings = kafka_settings
    ensure_topics(settings)
    producer = make_producer(settings)
    for record in [*records, records[5]]:  # one delivered twice
        producer.produce(
            settings.features_topic,
            key=record["product_id"].encode(),
            value=json.dumps(record).encode(),
        )
    producer.produce(settings.features_topic, key=b"BTC-USD", value=b"{not json")
    producer.flush(30)

    stream = current_from_stream(settings, minutes=600, now=time.time() + 1)
    batch = feature_frame(ticks, FeatureEngine())
    assert len(stream) == len(batch)
    assert stream["record_id"].tolist() == batch["record_id"].tolist()
    assert (stream["ts"].to_numpy() == batch["ts"].to_numpy()).all()
    np.testing.assert_array_equal(
        stream[list(FEATURE_NAMES)].to_numpy(), batch[list(FEATURE_NAMES)].to_numpy()
    )

    recent = current_from_stream(settings, minutes=2, now=time.time() + 1)
    assert 0 < len(recent) < len(stream)
    assert recent["ts"].min() >= stream["ts"].max() - pd.Timedelta(minutes=2)
    assert current_from_stream(
        settings, minutes=2, now=time.time() + 3600
    ).empty  # nothing that recent
