"""The scheduled ``monitor`` deployment on the session's Prefect server and a process worker of
this test: a drifted check starts train, validate and promote through their deployments, and says
why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from monitoring_support import WILD_MARKET, model_store_settings, train_champion
from session_services import PREFECT_POOL

from monitoring import report_store
from tasks.io import registry
from tasks.sim.writer import write_recordings
from tasks.stack.servers import PROJECT_DIR, start_prefect_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_monitor_deployment_is_scheduled_every_15_minutes():
    spec = yaml.safe_load((PROJECT_DIR / "prefect.yaml").read_text())
    monitor = next(d for d in spec["deployments"] if d["name"] == "monitor")
    assert monitor["entrypoint"] == "flows/monitor.py:monitor"
    assert monitor["schedules"] == [{"cron": "*/15 * * * *", "timezone": "UTC"}]


def _prefect(env: dict, *args: str) -> str:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), *args],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_drift_starts_retraining_through_the_deployments(broker_address, prefect_server, tmp_path):
    train_data, wild = tmp_path / "train", tmp_path / "wild"
    write_recordings(train_data, ("BTC-USD",), seed=3, minutes=90)
    write_recordings(wild, ("BTC-USD",), seed=5, minutes=90, params=WILD_MARKET)
    settings = model_store_settings(tmp_path)
    first = train_champion(settings, [str(train_data)])

    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **prefect_server.env,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "CRYPTOVOL_DATA_DIR": str(settings.data_dir),
        "CRYPTOVOL_PUSHGATEWAY_URL": "",
        "CRYPTOVOL_DRIFT_CHECKS_TO_RETRAIN": "1",  # this test's one check is enough
        "KAFKA_BOOTSTRAP_SERVERS": broker_address,  # live quality reads empty topics
        "CRYPTOVOL_PREDICTIONS_TOPIC": f"ticks.predictions.{suffix}",
        "CRYPTOVOL_RAW_TOPIC": f"ticks.raw.{suffix}",
        "PWD": str(PROJECT_DIR),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    worker = None
    try:
        names = ("monitor", "train", "validate", "promote")
        _prefect(env, "--no-prompt", "deploy", *[a for n in names for a in ("--name", n)])
        worker = start_prefect_worker(PREFECT_POOL, env, tmp_path / "worker.log")
        out = _prefect(
            env,
            "deployment",
            "run",
            "monitor/monitor",
            "--param",
            f"current={json.dumps([str(wild)])}",
            "--param",
            f"retrain_data={json.dumps([str(wild)])}",
            "--watch",
            "--watch-interval",
            "1",
            "--watch-timeout",
            "540",
        )
        assert "Completed" in out, out
    finally:
        if worker is not None:
            worker.stop()

    history = report_store.read_history(report_store.drift_dir(settings.reports_dir))
    assert len(history) == 1
    retrain = history[0]["retrain"]
    assert retrain["triggered"]
    assert retrain["why"].startswith("drift share over 0.5 for 1 consecutive checks")
    assert retrain["outcome"]["mode"] == "deployments"
    assert [s for s in retrain["outcome"]["runs"]] == ["train", "validate", "promote"]
    assert {r["state"] for r in retrain["outcome"]["runs"].values()} == {"COMPLETED"}

    client = registry.connect(settings)
    name = registry.model_name(settings)
    second = registry.alias_version(client, name, registry.CHALLENGER)
    assert int(second) == int(first) + 1  # one training run, on the drifted data
    assert registry.version_tags(client, name, second)["validation.decision"] in ("pass", "fail")
    run = client.get_run(history[0]["mlflow_run_id"])
    assert run.data.tags["retrain"] == "true"
    assert run.data.tags["retrain_why"] == retrain["why"]
    index = (report_store.drift_dir(settings.reports_dir) / "index.html").read_text()
    assert "started: drift share over 0.5" in index
