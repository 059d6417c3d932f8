"""The README's first command, shortened: the whole local loop in a fresh directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tasks.io.broker import free_port

pytestmark = [pytest.mark.slow]


def test_quickstart_runs_the_whole_loop(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "CRYPTOVOL_DATA_DIR": str(tmp_path / ".cryptovol"),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        str(Path(sys.executable).with_name("cryptovol")),
        "quickstart",
        "--json",
        "--capture-minutes",
        "0.25",
        "--history-minutes",
        "90",
        "--broker-port",
        str(port),
    ]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = json.loads(proc.stdout)["stages"]

    capture, replay, featurize = stages["capture"], stages["replay"], stages["featurize"]
    assert capture["tickers"] > 0 and capture["undelivered"] == 0 and capture["gaps"] == 0
    assert replay["malformed"] == 0 and replay["undelivered"] == 0
    # every tick captured or replayed went through the streaming featurizer exactly once
    assert featurize["ticks_in"] == replay["tickers"] + capture["tickers"]
    assert featurize["features_out"] == featurize["ticks_in"] and featurize["dlq"] == 0
    assert stages["backfill"]["rows"] > 1000 and stages["backfill"]["rejected"] == 0
    assert stages["contracts"]["checks"] > 10

    assert stages["train"]["version"] == "1"
    for key in ("pr_auc", "baseline_pr_auc", "persistence_pr_auc"):
        assert 0.0 < stages["train"][key] <= 1.0
    decision = stages["validate"]["decision"]
    assert decision in ("pass", "fail")
    registry = stages["registry"]["ml"]
    assert registry["challenger"] == "1"
    assert registry["champion"] == ("1" if decision == "pass" else None)
    assert (tmp_path / ".cryptovol" / "mlflow.db").exists()
    # the human summary (on stderr beside --json) shows MLflow's figures and real paths
    out = proc.stderr
    assert "cryptovol quickstart: done" in out
    store = f"sqlite:///{tmp_path / '.cryptovol' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version("volatility-spike", "1")
    run = client.get_run(version.run_id)
    model_line = next(line for line in out.splitlines() if line.startswith("model "))
    for metric in ("test_pr_auc", "test_persistence_pr_auc", "test_baseline_pr_auc"):
        assert f"{run.data.metrics[metric]:.3f}" in model_line, (metric, model_line)
    drift_line = next(line for line in out.splitlines() if "drift reports" in line)
    assert Path(drift_line.split()[2]).exists()
    assert "cryptovol promote" in out and "cryptovol rollback" in out
    # progress went to stderr: a first line, one sentence per stage, then the summary and
    # nothing else; the libraries' output (librdkafka, MLflow's progress bars) to the log file
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("cryptovol quickstart: the local loop end to end")
    shown = [line for line in lines[1 : lines.index("cryptovol quickstart: done")] if line]
    if decision != "pass":  # the one line that is not a stage's
        assert shown.pop().startswith("no champion: the challenger was refused")
    assert [line.split()[0] for line in shown] == [
        "simulate", "replay", "capture", "backfill", "contracts", "train", "validate", "promote",
        *(("score", "serve", "drift") if decision == "pass" else ()),
    ]  # fmt: skip
    for line in shown:
        assert " done in " in line and " s: " in line, line
        assert "[{" not in line and "{'" not in line, line  # a sentence, not a raw dict
    assert "rdkafka" not in proc.stderr and "Downloading artifacts" not in proc.stderr
    assert "INFO" not in proc.stderr
    assert (tmp_path / ".cryptovol" / "quickstart.log").stat().st_size > 0
    if decision != "pass":
        return  # nothing is served: the summary says so
    # the stream was scored, the champion served and measured, a drift report written
    assert stages["score"]["predictions_out"] == featurize["features_out"]
    serve = stages["serve"]
    assert serve["version"] == "1" and serve["requests"] == 1000
    assert 0 < serve["p50_ms"] <= serve["p99_ms"]
    drift = stages["drift"]
    assert Path(drift["report"]).exists() and Path(drift["index"]).exists()
    assert 0.0 <= drift["drift_share"] <= 1.0
