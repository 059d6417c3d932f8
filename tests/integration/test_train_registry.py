"""The model life cycle on a real MLflow store (SQLite + local artifacts) and simulated data.

train (CLI, JSON) -> challenger -> evaluate by alias URI -> validate -> promote -> a shuffled-label
challenger refused by the gates and by promote -> forced promotion -> rollback, also after the
alias was moved by hand (as in the MLflow UI).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tasks import cli
from tasks.core.gates import GateConfig
from tasks.io import model_store, registry
from tasks.settings import Settings, get_settings
from tasks.sim.writer import write_recordings
from tasks.stages import promote
from tasks.stages.evaluate import evaluate_model
from tasks.stages.validate import validate_challenger

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Whether a model beats persistence on 80 simulated minutes depends on the seed (short data):
# the first promotion only needs a scored, recorded decision; the gates' thresholds are
# unit-tested, and the degraded challenger below faces the default gates.
SCORED_ONLY = GateConfig(
    baseline_gain=-1.0, session_margin=1.0, max_ece=1.0, max_rate_ratio=1e9, min_positives=1
)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("recordings")
    write_recordings(out, products=("BTC-USD", "ETH-USD"), seed=3, minutes=80)
    return str(out)


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("CRYPTOVOL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _any_parquet(settings: Settings) -> Path:
    """A backfilled feature file of the recordings (the cache train and validate filled)."""
    return next(settings.backfill_cache_dir.glob("*.parquet"))


def _train_cli(capsys, recordings: str, *extra: str) -> dict:
    capsys.readouterr()
    assert cli.main(["train", "--data", recordings, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_life_cycle(settings, recordings, capsys, tmp_path):
    client = registry.connect(settings)
    name, baseline_name = registry.model_name(settings), registry.model_name(settings, "baseline")

    trained = _train_cli(capsys, recordings)
    assert trained["version"] == "1" and trained["baseline_version"] == "1"
    metrics = trained["metrics"]
    for key in ("pr_auc", "baseline_pr_auc", "persistence_pr_auc", "roc_auc", "threshold"):
        assert isinstance(metrics[key], float), key
    assert 0 < metrics["positive_rate"] < 1 and metrics["rows"] > 500
    assert registry.alias_version(client, name, "challenger") == "1"
    assert registry.alias_version(client, baseline_name, "challenger") == "1"
    run = client.get_run(trained["run_id"])
    assert run.data.tags["stage"] == "train"
    assert {"test_pr_auc", "test_baseline_pr_auc", "test_persistence_pr_auc"} <= set(
        run.data.metrics
    )
    assert run.data.params["label.tau"] and run.data.params["git_sha"]
    artifacts = {a.path for a in client.list_artifacts(trained["run_id"], "plots")}
    assert {
        "plots/pr_curve.png",
        "plots/calibration.png",
        "plots/feature_importance.png",
        "plots/score_distribution.png",
    } <= artifacts
    assert (tmp_path / "store" / "mlartifacts").is_dir(), "artifacts live beside the SQLite store"

    # the registered model returns probabilities for rows with only some features
    model = model_store.load_model("models:/volatility-spike@challenger")
    rows = pd.DataFrame([{"ret_mean": 0.05, "ret_std": 0.01, "n": 50.0}])
    scores = model.predict(rows)["score"].to_numpy()
    assert scores.shape == (1,) and 0.0 <= scores[0] <= 1.0
    meta = model.metadata.metadata
    assert meta["label"]["tau"] > 0 and meta["threshold"] == metrics["threshold"]
    baseline = model_store.load_model(registry.model_uri(settings, "baseline", "challenger"))
    assert 0.0 <= baseline.predict(rows)["score"].iloc[0] <= 1.0
    # the project's own loader reads the same data and scores the same
    predictor = model_store.load_predictor("models:/volatility-spike@challenger")
    assert predictor.threshold == metrics["threshold"] and predictor.label == meta["label"]
    assert np.array_equal(predictor.predict_proba(rows), scores)

    evaluated = evaluate_model(settings, "models:/volatility-spike@challenger", [recordings])
    assert evaluated["rows"] > 1000 and evaluated["label"] == meta["label"]
    assert set(evaluated["per_product"]) == {"BTC-USD", "ETH-USD"}
    assert evaluated["per_file"] and evaluated["rows_in_training_span"] > 0
    sessions = evaluated["sessions"]
    assert sessions["pooled"]["rows"] == evaluated["rows"]
    assert sessions["pooled"]["pr_auc"]["model"] == pytest.approx(evaluated["pr_auc"])
    for key in ("pr_auc", "baseline_pr_auc", "persistence_pr_auc", "roc_auc", "positive_rate"):
        assert evaluated[key] is not None, key

    first = validate_challenger(settings, [recordings], gate_config=SCORED_ONLY)
    assert first.decision.passed, first.decision.reason()
    assert first.challenger_version == "1" and first.champion_version is None
    assert pd.Timestamp(first.window["start"]) > pd.Timestamp(meta["train_end"])
    report = json.loads(Path(first.report_paths["json"]).read_text())
    assert report["decision"] == "pass" and report["figures"]["latency_p95_ms"] > 0
    assert registry.version_tags(client, name, "1")[registry.PASS_TAG] == "pass"
    change = promote.promote(settings, who="tester", why="first model")
    assert (change.action, change.champion, change.previous) == ("promote", "1", None)
    assert registry.alias_version(client, name, "champion") == "1"
    assert registry.alias_version(client, baseline_name, "champion") == "1"
    assert registry.alias_version(client, name, "challenger") is None

    # a deliberately degraded challenger: trained on shuffled labels
    degraded = _train_cli(capsys, recordings, "--shuffle-labels")
    assert degraded["version"] == "2"
    refused = validate_challenger(settings, [recordings])
    assert not refused.decision.passed
    failed = {c.name for c in refused.decision.failed}
    assert "vs_baselines" in failed, refused.decision.reason()
    assert refused.champion_version == "1"
    runs = mlflow.search_runs(
        experiment_names=[name], filter_string="tags.stage = 'validate' and tags.decision = 'fail'"
    )
    assert len(runs) == 1
    with pytest.raises(registry.RegistryError, match=r"validation\.decision=fail"):
        promote.promote(settings)
    assert registry.alias_version(client, name, "champion") == "1"

    # a challenger that ranks no better than persistence: the z-score baseline, registered as
    # the ML model (against the absolute label, recent volatility relative to its trailing level
    # says less than its level)
    zscore = model_store.load_predictor(registry.model_uri(settings, "baseline", "champion"))
    with mlflow.start_run(experiment_id=registry.experiment_id(settings, client)) as run:
        info = model_store.log_model("model", zscore, pd.read_parquet(_any_parquet(settings)))
    below = registry.register_version(client, info, name, run.info.run_id)
    client.set_registered_model_alias(name, "challenger", below)
    refused_below = validate_challenger(settings, [recordings])
    figures = refused_below.figures
    assert not refused_below.decision.passed
    assert "vs_baselines" in {c.name for c in refused_below.decision.failed}
    assert figures["challenger_pr_auc"] <= figures["persistence_pr_auc"]
    assert {c.name for c in refused_below.decision.checks} >= {"within_sessions", "vs_baselines"}
    client.set_registered_model_alias(name, "challenger", "2")

    forced = promote.promote(settings, "2", force=True, who="tester", why="drill")
    assert (forced.champion, forced.previous, forced.baseline_champion) == ("2", "1", "2")
    tags = registry.version_tags(client, name, "2")
    assert tags["previous_champion"] == "1" and tags["promoted_by"] == "tester"
    assert tags["promotion_forced"] == "true"

    capsys.readouterr()
    assert cli.main(["rollback", "--why", "bad model", "--json"]) == 0
    back = json.loads(capsys.readouterr().out)
    assert (back["champion"], back["previous"]) == ("1", "2")
    assert registry.alias_version(client, name, "champion") == "1"
    assert registry.alias_version(client, baseline_name, "champion") == "1"
    assert registry.version_tags(client, name, "2")["rollback_reason"] == "bad model"

    # the registry UI's descriptions say what each version is and what was decided about it
    first_card = client.get_model_version(name, "1").description
    assert "Test part PR-AUC: model" in first_card and "persistence" in first_card
    assert "Validation: **pass**" in first_card and "Restored as champion" in first_card
    assert f"{float(meta['label']['tau']):.3f}" in first_card
    second_card = client.get_model_version(name, "2").description
    assert "Degraded on purpose" in second_card and "Validation: **fail**" in second_card
    assert "Rolled back" in second_card and "bad model" in second_card
    assert "Champion: version 1" in client.get_registered_model(name).description
    assert "MODEL_VARIANT=baseline" in client.get_registered_model(baseline_name).description

    # someone moves the alias by hand in the MLflow UI; rollback returns to the recorded champion
    client.set_registered_model_alias(name, "champion", "2")
    again = promote.rollback(settings, who="tester")
    assert (again.champion, again.previous) == ("1", "2")

    capsys.readouterr()
    assert cli.main(["promote", "2", "--json"]) == 1  # version 2 never passed its gates
    assert "validation.decision=fail" in json.loads(capsys.readouterr().out)["error"]
